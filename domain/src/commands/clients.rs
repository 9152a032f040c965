//! Clients: the agency's customers and their contact details.

use serde::Deserialize;
use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

use super::{PageReq, authorize, changed_fields, check_version, emit, one_of, require_text, snapshot, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::machine::CHANNELS;
use crate::policy::Permission;
use crate::rows::{Client, Page};
use crate::store::{Conn, Db, Tx};
use crate::{Ctx, new_id, now, q_all, q_exec, q_opt};

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
pub struct NewClient {
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub telegram: Option<String>,
    pub preferred_channel: Option<String>,
    pub notes: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
pub struct ClientPatch {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub telegram: Option<String>,
    pub preferred_channel: Option<String>,
    pub notes: Option<String>,
    pub tags: Option<Vec<String>>,
    pub version: Option<i64>,
}

fn normalize_phone(p: &str) -> DomainResult<String> {
    let trimmed = p.trim();
    let digits = trimmed.chars().filter(|c| c.is_ascii_digit()).count();
    let ok_chars = trimmed.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c));
    if !ok_chars || !(6..=15).contains(&digits) {
        return Err(DomainError::invalid("phone must be a phone number of 6 to 15 digits"));
    }
    let plus = if trimmed.starts_with('+') { "+" } else { "" };
    Ok(format!("{plus}{}", trimmed.chars().filter(|c| c.is_ascii_digit()).collect::<String>()))
}

fn normalize_email(e: &str) -> DomainResult<String> {
    let e = e.trim().to_lowercase();
    match e.split_once('@') {
        Some((l, d)) if !l.is_empty() && d.contains('.') && !d.starts_with('.') && e.len() <= 254 => Ok(e),
        _ => Err(DomainError::invalid("email must be an email address")),
    }
}

fn normalize_telegram(t: &str) -> DomainResult<String> {
    let t = t.trim().trim_start_matches('@');
    if t.len() < 3 || t.len() > 64 || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(DomainError::invalid("telegram must be a Telegram handle such as @name"));
    }
    Ok(format!("@{t}"))
}

fn opt<T>(v: Option<&str>, f: impl Fn(&str) -> DomainResult<T>) -> DomainResult<Option<T>> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => f(s).map(Some),
    }
}

/// Validated contact details: the same rules for a new client and a patch.
struct Contact {
    phone: Option<String>,
    email: Option<String>,
    telegram: Option<String>,
}

fn contact(phone: Option<&str>, email: Option<&str>, telegram: Option<&str>) -> DomainResult<Contact> {
    Ok(Contact {
        phone: opt(phone, normalize_phone)?,
        email: opt(email, normalize_email)?,
        telegram: opt(telegram, normalize_telegram)?,
    })
}

pub async fn load(conn: &mut Conn<'_>, id: Uuid) -> DomainResult<Client> {
    q_opt!(conn, Client, "SELECT * FROM clients WHERE id = $1", id)?.ok_or(DomainError::NotFound { entity: "client" })
}

/// Inserts a client inside the caller's transaction (an inquiry may create its client).
pub(crate) async fn insert(conn: &mut Conn<'_>, ctx: &Ctx, input: &NewClient) -> DomainResult<Client> {
    crate::validate::input(input)?;
    let name = require_text(Some(&input.name), "name")?;
    let c = contact(input.phone.as_deref(), input.email.as_deref(), input.telegram.as_deref())?;
    if let Some(ch) = &input.preferred_channel {
        one_of(ch, CHANNELS, "preferred_channel")?;
    }
    let id = new_id();
    let at = now();
    q_exec!(
        conn,
        "INSERT INTO clients (id, name, phone, email, telegram, preferred_channel, notes, tags, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        id,
        name,
        c.phone,
        c.email,
        c.telegram,
        input.preferred_channel.clone(),
        input.notes.clone(),
        Json(json!(input.tags)),
        at
    )?;
    let row = load(conn, id).await?;
    emit(conn, ctx, "client.created", "client", id, json!({"client_id": id})).await?;
    write_audit(conn, ctx, "client.created", "client", Some(id.to_string()), None, Some(snapshot(&row))).await?;
    Ok(row)
}

/// Finds the client with this phone or email, so one person is one client. Locks the contact
/// keys first: two transactions about the same new person queue here, and the second finds
/// the client the first created.
pub(crate) async fn find_duplicate(tx: &mut Tx, input: &NewClient) -> DomainResult<Option<Client>> {
    let c = contact(input.phone.as_deref(), input.email.as_deref(), None)?;
    if c.phone.is_none() && c.email.is_none() {
        return Ok(None);
    }
    let mut keys: Vec<String> = c
        .phone
        .iter()
        .map(|p| format!("client-phone:{p}"))
        .chain(c.email.iter().map(|e| format!("client-email:{e}")))
        .collect();
    keys.sort();
    for k in &keys {
        tx.lock_key(k).await?;
    }
    q_opt!(
        &mut tx.conn(),
        Client,
        "SELECT * FROM clients WHERE ($1 IS NOT NULL AND phone = $1) OR ($2 IS NOT NULL AND lower(email) = $2)
         ORDER BY created_at LIMIT 1",
        c.phone,
        c.email
    )
}

pub async fn create(db: &Db, ctx: &Ctx, input: NewClient) -> DomainResult<Client> {
    authorize(db, ctx, Permission::ClientsWrite, "client").await?;
    crate::validate::input(&input)?;
    let mut tx = db.begin().await?;
    if let Some(existing) = find_duplicate(&mut tx, &input).await? {
        return Err(DomainError::Duplicate(format!("client {} already has this phone or email", existing.id)));
    }
    let row = insert(&mut tx.conn(), ctx, &input).await?;

    tx.commit().await?;
    Ok(row)
}

pub async fn get(db: &Db, ctx: &Ctx, id: Uuid) -> DomainResult<Client> {
    authorize(db, ctx, Permission::ClientsRead, "client").await?;
    load(&mut db.acquire().await?.conn(), id).await
}

pub async fn list(db: &Db, ctx: &Ctx, q: Option<String>, page: PageReq) -> DomainResult<Page<Client>> {
    authorize(db, ctx, Permission::ClientsRead, "client").await?;
    crate::validate::opt_text("q", q.as_deref())?;
    let pattern = q.filter(|s| !s.trim().is_empty()).map(|s| format!("%{}%", s.trim().to_lowercase()));
    let rows = q_all!(
        &mut db.acquire().await?.conn(),
        Client,
        "SELECT * FROM clients WHERE ($1 IS NULL OR lower(name) LIKE $1) AND ($2 IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
        pattern,
        page.cursor,
        page.fetch()
    )?;
    Ok(Page::from_rows(rows, page.limit, |c| c.id))
}

pub async fn update(db: &Db, ctx: &Ctx, id: Uuid, patch: ClientPatch) -> DomainResult<Client> {
    authorize(db, ctx, Permission::ClientsWrite, "client").await?;
    crate::validate::input(&patch)?;
    let c = contact(patch.phone.as_deref(), patch.email.as_deref(), patch.telegram.as_deref())?;
    let mut tx = db.begin().await?;
    // One person is one client: a new phone or email may not be another client's. The same
    // contact locks as creation, so an edit and a create of the same number queue.
    if c.phone.is_some() || c.email.is_some() {
        let mut keys: Vec<String> = c
            .phone
            .iter()
            .map(|p| format!("client-phone:{p}"))
            .chain(c.email.iter().map(|e| format!("client-email:{e}")))
            .collect();
        keys.sort();
        for k in &keys {
            tx.lock_key(k).await?;
        }
        if let Some(other) = q_opt!(
            &mut tx.conn(),
            Client,
            "SELECT * FROM clients WHERE id <> $1 AND (($2 IS NOT NULL AND phone = $2) OR ($3 IS NOT NULL AND lower(email) = $3))
             ORDER BY created_at LIMIT 1",
            id,
            c.phone.clone(),
            c.email.clone()
        )? {
            return Err(DomainError::Duplicate(format!("client {} already has this phone or email", other.id)));
        }
    }
    let mut conn = tx.conn();
    let before = load(&mut conn, id).await?;
    check_version("client", patch.version, before.version)?;
    let name = match &patch.name {
        Some(n) => require_text(Some(n), "name")?,
        None => before.name.clone(),
    };
    if let Some(ch) = &patch.preferred_channel {
        one_of(ch, CHANNELS, "preferred_channel")?;
    }
    let n = q_exec!(
        &mut conn,
        "UPDATE clients SET name = $1, phone = $2, email = $3, telegram = $4, preferred_channel = $5,
             notes = $6, tags = $7, updated_at = $8, version = version + 1
         WHERE id = $9 AND version = $10",
        name,
        if patch.phone.is_some() { c.phone } else { before.phone.clone() },
        if patch.email.is_some() { c.email } else { before.email.clone() },
        if patch.telegram.is_some() { c.telegram } else { before.telegram.clone() },
        patch.preferred_channel.clone().or(before.preferred_channel.clone()),
        patch.notes.clone().or(before.notes.clone()),
        Json(patch.tags.as_ref().map(|t| json!(t)).unwrap_or(before.tags.0.clone())),
        now(),
        id,
        before.version
    )?;
    if n == 0 {
        return Err(DomainError::VersionConflict { entity: "client", current_version: None });
    }
    let after = load(&mut conn, id).await?;
    let changed = changed_fields(&snapshot(&before), &snapshot(&after));
    emit(&mut conn, ctx, "client.updated", "client", id, json!({"client_id": id, "changed": changed})).await?;
    write_audit(
        &mut conn,
        ctx,
        "client.updated",
        "client",
        Some(id.to_string()),
        Some(snapshot(&before)),
        Some(snapshot(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

pub async fn block(db: &Db, ctx: &Ctx, id: Uuid, reason: Option<String>) -> DomainResult<Client> {
    block_at(db, ctx, id, reason, None).await
}

/// Blocks a client, guarded by its status (a blocked client stays as it is, one
/// `client.blocked` only) and by the version read (`version` if given, else the one loaded):
/// a block racing an edit answers 409 instead of overwriting it.
pub async fn block_at(
    db: &Db,
    ctx: &Ctx,
    id: Uuid,
    reason: Option<String>,
    version: Option<i64>,
) -> DomainResult<Client> {
    authorize(db, ctx, Permission::ClientsBlock, "client").await?;
    let reason = require_text(reason.as_deref(), "reason")?;
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = load(&mut conn, id).await?;
    check_version("client", version, before.version)?;
    if before.blocked {
        return Ok(before);
    }
    let n = q_exec!(
        &mut conn,
        "UPDATE clients SET blocked = $1, blocked_reason = $2, updated_at = $3, version = version + 1
         WHERE id = $4 AND version = $5 AND blocked = $6",
        true,
        reason.clone(),
        now(),
        id,
        before.version,
        false
    )?;
    if n == 0 {
        let current = load(&mut conn, id).await?;
        if current.blocked {
            return Ok(current);
        }
        return Err(DomainError::VersionConflict { entity: "client", current_version: Some(current.version) });
    }
    let after = load(&mut conn, id).await?;
    emit(&mut conn, ctx, "client.blocked", "client", id, json!({"client_id": id, "reason": reason})).await?;
    write_audit(
        &mut conn,
        ctx,
        "client.blocked",
        "client",
        Some(id.to_string()),
        Some(snapshot(&before)),
        Some(snapshot(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// The clients of a page of inquiries or bookings, read on one connection. Callers have
/// already been authorised to read those rows; masking is the API's job.
pub async fn by_ids(
    db: &Db,
    ids: impl IntoIterator<Item = Uuid>,
) -> DomainResult<std::collections::HashMap<Uuid, Client>> {
    let mut out = std::collections::HashMap::new();
    let mut h = db.acquire().await?;
    let mut conn = h.conn();
    for id in ids {
        if let std::collections::hash_map::Entry::Vacant(e) = out.entry(id)
            && let Some(c) = q_opt!(&mut conn, Client, "SELECT * FROM clients WHERE id = $1", id)?
        {
            e.insert(c);
        }
    }
    Ok(out)
}
