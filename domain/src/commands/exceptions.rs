//! Exceptions: deviations that need a human (a failed payment, a breached SLA, a blocked client).

use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::tasks::{check_subject, visible};
use super::{PageReq, authorize, check_version, emit, one_of, require_text, snapshot, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::machine::{EXCEPTION, EXCEPTION_TYPES, SEVERITIES};
use crate::policy::Permission;
use crate::rows::{Exception, Page};
use crate::store::{Conn, Db, Tx};
use crate::{Ctx, new_id, now, q_all, q_exec, q_opt};

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
pub struct NewException {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: Option<String>,
    pub severity: String,
    pub subject_type: Option<String>,
    pub subject_id: Option<Uuid>,
    pub assignee_id: Option<Uuid>,
}

pub async fn load(conn: &mut Conn<'_>, id: Uuid) -> DomainResult<Exception> {
    q_opt!(conn, Exception, "SELECT * FROM exceptions WHERE id = $1", id)?
        .ok_or(DomainError::NotFound { entity: "exception" })
}

pub async fn insert(conn: &mut Conn<'_>, ctx: &Ctx, e: NewException) -> DomainResult<Exception> {
    crate::validate::input(&e)?;
    one_of(&e.kind, EXCEPTION_TYPES, "type")?;
    one_of(&e.severity, SEVERITIES, "severity")?;
    match (&e.subject_type, e.subject_id) {
        (Some(st), Some(sid)) => check_subject(conn, st, sid).await?,
        (None, None) => {}
        _ => {
            return Err(DomainError::invalid("subject_type and subject_id go together"));
        }
    }
    if let Some(a) = e.assignee_id {
        super::users::load(conn, a).await.map_err(|_| DomainError::NotFound { entity: "user" })?;
    }
    let title = e.title.clone().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| e.kind.replace('_', " "));
    crate::validate::text("title", &title)?;
    let id = new_id();
    let at = now();
    let due_at =
        crate::sla::policy_for(conn, "exception", &e.kind).await?.map(|p| crate::sla::deadline(&p, at)).transpose()?;
    q_exec!(
        conn,
        "INSERT INTO exceptions (id, type, title, severity, status, subject_type, subject_id, assignee_id, created_by, created_at,
             updated_at, due_at, sla_started_at)
         VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, $8, $9, $9, $10, $9)",
        id,
        e.kind.clone(),
        title,
        e.severity.clone(),
        e.subject_type.clone(),
        e.subject_id,
        e.assignee_id,
        ctx.actor.label(),
        at,
        due_at
    )?;

    let row = load(conn, id).await?;
    emit(conn, ctx, "exception.created", "exception", id, payload(&row)).await?;
    write_audit(conn, ctx, "exception.created", "exception", Some(id.to_string()), None, Some(snapshot(&row))).await?;
    Ok(row)
}

fn payload(e: &Exception) -> serde_json::Value {
    json!({
        "exception_id": e.id, "type": e.kind, "severity": e.severity, "status": e.status,
        "assignee_id": e.assignee_id, "subject_type": e.subject_type, "subject_id": e.subject_id,
    })
}

pub async fn create(db: &Db, ctx: &Ctx, input: NewException) -> DomainResult<Exception> {
    authorize(db, ctx, Permission::ExceptionsWrite, "exception").await?;
    let mut tx = db.begin().await?;
    let row = insert(&mut tx.conn(), ctx, input).await?;
    tx.commit().await?;
    Ok(row)
}

async fn load_visible(db: &Db, ctx: &Ctx, id: Uuid) -> DomainResult<Exception> {
    let row = load(&mut db.acquire().await?.conn(), id).await?;
    if !visible(ctx, row.assignee_id) {
        authorize(db, ctx, Permission::ExceptionsAll, "exception").await?;
    }
    Ok(row)
}

pub async fn get(db: &Db, ctx: &Ctx, id: Uuid) -> DomainResult<Exception> {
    authorize(db, ctx, Permission::ExceptionsRead, "exception").await?;
    load_visible(db, ctx, id).await
}

pub async fn list(
    db: &Db,
    ctx: &Ctx,
    status: Option<String>,
    kind: Option<String>,
    page: PageReq,
) -> DomainResult<Page<Exception>> {
    authorize(db, ctx, Permission::ExceptionsRead, "exception").await?;
    if let Some(s) = &status {
        one_of(s, EXCEPTION.states, "status")?;
    }
    if let Some(k) = &kind {
        one_of(k, EXCEPTION_TYPES, "type")?;
    }
    let only_for = if ctx.sees_all_items() { None } else { ctx.actor.user_id() };
    let rows = q_all!(
        &mut db.acquire().await?.conn(),
        Exception,
        "SELECT * FROM exceptions WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR type = $2)
             AND ($3 IS NULL OR assignee_id IS NULL OR assignee_id = $3)
             AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5",
        status,
        kind,
        only_for,
        page.cursor,
        page.fetch()
    )?;
    Ok(Page::from_rows(rows, page.limit, |e| e.id))
}

/// acknowledge, resolve or dismiss; resolving and dismissing need a resolution text.
pub async fn transition(
    db: &Db,
    ctx: &Ctx,
    id: Uuid,
    to: &str,
    resolution: Option<String>,
    version: Option<i64>,
) -> DomainResult<Exception> {
    authorize(db, ctx, Permission::ExceptionsWrite, "exception").await?;
    if !EXCEPTION.is_state(to) {
        return Err(DomainError::invalid(format!("status must be one of: {}", EXCEPTION.states.join(", "))));
    }
    let current = load_visible(db, ctx, id).await?;
    let mut tx = db.begin().await?;
    let after = transition_in(&mut tx, ctx, id, to, resolution, version.or(Some(current.version))).await?;
    tx.commit().await?;
    Ok(after)
}

/// The exception transition inside a caller's transaction.
pub async fn transition_in(
    tx: &mut Tx,
    ctx: &Ctx,
    id: Uuid,
    to: &str,
    resolution: Option<String>,
    version: Option<i64>,
) -> DomainResult<Exception> {
    if !EXCEPTION.is_state(to) {
        return Err(DomainError::invalid(format!("status must be one of: {}", EXCEPTION.states.join(", "))));
    }
    let mut conn = tx.conn();
    let before = load(&mut conn, id).await?;
    check_version("exception", version, before.version)?;
    EXCEPTION.check(&before.status, to)?;
    let resolution = if matches!(to, "resolved" | "dismissed") {
        Some(require_text(resolution.as_deref(), "resolution")?)
    } else {
        before.resolution.clone()
    };
    let n = q_exec!(
        &mut conn,
        "UPDATE exceptions SET status = $1, resolution = $2, updated_at = $3, version = version + 1
         WHERE id = $4 AND version = $5 AND status = $6",
        to,
        resolution,
        now(),
        id,
        before.version,
        before.status.clone()
    )?;
    if n == 0 {
        return Err(DomainError::VersionConflict { entity: "exception", current_version: None });
    }
    let after = load(&mut conn, id).await?;
    let mut p = payload(&after);
    p["from"] = json!(before.status);
    p["to"] = json!(after.status);
    p["resolution"] = json!(after.resolution);
    emit(&mut conn, ctx, "exception.status_changed", "exception", id, p.clone()).await?;
    if matches!(to, "resolved" | "dismissed") {
        emit(&mut conn, ctx, "exception.resolved", "exception", id, p).await?;
    }
    write_audit(
        &mut conn,
        ctx,
        "exception.status_changed",
        "exception",
        Some(id.to_string()),
        Some(snapshot(&before)),
        Some(snapshot(&after)),
    )
    .await?;
    Ok(after)
}

pub async fn assign(
    db: &Db,
    ctx: &Ctx,
    id: Uuid,
    assignee_id: Option<Uuid>,
    version: Option<i64>,
) -> DomainResult<Exception> {
    authorize(db, ctx, Permission::ExceptionsWrite, "exception").await?;
    let current = load_visible(db, ctx, id).await?;
    if !ctx.sees_all_items() && assignee_id.is_some() && assignee_id != ctx.actor.user_id() {
        authorize(db, ctx, Permission::ExceptionsAll, "exception").await?;
    }
    let mut tx = db.begin().await?;
    let after = assign_in(&mut tx, ctx, id, assignee_id, version.or(Some(current.version))).await?;
    tx.commit().await?;
    Ok(after)
}

/// Assigns an exception to the operator round robin picks, the pick inside the same
/// transaction. Handing work to someone else needs `exceptions:all` from an OPERATOR.
pub async fn assign_round_robin(db: &Db, ctx: &Ctx, id: Uuid, version: Option<i64>) -> DomainResult<Exception> {
    authorize(db, ctx, Permission::ExceptionsWrite, "exception").await?;
    let current = load_visible(db, ctx, id).await?;
    if !ctx.sees_all_items() {
        authorize(db, ctx, Permission::ExceptionsAll, "exception").await?;
    }
    let mut tx = db.begin().await?;
    let cap = tx.settings().max_open_items_per_operator;
    let who = super::assignment::round_robin(&mut tx, cap).await?.ok_or_else(|| DomainError::GuardFailed {
        guard: "operator_available",
        message: "no operator on duty has room for more work".into(),
    })?;
    let after = assign_in(&mut tx, ctx, id, Some(who), version.or(Some(current.version))).await?;
    tx.commit().await?;
    Ok(after)
}

/// Assigns an exception inside a caller's transaction.
pub async fn assign_in(
    tx: &mut Tx,
    ctx: &Ctx,
    id: Uuid,
    assignee_id: Option<Uuid>,
    version: Option<i64>,
) -> DomainResult<Exception> {
    let mut conn = tx.conn();
    let before = load(&mut conn, id).await?;
    check_version("exception", version, before.version)?;
    if EXCEPTION.terminal.contains(&before.status.as_str()) {
        return Err(DomainError::GuardFailed {
            guard: "exception_open",
            message: format!("the exception is {}", before.status),
        });
    }
    if let Some(a) = assignee_id {
        super::users::load(&mut conn, a).await.map_err(|_| DomainError::NotFound { entity: "user" })?;
    }
    let n = q_exec!(
        &mut conn,
        "UPDATE exceptions SET assignee_id = $1, updated_at = $2, version = version + 1 WHERE id = $3 AND version = $4",
        assignee_id,
        now(),
        id,
        before.version
    )?;
    if n == 0 {
        return Err(DomainError::VersionConflict { entity: "exception", current_version: None });
    }
    let after = load(&mut conn, id).await?;
    emit(
        &mut conn,
        ctx,
        "exception.assigned",
        "exception",
        id,
        json!({"exception_id": id, "assignee_id": assignee_id}),
    )
    .await?;
    write_audit(
        &mut conn,
        ctx,
        "exception.assigned",
        "exception",
        Some(id.to_string()),
        Some(snapshot(&before)),
        Some(snapshot(&after)),
    )
    .await?;
    Ok(after)
}
