//! Notifications: a templated message to a client, a model, an assignee, every active user of
//! a role, or one user, resolved to the person's address on a channel when it is queued (no
//! role name or "assignee" is ever stored as a recipient). Each send is a row of the delivery
//! ledger, queued → sending → sent → delivered | failed, announced by `notification.queued`
//! for a worker to send. A channel that is disabled or refuses for good falls back along the
//! configured order, each attempt its own row (`fallback_of` links them).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::FromRow;
use sqlx::types::Json;
use uuid::Uuid;

use super::exceptions::{self, NewException};
use super::notes::{self, NewNote};
use super::templates;
use super::{authorize, emit, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::policy::{self, Permission};
use crate::rows::{DomainEvent, Page};
use crate::store::{Conn, Db, Tx};
use crate::{Ctx, new_id, now, q_all, q_exec, q_opt};

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct Notification {
    pub id: Uuid,
    pub channel: String,
    /// The address on the channel (chat id, phone number, email address).
    pub recipient: Option<String>,
    /// client, model or user.
    pub recipient_kind: Option<String>,
    pub recipient_id: Option<Uuid>,
    pub template: String,
    /// The email subject line (other channels send the body only).
    pub title: Option<String>,
    pub body: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub provider_id: Option<String>,
    pub subject_type: Option<String>,
    pub subject_id: Option<Uuid>,
    #[serde(skip)]
    pub vars: Json<Value>,
    /// The notification this one falls back from.
    pub fallback_of: Option<Uuid>,
    /// A note on the subject tells how it ended (the Contact quick action).
    pub note_on_outcome: bool,
    /// Sent from the critical queue (a missed safety check).
    pub critical: bool,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The template names shipped with Virel (stored ones may add more).
pub fn template_names() -> Vec<&'static str> {
    templates::BUILTINS.iter().map(|b| b.name).collect()
}

/// Renders a shipped template (tests and previews).
pub fn render(template: &str, vars: &Value) -> String {
    templates::builtin(template)
        .and_then(|b| templates::render(b.body, vars).ok())
        .unwrap_or_else(|| templates::context(vars)["message"].as_str().unwrap_or_default().to_string())
}

/// Someone a message can reach.
#[derive(Clone, Debug, FromRow)]
struct Person {
    id: Uuid,
    name: String,
    phone: Option<String>,
    email: Option<String>,
    telegram: Option<String>,
    preferred_channel: Option<String>,
}

async fn person(conn: &mut Conn<'_>, kind: &str, id: Uuid) -> DomainResult<Option<Person>> {
    let sql = match kind {
        "client" => "SELECT id, name, phone, email, telegram, preferred_channel FROM clients WHERE id = $1",
        "model" => "SELECT id, name, phone, email, telegram, preferred_channel FROM models WHERE id = $1",
        _ => "SELECT id, name, phone, email, telegram, preferred_channel FROM users WHERE id = $1",
    };
    q_opt!(conn, Person, sql, id)
}

/// The concrete channel for a name in a preference or the fallback order: `telegram` is
/// DIVA for clients and KESHA for staff and models, unless the template names its bot.
fn concrete(kind: &str, name: &str, bot: Option<&str>) -> Option<&'static str> {
    let bot = |default: &'static str| match bot {
        Some("diva") => "telegram_diva",
        Some("kesha") => "telegram_kesha",
        _ => default,
    };
    match name {
        "telegram" => Some(bot(if kind == "client" { "telegram_diva" } else { "telegram_kesha" })),
        "telegram_diva" => Some("telegram_diva"),
        "telegram_kesha" => Some("telegram_kesha"),
        "email" => Some("email"),
        "sms" | "phone" => Some("sms"),
        _ => None,
    }
}

fn address(p: &Person, channel: &str) -> Option<String> {
    let a = match channel {
        "email" => p.email.as_deref(),
        "sms" => p.phone.as_deref(),
        _ => p.telegram.as_deref(),
    };
    a.map(str::trim).filter(|a| !a.is_empty()).map(String::from)
}

/// The first channel among `wanted` then `order` on which `p` has an address and that was
/// not tried already.
fn pick(
    kind: &str,
    p: &Person,
    wanted: Option<&str>,
    order: &[String],
    bot: Option<&str>,
    tried: &[String],
) -> Option<(&'static str, String)> {
    wanted
        .into_iter()
        .chain(order.iter().map(String::as_str))
        .filter_map(|n| concrete(kind, n, bot))
        .filter(|c| !tried.iter().any(|t| t == c))
        .find_map(|c| address(p, c).map(|a| (c, a)))
}

/// A message to queue.
#[derive(Clone, Debug, Default)]
pub struct Message<'a> {
    /// `preferred` (the person's preferred channel), or a channel or `telegram`.
    pub channel: &'a str,
    /// `client`, `model`, `assignee`, a role (every active user with it) or a user id.
    pub to: &'a str,
    pub template: &'a str,
    pub client_id: Option<Uuid>,
    pub model_id: Option<Uuid>,
    pub assignee_id: Option<Uuid>,
    /// For a role: only its users on duty.
    pub on_duty: bool,
    pub vars: Value,
    pub subject: (String, Uuid),
    pub note_on_outcome: bool,
    pub critical: bool,
}

/// A notification's statuses, queued to sent or failed (delivered when the provider reports it).
pub const NOTIFICATION_STATUSES: &[&str] = &["queued", "sending", "sent", "delivered", "failed"];

pub const ROLES: &[&str] = &["OWNER", "OPS_MANAGER", "OPERATOR", "FINANCE", "CONTENT_MANAGER"];

/// Records a notification about an event's subject and announces it for sending.
pub async fn queue_in(
    tx: &mut Tx,
    ctx: &Ctx,
    channel: &str,
    to: &str,
    template: &str,
    event: &DomainEvent,
) -> DomainResult<Vec<Notification>> {
    let p = &event.payload.0;
    let id = |k: &str| p.get(k).and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
    // Money is carried in minor units: 5000 GBP is shown as "50.00 GBP".
    let money = |amount: Option<&Value>, currency: Option<&Value>| {
        let cur = currency.and_then(Value::as_str).unwrap_or("");
        amount.and_then(Value::as_i64).map(|a| {
            let sign = if a < 0 { "-" } else { "" };
            format!("{sign}{}.{:02} {cur}", a.abs() / 100, a.abs() % 100).trim().to_string()
        })
    };
    let deposit = p.get("deposit").and_then(|d| money(d.get("amount"), d.get("currency")));
    let amount = match p.get("amount") {
        Some(Value::Object(m)) => money(m.get("amount"), m.get("currency")),
        a => money(a, p.get("currency")),
    };
    let vars = json!({
        "start_at": p.get("start_at").cloned().unwrap_or(Value::Null),
        "end_at": p.get("end_at").cloned().unwrap_or(Value::Null),
        "deposit": deposit,
        "amount": amount,
        "title": p.get("title").cloned().unwrap_or(Value::Null),
        "reason": p.get("reason").or(p.get("error")).cloned().unwrap_or(Value::Null),
        "due_at": p.get("due_at").cloned().unwrap_or(Value::Null),
        "level": p.get("level").cloned().unwrap_or(Value::Null),
        "task_type": p.get("type").cloned().unwrap_or(Value::Null),
    });
    let subject = crate::automation::actions::subject_of(event);
    queue(
        tx,
        ctx,
        Message {
            channel,
            to,
            template,
            client_id: id("client_id"),
            model_id: id("model_id"),
            assignee_id: id("assignee_id"),
            vars,
            subject,
            ..Default::default()
        },
    )
    .await
}

/// Records one notification per person the message reaches (queued) and announces each with
/// `notification.queued`, in the caller's transaction. A client or model with no address on
/// any channel is refused; users of a role without one are skipped.
pub async fn queue(tx: &mut Tx, ctx: &Ctx, m: Message<'_>) -> DomainResult<Vec<Notification>> {
    let order = tx.settings().notify_fallback.clone();
    let mut conn = tx.conn();
    if !templates::exists(&mut conn, m.template).await? {
        return Err(DomainError::invalid(format!("unknown template {}", m.template)));
    }
    let (kind, people): (&str, Vec<Person>) = match m.to {
        "client" => {
            let id = m.client_id.ok_or_else(|| DomainError::invalid("there is no client to contact"))?;
            let p = person(&mut conn, "client", id).await?.ok_or(DomainError::NotFound { entity: "client" })?;
            ("client", vec![p])
        }
        "model" => {
            let id = m.model_id.ok_or_else(|| DomainError::invalid("there is no model to notify"))?;
            let p = person(&mut conn, "model", id).await?.ok_or(DomainError::NotFound { entity: "model" })?;
            ("model", vec![p])
        }
        "assignee" => {
            let id = m.assignee_id.ok_or_else(|| DomainError::invalid("there is no assignee to notify"))?;
            ("user", person(&mut conn, "user", id).await?.into_iter().collect())
        }
        role if ROLES.contains(&role) => {
            let sql = if m.on_duty {
                "SELECT id, name, phone, email, telegram, preferred_channel FROM users WHERE role = $1 AND active = $2 AND on_duty = $2 ORDER BY id"
            } else {
                "SELECT id, name, phone, email, telegram, preferred_channel FROM users WHERE role = $1 AND active = $2 ORDER BY id"
            };
            ("user", q_all!(&mut conn, Person, sql, role, true)?)
        }
        other => {
            let id = Uuid::parse_str(other).map_err(|_| {
                DomainError::invalid(format!(
                    "to must be client, model, assignee, a role ({}) or a user id",
                    ROLES.join(", ")
                ))
            })?;
            let p = person(&mut conn, "user", id).await?.ok_or(DomainError::NotFound { entity: "user" })?;
            ("user", vec![p])
        }
    };
    let mut vars = m.vars.clone();
    if !vars.is_object() {
        vars = json!({});
    }
    if let Some(cid) = m.client_id
        && vars.get("client_name").is_none()
        && let Some(c) = person(&mut conn, "client", cid).await?
    {
        vars["client_name"] = json!(c.name);
    }
    let generic = templates::resolve(&mut conn, m.template, "", "").await?;
    let mut out = Vec::new();
    for p in people {
        let wanted = if m.channel == "preferred" { p.preferred_channel.clone() } else { Some(m.channel.to_string()) };
        let Some((channel, addr)) = pick(kind, &p, wanted.as_deref(), &order, generic.bot.as_deref(), &[]) else {
            if kind == "user" {
                tracing::warn!(user = %p.id, template = m.template, "no address on any channel; not notified");
                continue;
            }
            return Err(DomainError::invalid(format!("the {kind} has no phone, email or telegram to send to")));
        };
        let mut v = vars.clone();
        v["recipient_name"] = json!(p.name);
        if kind == "client" {
            v["client_name"] = json!(p.name);
        }
        let n = insert(
            &mut conn,
            ctx,
            NewRow {
                channel,
                recipient: addr,
                kind,
                person_id: p.id,
                template: m.template,
                vars: v,
                subject: m.subject.clone(),
                fallback_of: None,
                note_on_outcome: m.note_on_outcome,
                critical: m.critical,
            },
        )
        .await?;
        out.push(n);
    }
    Ok(out)
}

struct NewRow<'a> {
    channel: &'static str,
    recipient: String,
    kind: &'a str,
    person_id: Uuid,
    template: &'a str,
    vars: Value,
    subject: (String, Uuid),
    fallback_of: Option<Uuid>,
    note_on_outcome: bool,
    critical: bool,
}

async fn insert(conn: &mut Conn<'_>, ctx: &Ctx, r: NewRow<'_>) -> DomainResult<Notification> {
    let t = templates::resolve(conn, r.template, r.channel, "").await?;
    let body = templates::render(&t.body, &r.vars)?;
    let title = templates::render(&t.subject, &r.vars)?;
    let id = new_id();
    let at = now();
    let (st, sid) = r.subject;
    q_exec!(
        conn,
        "INSERT INTO notifications (id, channel, recipient, recipient_kind, recipient_id, template, title, body, status,
             vars, fallback_of, note_on_outcome, critical, subject_type, subject_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', $9, $10, $11, $12, $13, $14, $15, $15)",
        id,
        r.channel,
        r.recipient,
        r.kind,
        r.person_id,
        r.template,
        title,
        body,
        Json(r.vars),
        r.fallback_of,
        r.note_on_outcome,
        r.critical,
        st,
        sid,
        at
    )?;
    let row = load(conn, id).await?;
    emit(
        conn,
        ctx,
        "notification.queued",
        "notification",
        id,
        json!({"notification_id": id, "channel": r.channel, "template": r.template, "status": "queued",
               "recipient": r.kind, "critical": r.critical, "fallback_of": r.fallback_of}),
    )
    .await?;
    write_audit(conn, ctx, "notification.queued", "notification", Some(id.to_string()), None, Some(audit_view(&row)))
        .await?;
    Ok(row)
}

/// What the audit log keeps of a notification: no address and no body (they hold PII).
fn audit_view(n: &Notification) -> Value {
    json!({"id": n.id, "channel": n.channel, "template": n.template, "status": n.status, "attempts": n.attempts,
           "recipient_kind": n.recipient_kind, "recipient_id": n.recipient_id, "provider_id": n.provider_id,
           "last_error": n.last_error, "fallback_of": n.fallback_of})
}

pub async fn load(conn: &mut Conn<'_>, id: Uuid) -> DomainResult<Notification> {
    q_opt!(conn, Notification, "SELECT * FROM notifications WHERE id = $1", id)?
        .ok_or(DomainError::NotFound { entity: "notification" })
}

pub async fn get(db: &Db, id: Uuid) -> DomainResult<Notification> {
    load(&mut db.acquire().await?.conn(), id).await
}

/// What a worker may do with a notification.
pub enum Claim {
    /// Send it (now `sending`, this attempt counted).
    Send(Box<Notification>),
    /// Nothing: it is sent, delivered or failed already (a duplicate job).
    Done,
}

/// Takes a notification for an attempt. One the provider already accepted (its id recorded,
/// the run stopped before `sent`) is marked sent, never sent again.
pub async fn claim(db: &Db, id: Uuid) -> DomainResult<Claim> {
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let n = load(&mut conn, id).await?;
    if !matches!(n.status.as_str(), "queued" | "sending") {
        return Ok(Claim::Done);
    }
    if let Some(pid) = n.provider_id.clone() {
        tx.commit().await?;
        record_sent(db, id, &pid).await?;
        return Ok(Claim::Done);
    }
    q_exec!(
        &mut conn,
        "UPDATE notifications SET status = 'sending', attempts = attempts + 1, updated_at = $1 WHERE id = $2",
        now(),
        id
    )?;
    let n = load(&mut conn, id).await?;
    tx.commit().await?;
    Ok(Claim::Send(Box::new(n)))
}

/// The provider accepted the message: its id is kept before anything else, so a retry after
/// a crash finds it and does not send twice.
pub async fn record_provider_id(db: &Db, id: Uuid, provider_id: &str) -> DomainResult<()> {
    let mut h = db.acquire().await?;
    q_exec!(
        &mut h.conn(),
        "UPDATE notifications SET provider_id = $1, updated_at = $2 WHERE id = $3",
        provider_id,
        now(),
        id
    )?;
    Ok(())
}

/// A failed attempt worth another: back to `queued` with the reason.
pub async fn record_retry(db: &Db, id: Uuid, error: &str) -> DomainResult<()> {
    let mut h = db.acquire().await?;
    q_exec!(
        &mut h.conn(),
        "UPDATE notifications SET status = 'queued', last_error = $1, updated_at = $2 WHERE id = $3 AND status IN ('queued', 'sending')",
        error,
        now(),
        id
    )?;
    Ok(())
}

fn contact_note(n: &Notification, sent: bool, error: &str) -> Option<NewNote> {
    let (Some(st), Some(sid)) = (n.subject_type.clone(), n.subject_id) else { return None };
    if !n.note_on_outcome || !matches!(st.as_str(), "booking" | "inquiry" | "client" | "task" | "exception") {
        return None;
    }
    let text = if sent {
        format!("Contacted the client by {} ({})", n.channel, n.template)
    } else {
        format!("Could not contact the client ({}): {error}", n.template)
    };
    Some(NewNote { subject_type: st, subject_id: sid, text })
}

pub async fn record_sent(db: &Db, id: Uuid, provider_id: &str) -> DomainResult<()> {
    let ctx = Ctx::system();
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = load(&mut conn, id).await?;
    if matches!(before.status.as_str(), "sent" | "delivered" | "failed") {
        return Ok(());
    }
    let at = now();
    q_exec!(
        &mut conn,
        "UPDATE notifications SET status = 'sent', provider_id = $1, last_error = NULL, sent_at = $2, updated_at = $2 WHERE id = $3",
        provider_id,
        at,
        id
    )?;
    emit(
        &mut conn,
        &ctx,
        "notification.sent",
        "notification",
        id,
        json!({"notification_id": id, "channel": before.channel, "template": before.template, "status": "sent"}),
    )
    .await?;
    write_audit(
        &mut conn,
        &ctx,
        "notification.sent",
        "notification",
        Some(id.to_string()),
        Some(audit_view(&before)),
        Some(json!({"provider_id": provider_id, "status": "sent"})),
    )
    .await?;
    if let Some(note) = contact_note(&before, true, "") {
        notes::insert(&mut conn, &ctx, note).await?;
    }
    tx.commit().await
}

/// The channels already tried in this notification's fallback chain.
async fn chain(conn: &mut Conn<'_>, n: &Notification) -> DomainResult<Vec<String>> {
    let mut tried = vec![n.channel.clone()];
    let mut up = n.fallback_of;
    while let Some(prev) = up {
        let p = load(conn, prev).await?;
        tried.push(p.channel.clone());
        up = p.fallback_of;
        if tried.len() > 8 {
            break;
        }
    }
    Ok(tried)
}

/// The channel refused for good (or is disabled): this row is failed, and the message falls
/// back to the next channel of the configured order on which the recipient has an address.
/// Returns the fallback's id; None when nothing is left, and the failure is final (a
/// `notification_failed` exception with the reason).
pub async fn refused(db: &Db, id: Uuid, reason: &str) -> DomainResult<Option<Uuid>> {
    let order = db.settings().notify_fallback.clone();
    let ctx = Ctx::system();
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = load(&mut conn, id).await?;
    if !matches!(before.status.as_str(), "queued" | "sending") {
        return Ok(None);
    }
    let tried = chain(&mut conn, &before).await?;
    let kind = before.recipient_kind.clone().unwrap_or_else(|| "client".into());
    let who = match before.recipient_id {
        Some(pid) => person(&mut conn, &kind, pid).await?,
        None => None,
    };
    let bot = templates::resolve(&mut conn, &before.template, "", "").await.ok().and_then(|t| t.bot);
    let next = who.as_ref().and_then(|p| pick(&kind, p, None, &order, bot.as_deref(), &tried).map(|c| (p, c)));
    let Some((p, (channel, addr))) = next else {
        drop(tx);
        fail(db, id, reason).await?;
        return Ok(None);
    };
    q_exec!(
        &mut conn,
        "UPDATE notifications SET status = 'failed', last_error = $1, updated_at = $2 WHERE id = $3",
        reason,
        now(),
        id
    )?;
    let fb = insert(
        &mut conn,
        &ctx,
        NewRow {
            channel,
            recipient: addr,
            kind: &kind,
            person_id: p.id,
            template: &before.template,
            vars: before.vars.0.clone(),
            subject: (before.subject_type.clone().unwrap_or_default(), before.subject_id.unwrap_or_default()),
            fallback_of: Some(id),
            note_on_outcome: before.note_on_outcome,
            critical: before.critical,
        },
    )
    .await?;
    emit(
        &mut conn,
        &ctx,
        "notification.failed",
        "notification",
        id,
        json!({"notification_id": id, "channel": before.channel, "template": before.template, "error": reason,
               "status": "failed", "fallback_id": fb.id, "fallback_channel": channel}),
    )
    .await?;
    write_audit(
        &mut conn,
        &ctx,
        "notification.failed",
        "notification",
        Some(id.to_string()),
        Some(audit_view(&before)),
        Some(json!({"error": reason, "fallback_id": fb.id, "fallback_channel": channel})),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(fb.id))
}

/// Records a failed send. When `final_attempt`, the notification is failed for good (see
/// [`fail`]); otherwise it waits for its retry.
pub async fn record_failure(db: &Db, id: Uuid, error: &str, final_attempt: bool) -> DomainResult<()> {
    if final_attempt { fail(db, id, error).await } else { record_retry(db, id, error).await }
}

/// Failed for good: a `notification.failed` event, a notification_failed exception with the
/// reason, and the Contact note saying it failed.
async fn fail(db: &Db, id: Uuid, error: &str) -> DomainResult<()> {
    let ctx = Ctx::system();
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = load(&mut conn, id).await?;
    if !matches!(before.status.as_str(), "queued" | "sending") {
        return Ok(());
    }
    q_exec!(
        &mut conn,
        "UPDATE notifications SET status = 'failed', last_error = $1, updated_at = $2 WHERE id = $3",
        error,
        now(),
        id
    )?;
    emit(&mut conn, &ctx, "notification.failed", "notification", id, json!({"notification_id": id, "channel": before.channel, "template": before.template, "error": error, "status": "failed"})).await?;
    let subject_ok = before.subject_type.as_deref().is_some_and(|s| crate::machine::SUBJECT_TYPES.contains(&s));
    exceptions::insert(
        &mut conn,
        &ctx,
        NewException {
            kind: "notification_failed".into(),
            title: Some(format!("{} message ({}) not sent: {error}", before.channel, before.template)),
            severity: if before.critical { "critical" } else { "medium" }.into(),
            subject_type: before.subject_type.clone().filter(|_| subject_ok),
            subject_id: before.subject_id.filter(|_| subject_ok),
            assignee_id: None,
        },
    )
    .await?;
    write_audit(
        &mut conn,
        &ctx,
        "notification.failed",
        "notification",
        Some(id.to_string()),
        Some(audit_view(&before)),
        Some(json!({"error": error})),
    )
    .await?;
    if let Some(note) = contact_note(&before, false, error) {
        notes::insert(&mut conn, &ctx, note).await?;
    }
    tx.commit().await
}

/// A provider's delivery report (Twilio's status callback): `delivered`, or failed with the
/// provider's reason. Unknown provider ids are ignored. Returns whether a row changed.
pub async fn record_delivery(
    db: &Db,
    channel: &str,
    provider_id: &str,
    delivered: bool,
    detail: &str,
) -> DomainResult<bool> {
    let ctx = Ctx::system();
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let Some(before) = q_opt!(
        &mut conn,
        Notification,
        "SELECT * FROM notifications WHERE channel = $1 AND provider_id = $2",
        channel,
        provider_id
    )?
    else {
        return Ok(false);
    };
    if !matches!(before.status.as_str(), "sending" | "sent") {
        return Ok(false);
    }
    if delivered {
        let mut conn = tx.conn();
        let at = now();
        q_exec!(
            &mut conn,
            "UPDATE notifications SET status = 'delivered', delivered_at = $1, updated_at = $1 WHERE id = $2",
            at,
            before.id
        )?;
        emit(&mut conn, &ctx, "notification.delivered", "notification", before.id, json!({"notification_id": before.id, "channel": channel, "template": before.template, "status": "delivered"})).await?;
        write_audit(
            &mut conn,
            &ctx,
            "notification.delivered",
            "notification",
            Some(before.id.to_string()),
            None,
            Some(json!({"status": "delivered"})),
        )
        .await?;
        tx.commit().await?;
    } else {
        // Undelivered: failed with the provider's reason, as a send that failed for good.
        let mut conn = tx.conn();
        q_exec!(&mut conn, "UPDATE notifications SET status = 'sending' WHERE id = $1", before.id)?;
        tx.commit().await?;
        fail(db, before.id, &format!("undelivered: {detail}")).await?;
    }
    Ok(true)
}

/// Filters of the ledger's list.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub status: Option<String>,
    pub channel: Option<String>,
    pub subject_type: Option<String>,
    pub subject_id: Option<Uuid>,
    pub template: Option<String>,
}

fn mask(channel: &str, addr: &str) -> String {
    match channel {
        "email" => policy::mask_email(addr),
        "sms" => policy::mask_phone(addr),
        _ => policy::mask_telegram(addr),
    }
}

/// The notification as `ctx` may see it: the recipient masked without `clients:pii`.
pub fn masked(ctx: &Ctx, mut n: Notification) -> Notification {
    if !ctx.can(Permission::ClientsPii) {
        n.recipient = n.recipient.map(|r| mask(&n.channel, &r));
    }
    n
}

/// The ledger, newest first.
pub async fn list(db: &Db, ctx: &Ctx, f: Filter, page: super::PageReq) -> DomainResult<Page<Notification>> {
    authorize(db, ctx, Permission::ActionCenterRead, "notification").await?;
    if let Some(s) = &f.status {
        super::one_of(s, NOTIFICATION_STATUSES, "status")?;
    }
    if let Some(c) = &f.channel {
        super::one_of(c, templates::CHANNELS, "channel")?;
    }
    let mut h = db.acquire().await?;
    let rows = q_all!(
        &mut h.conn(),
        Notification,
        "SELECT * FROM notifications
         WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR channel = $2) AND ($3 IS NULL OR subject_type = $3)
           AND ($4 IS NULL OR subject_id = $4) AND ($5 IS NULL OR template = $5) AND ($6 IS NULL OR id < $6)
         ORDER BY id DESC LIMIT $7",
        f.status,
        f.channel,
        f.subject_type,
        f.subject_id,
        f.template,
        page.cursor,
        page.fetch()
    )?;
    let rows: Vec<Notification> = rows.into_iter().map(|n| masked(ctx, n)).collect();
    Ok(Page::from_rows(rows, page.limit, |v| v.id))
}

/// A subject's notifications, oldest first (its timeline); no addresses, no bodies.
#[derive(Clone, Debug, Serialize, FromRow)]
pub struct TimelineEntry {
    pub id: Uuid,
    pub channel: String,
    pub template: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub fallback_of: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn for_subject(conn: &mut Conn<'_>, subject_type: &str, id: Uuid) -> DomainResult<Vec<TimelineEntry>> {
    q_all!(
        conn,
        TimelineEntry,
        "SELECT id, channel, template, status, attempts, last_error, fallback_of, created_at, updated_at
         FROM notifications WHERE subject_type = $1 AND subject_id = $2 ORDER BY id",
        subject_type,
        id
    )
}

/// A channel as `/health` shows it: `up` with its provider, or `disabled` with the settings
/// that would enable it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ChannelState {
    pub channel: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub enable_with: Vec<String>,
}

/// The channels and the settings that enable each.
pub const CHANNELS: &[(&str, &[&str])] = &[
    ("telegram_diva", &["TELEGRAM_DIVA_TOKEN"]),
    ("telegram_kesha", &["TELEGRAM_KESHA_TOKEN"]),
    ("email", &["SMTP_URL and EMAIL_FROM", "RESEND_API_KEY and EMAIL_FROM"]),
    ("sms", &["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID"]),
];

/// Every channel disabled (a process that was given no channel settings).
pub fn all_disabled() -> Vec<ChannelState> {
    CHANNELS
        .iter()
        .map(|(name, vars)| ChannelState {
            channel: (*name).into(),
            status: "disabled".into(),
            provider: None,
            enable_with: vars.iter().map(|v| v.to_string()).collect(),
        })
        .collect()
}
