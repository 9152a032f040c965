//! Tasks: atomic actions someone must do, with an SLA deadline and an assignee.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{PageReq, authorize, check_version, emit, one_of, snapshot, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::machine::{PRIORITIES, SUBJECT_TYPES, TASK, TASK_TYPES};
use crate::policy::Permission;
use crate::rows::{Page, Task};
use crate::store::{Conn, Db, Tx};
use crate::{Ctx, new_id, now, q_all, q_exec, q_opt};

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
pub struct NewTask {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: Option<String>,
    pub priority: Option<String>,
    pub subject_type: Option<String>,
    pub subject_id: Option<Uuid>,
    pub assignee_id: Option<Uuid>,
    pub due_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
pub struct TaskTransition {
    pub status: String,
    pub version: Option<i64>,
}

pub async fn load(conn: &mut Conn<'_>, id: Uuid) -> DomainResult<Task> {
    q_opt!(conn, Task, "SELECT * FROM tasks WHERE id = $1", id)?.ok_or(DomainError::NotFound { entity: "task" })
}

/// An OPERATOR works on their own items and unassigned ones; others are not theirs to touch.
pub(crate) fn visible(ctx: &Ctx, assignee: Option<Uuid>) -> bool {
    ctx.sees_all_items() || assignee.is_none() || assignee == ctx.actor.user_id()
}

/// Checks that a subject named by a task, exception or note exists.
pub(crate) async fn check_subject(conn: &mut Conn<'_>, subject_type: &str, subject_id: Uuid) -> DomainResult<()> {
    one_of(subject_type, SUBJECT_TYPES, "subject_type")?;
    #[derive(sqlx::FromRow)]
    struct One {
        #[allow(dead_code)]
        id: Uuid,
    }
    let found = match subject_type {
        "inquiry" => q_opt!(conn, One, "SELECT id FROM inquiries WHERE id = $1", subject_id)?,
        "booking" => q_opt!(conn, One, "SELECT id FROM bookings WHERE id = $1", subject_id)?,
        "client" => q_opt!(conn, One, "SELECT id FROM clients WHERE id = $1", subject_id)?,
        "model" => q_opt!(conn, One, "SELECT id FROM models WHERE id = $1", subject_id)?,
        "task" => q_opt!(conn, One, "SELECT id FROM tasks WHERE id = $1", subject_id)?,
        "exception" => q_opt!(conn, One, "SELECT id FROM exceptions WHERE id = $1", subject_id)?,
        _ => q_opt!(conn, One, "SELECT id FROM payments WHERE id = $1", subject_id)?,
    };
    // A reference to nothing is a 404 of what it names, like a path to nothing.
    let entity = SUBJECT_TYPES.iter().copied().find(|t| *t == subject_type).unwrap_or("subject");
    found.map(|_| ()).ok_or(DomainError::NotFound { entity })
}

fn default_title(kind: &str) -> String {
    let mut t = kind.replace('_', " ");
    if let Some(first) = t.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    t
}

/// Inserts a task inside the caller's transaction (bookings and automation create tasks too).
pub async fn insert(conn: &mut Conn<'_>, ctx: &Ctx, t: NewTask) -> DomainResult<Task> {
    crate::validate::input(&t)?;
    crate::validate::opt_time("due_at", t.due_at)?;
    one_of(&t.kind, TASK_TYPES, "type")?;
    let priority = t.priority.clone().unwrap_or_else(|| "normal".into());
    one_of(&priority, PRIORITIES, "priority")?;
    match (&t.subject_type, t.subject_id) {
        (Some(st), Some(sid)) => check_subject(conn, st, sid).await?,
        (None, None) => {}
        _ => {
            return Err(DomainError::invalid("subject_type and subject_id go together"));
        }
    }
    if let Some(a) = t.assignee_id {
        super::users::load(conn, a).await.map_err(|_| DomainError::NotFound { entity: "user" })?;
    }
    let title = t.title.clone().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| default_title(&t.kind));
    crate::validate::text("title", &title)?;
    let id = new_id();
    let at = now();
    // No deadline given: the SLA policy of its type sets one.
    let policy = crate::sla::policy_for(conn, "task", &t.kind).await?;
    let due_at = match t.due_at {
        Some(d) => Some(d),
        None => policy.as_ref().map(|p| crate::sla::deadline(p, at)).transpose()?,
    };
    // A task about an inquiry that already waits on the client starts with its clock stopped.
    let paused_at = match (&t.subject_type, t.subject_id, &policy) {
        (Some(st), Some(sid), Some(p)) if st == "inquiry" && p.pause_on_awaiting_client => {
            super::inquiries::load(conn, sid).await.ok().filter(|i| i.status == "awaiting_client").map(|_| at)
        }
        _ => None,
    };
    q_exec!(
        conn,
        "INSERT INTO tasks (id, type, title, priority, status, assignee_id, subject_type, subject_id, due_at, created_by,
             created_at, updated_at, sla_started_at, paused_at)
         VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, $8, $9, $10, $10, $10, $11)",
        id,
        t.kind.clone(),
        title,
        priority,
        t.assignee_id,
        t.subject_type.clone(),
        t.subject_id,
        due_at,
        ctx.actor.label(),
        at,
        paused_at
    )?;

    let row = load(conn, id).await?;
    emit(conn, ctx, "task.created", "task", id, payload(&row)).await?;
    if let Some(a) = row.assignee_id {
        emit(conn, ctx, "task.assigned", "task", id, json!({"task_id": id, "assignee_id": a, "type": row.kind}))
            .await?;
    }
    write_audit(conn, ctx, "task.created", "task", Some(id.to_string()), None, Some(snapshot(&row))).await?;
    Ok(row)
}

fn payload(t: &Task) -> serde_json::Value {
    json!({
        "task_id": t.id, "type": t.kind, "priority": t.priority, "status": t.status,
        "assignee_id": t.assignee_id, "subject_type": t.subject_type, "subject_id": t.subject_id,
        "due_at": t.due_at,
    })
}

pub async fn create(db: &Db, ctx: &Ctx, input: NewTask) -> DomainResult<Task> {
    authorize(db, ctx, Permission::TasksWrite, "task").await?;
    if !visible(ctx, input.assignee_id) {
        return Err(authorize(db, ctx, Permission::TasksAll, "task")
            .await
            .err()
            .unwrap_or(DomainError::forbidden(Permission::TasksAll)));
    }
    let mut tx = db.begin().await?;
    let row = insert(&mut tx.conn(), ctx, input).await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn get(db: &Db, ctx: &Ctx, id: Uuid) -> DomainResult<Task> {
    authorize(db, ctx, Permission::TasksRead, "task").await?;
    let row = load(&mut db.acquire().await?.conn(), id).await?;
    if !visible(ctx, row.assignee_id) {
        authorize(db, ctx, Permission::TasksAll, "task").await?;
    }
    Ok(row)
}

#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    pub status: Option<String>,
    pub assignee_id: Option<Uuid>,
    pub kind: Option<String>,
    pub subject_type: Option<String>,
    pub subject_id: Option<Uuid>,
}

pub async fn list(db: &Db, ctx: &Ctx, f: TaskFilter, page: PageReq) -> DomainResult<Page<Task>> {
    authorize(db, ctx, Permission::TasksRead, "task").await?;
    if let Some(s) = &f.status {
        one_of(s, TASK.states, "status")?;
    }
    if let Some(k) = &f.kind {
        one_of(k, TASK_TYPES, "type")?;
    }
    // OPERATORs see their own and unassigned items only.
    let only_for = if ctx.sees_all_items() { None } else { ctx.actor.user_id() };
    let rows = q_all!(
        &mut db.acquire().await?.conn(),
        Task,
        "SELECT * FROM tasks WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR assignee_id = $2)
             AND ($3 IS NULL OR type = $3) AND ($4 IS NULL OR subject_type = $4) AND ($5 IS NULL OR subject_id = $5)
             AND ($6 IS NULL OR assignee_id IS NULL OR assignee_id = $6)
             AND ($7 IS NULL OR id < $7) ORDER BY id DESC LIMIT $8",
        f.status,
        f.assignee_id,
        f.kind,
        f.subject_type,
        f.subject_id,
        only_for,
        page.cursor,
        page.fetch()
    )?;
    Ok(Page::from_rows(rows, page.limit, |t| t.id))
}

pub async fn transition(db: &Db, ctx: &Ctx, id: Uuid, t: TaskTransition) -> DomainResult<Task> {
    authorize(db, ctx, Permission::TasksWrite, "task").await?;
    if !TASK.is_state(&t.status) {
        return Err(DomainError::invalid(format!("status must be one of: {}", TASK.states.join(", "))));
    }
    let current = load(&mut db.acquire().await?.conn(), id).await?;
    if !visible(ctx, current.assignee_id) {
        authorize(db, ctx, Permission::TasksAll, "task").await?;
    }
    let mut tx = db.begin().await?;
    let row = transition_in(&mut tx.conn(), ctx, id, &t.status, t.version.or(Some(current.version))).await?;
    tx.commit().await?;
    Ok(row)
}

/// The task transition inside a caller's transaction (quick actions complete a task and move
/// its booking in one go).
pub async fn transition_in(
    conn: &mut Conn<'_>,
    ctx: &Ctx,
    id: Uuid,
    to: &str,
    version: Option<i64>,
) -> DomainResult<Task> {
    let before = load(conn, id).await?;
    check_version("task", version, before.version)?;
    TASK.check(&before.status, to)?;
    let n = q_exec!(
        conn,
        "UPDATE tasks SET status = $1, updated_at = $2, version = version + 1 WHERE id = $3 AND version = $4 AND status = $5",
        to,
        now(),
        id,
        before.version,
        before.status.clone()
    )?;
    if n == 0 {
        return Err(DomainError::VersionConflict { entity: "task", current_version: None });
    }
    let after = load(conn, id).await?;
    let mut p = payload(&after);
    p["from"] = json!(before.status);
    p["to"] = json!(after.status);
    emit(conn, ctx, "task.status_changed", "task", id, p).await?;
    write_audit(
        conn,
        ctx,
        "task.status_changed",
        "task",
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
) -> DomainResult<Task> {
    authorize(db, ctx, Permission::TasksWrite, "task").await?;
    let current = load(&mut db.acquire().await?.conn(), id).await?;
    // An OPERATOR may claim a task (or hand back their own), not hand work to others.
    if !ctx.sees_all_items()
        && (!visible(ctx, current.assignee_id) || (assignee_id.is_some() && assignee_id != ctx.actor.user_id()))
    {
        authorize(db, ctx, Permission::TasksAll, "task").await?;
    }
    // The check above read `current`: the write must apply to that same version, so a claim
    // that raced another claim answers 409 instead of silently taking the item over.
    let mut tx = db.begin().await?;
    let after = assign_in(&mut tx, ctx, id, assignee_id, version.or(Some(current.version))).await?;

    tx.commit().await?;
    Ok(after)
}

/// Assigns a task to the operator round robin picks, the pick inside the same transaction.
/// Handing work to someone else needs `tasks:all` from an OPERATOR, as for any assignment.
pub async fn assign_round_robin(db: &Db, ctx: &Ctx, id: Uuid, version: Option<i64>) -> DomainResult<Task> {
    authorize(db, ctx, Permission::TasksWrite, "task").await?;
    let current = load(&mut db.acquire().await?.conn(), id).await?;
    if !ctx.sees_all_items() {
        authorize(db, ctx, Permission::TasksAll, "task").await?;
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

/// Assigns a task inside a caller's transaction.
pub async fn assign_in(
    tx: &mut Tx,
    ctx: &Ctx,
    id: Uuid,
    assignee_id: Option<Uuid>,
    version: Option<i64>,
) -> DomainResult<Task> {
    let mut conn = tx.conn();
    let before = load(&mut conn, id).await?;
    check_version("task", version, before.version)?;
    if crate::machine::TASK.terminal.contains(&before.status.as_str()) {
        return Err(DomainError::GuardFailed { guard: "task_open", message: format!("the task is {}", before.status) });
    }
    if let Some(a) = assignee_id {
        let u = super::users::load(&mut conn, a).await.map_err(|_| DomainError::NotFound { entity: "user" })?;
        if !u.active {
            return Err(DomainError::invalid("assignee_id names an inactive user"));
        }
    }
    let n = q_exec!(
        &mut conn,
        "UPDATE tasks SET assignee_id = $1, updated_at = $2, version = version + 1 WHERE id = $3 AND version = $4",
        assignee_id,
        now(),
        id,
        before.version
    )?;
    if n == 0 {
        return Err(DomainError::VersionConflict { entity: "task", current_version: None });
    }
    let after = load(&mut conn, id).await?;
    emit(&mut conn, ctx, "task.assigned", "task", id, json!({"task_id": id, "assignee_id": assignee_id, "previous_assignee_id": before.assignee_id, "type": after.kind})).await?;
    write_audit(
        &mut conn,
        ctx,
        "task.assigned",
        "task",
        Some(id.to_string()),
        Some(snapshot(&before)),
        Some(snapshot(&after)),
    )
    .await?;
    Ok(after)
}
