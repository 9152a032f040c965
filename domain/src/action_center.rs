//! The Action Center: every open task and exception the caller may see, in the order an
//! operator should work them, and the quick actions on them (confirm, contact, note, assign,
//! acknowledge), each one command through the same write path as everything else.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::commands::bookings::{self, BookingTransition};
use crate::commands::notes::{self, NewNote};
use crate::commands::notifications::{self, Message};
use crate::commands::{authorize, emit, exceptions, tasks, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::policy::Permission;
use crate::rows::{Exception, Task};
use crate::store::{Conn, Db};
use crate::{Ctx, now, q_all, q_exec, q_opt, sla};

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Subject {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Uuid,
    pub label: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Item {
    /// task or exception.
    pub kind: String,
    pub id: Uuid,
    #[serde(rename = "type")]
    pub item_type: String,
    pub title: String,
    /// critical, high, normal or low (an exception's severity mapped onto priorities).
    pub priority: String,
    pub severity: Option<String>,
    pub status: String,
    pub due_at: Option<DateTime<Utc>>,
    /// breached, at_risk or ok.
    pub sla_state: String,
    pub sla_paused: bool,
    pub escalation_level: i64,
    pub assignee_id: Option<Uuid>,
    pub assignee_name: Option<String>,
    pub subject: Option<Subject>,
    pub created_at: DateTime<Utc>,
    pub version: i64,
    /// Still open (an item that is done, cancelled, resolved or dismissed leaves the list).
    pub open: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub mine: bool,
    pub unassigned: bool,
    pub kind: Option<String>,
    pub item_type: Option<String>,
    pub priority: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub breached: usize,
    pub at_risk: usize,
    pub ok: usize,
    pub total: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Listing {
    pub items: Vec<Item>,
    pub counts: Counts,
}

fn priority_of_severity(s: &str) -> &'static str {
    match s {
        "critical" => "critical",
        "high" => "high",
        "low" => "low",
        _ => "normal",
    }
}

fn priority_rank(p: &str) -> u8 {
    match p {
        "critical" => 0,
        "high" => 1,
        "normal" => 2,
        _ => 3,
    }
}

/// The Action Center's order: breached first, then the soonest deadline (none last), then
/// priority, then the oldest.
pub fn sort(items: &mut [Item]) {
    items.sort_by(|a, b| {
        (a.sla_state != "breached")
            .cmp(&(b.sla_state != "breached"))
            .then_with(|| match (a.due_at, b.due_at) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then_with(|| priority_rank(&a.priority).cmp(&priority_rank(&b.priority)))
            .then_with(|| a.created_at.cmp(&b.created_at))
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// Whether `ctx` may see the item: the Action Center's permission, and for OPERATORs only
/// their own and unassigned items.
pub fn visible_to(ctx: &Ctx, item: &Item) -> bool {
    ctx.can(Permission::ActionCenterRead)
        && (ctx.sees_all_items() || item.assignee_id.is_none() || item.assignee_id == ctx.actor.user_id())
}

#[derive(sqlx::FromRow)]
struct Named {
    name: String,
}

#[derive(sqlx::FromRow)]
struct Pct {
    kind: String,
    item_type: String,
    at_risk_percent: i64,
}

/// A task with its assignee's name and its subject's label, as the list reads them in one query.
#[derive(sqlx::FromRow)]
struct TaskRow {
    #[sqlx(flatten)]
    task: Task,
    ac_assignee_name: Option<String>,
    ac_subject_label: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ExceptionRow {
    #[sqlx(flatten)]
    exception: Exception,
    ac_assignee_name: Option<String>,
    ac_subject_label: Option<String>,
}

/// Builds items with their labels, names and SLA states; `cache` keeps lookups per call.
struct Builder<'c, 'a> {
    conn: &'c mut Conn<'a>,
    names: HashMap<Uuid, Option<String>>,
    labels: HashMap<(String, Uuid), String>,
    pct: Vec<Pct>,
    at: DateTime<Utc>,
}

impl<'c, 'a> Builder<'c, 'a> {
    async fn new(conn: &'c mut Conn<'a>) -> DomainResult<Builder<'c, 'a>> {
        let pct = q_all!(conn, Pct, "SELECT kind, item_type, at_risk_percent FROM sla_policies")?;
        Ok(Builder { conn, names: HashMap::new(), labels: HashMap::new(), pct, at: now() })
    }

    fn at_risk_percent(&self, kind: &str, item_type: &str) -> i64 {
        self.pct
            .iter()
            .find(|p| p.kind == kind && p.item_type == item_type)
            .or_else(|| self.pct.iter().find(|p| p.kind == kind && p.item_type == "*"))
            .map(|p| p.at_risk_percent)
            .unwrap_or(20)
    }

    async fn user_name(&mut self, id: Option<Uuid>) -> DomainResult<Option<String>> {
        let Some(id) = id else { return Ok(None) };
        if let Some(n) = self.names.get(&id) {
            return Ok(n.clone());
        }
        let n = q_opt!(self.conn, Named, "SELECT name FROM users WHERE id = $1", id)?.map(|n| n.name);
        self.names.insert(id, n.clone());
        Ok(n)
    }

    async fn label(&mut self, kind: &str, id: Uuid) -> DomainResult<String> {
        if let Some(l) = self.labels.get(&(kind.to_string(), id)) {
            return Ok(l.clone());
        }
        let sql: &'static str = match kind {
            "inquiry" => {
                "SELECT c.name || ' · ' || i.source || ' inquiry' AS name FROM inquiries i JOIN clients c ON c.id = i.client_id WHERE i.id = $1"
            }
            "booking" => {
                "SELECT c.name || ' · ' || m.name AS name FROM bookings b JOIN clients c ON c.id = b.client_id JOIN models m ON m.id = b.model_id WHERE b.id = $1"
            }
            "client" => "SELECT name FROM clients WHERE id = $1",
            "model" => "SELECT name FROM models WHERE id = $1",
            "task" => "SELECT title AS name FROM tasks WHERE id = $1",
            "exception" => "SELECT title AS name FROM exceptions WHERE id = $1",
            _ => "SELECT kind || ' payment' AS name FROM payments WHERE id = $1",
        };
        let l = q_opt!(self.conn, Named, sql, id)?.map(|n| n.name).unwrap_or_else(|| kind.to_string());
        self.labels.insert((kind.to_string(), id), l.clone());
        Ok(l)
    }

    async fn subject(&mut self, kind: &Option<String>, id: Option<Uuid>) -> DomainResult<Option<Subject>> {
        match (kind, id) {
            (Some(k), Some(i)) => Ok(Some(Subject { kind: k.clone(), id: i, label: self.label(k, i).await? })),
            _ => Ok(None),
        }
    }

    async fn task(&mut self, t: Task) -> DomainResult<Item> {
        let name = self.user_name(t.assignee_id).await?;
        let subject = self.subject(&t.subject_type, t.subject_id).await?;
        Ok(self.task_with(t, name, subject))
    }

    fn task_with(&self, t: Task, assignee_name: Option<String>, subject: Option<Subject>) -> Item {
        let pct = self.at_risk_percent("task", &t.kind);
        let state = sla::state(self.at, t.due_at, t.sla_started_at.unwrap_or(t.created_at), t.paused_at, pct);
        Item {
            kind: "task".into(),
            id: t.id,
            open: matches!(t.status.as_str(), "open" | "in_progress"),
            item_type: t.kind,
            title: t.title,
            priority: t.priority,
            severity: None,
            status: t.status,
            due_at: t.due_at,
            sla_state: state.into(),
            sla_paused: t.paused_at.is_some(),
            escalation_level: t.escalation_level,
            assignee_name,
            assignee_id: t.assignee_id,
            subject,
            created_at: t.created_at,
            version: t.version,
        }
    }

    async fn exception(&mut self, e: Exception) -> DomainResult<Item> {
        let name = self.user_name(e.assignee_id).await?;
        let subject = self.subject(&e.subject_type, e.subject_id).await?;
        Ok(self.exception_with(e, name, subject))
    }

    fn exception_with(&self, e: Exception, assignee_name: Option<String>, subject: Option<Subject>) -> Item {
        let pct = self.at_risk_percent("exception", &e.kind);
        let state = sla::state(self.at, e.due_at, e.sla_started_at.unwrap_or(e.created_at), e.paused_at, pct);
        Item {
            kind: "exception".into(),
            id: e.id,
            open: matches!(e.status.as_str(), "open" | "acknowledged"),
            item_type: e.kind,
            title: e.title,
            priority: priority_of_severity(&e.severity).into(),
            severity: Some(e.severity),
            status: e.status,
            due_at: e.due_at,
            sla_state: state.into(),
            sla_paused: e.paused_at.is_some(),
            escalation_level: e.escalation_level,
            assignee_name,
            assignee_id: e.assignee_id,
            subject,
            created_at: e.created_at,
            version: e.version,
        }
    }
}

/// `SELECT` of open items of `$table` (aliased `$a`) with their assignee's name and their
/// subject's label joined in, for both kinds: the text up to the `WHERE`.
macro_rules! items_with_labels {
    ($a:literal, $table:literal) => {
        concat!(
            "SELECT ",
            $a,
            ".*, au.name AS ac_assignee_name,
                 CASE ",
            $a,
            ".subject_type
                     WHEN 'inquiry' THEN sic.name || ' · ' || si.source || ' inquiry'
                     WHEN 'booking' THEN sbc.name || ' · ' || sbm.name
                     WHEN 'client' THEN sc.name
                     WHEN 'model' THEN sm.name
                     WHEN 'task' THEN st.title
                     WHEN 'exception' THEN se.title
                     ELSE sp.kind || ' payment'
                 END AS ac_subject_label
             FROM ",
            $table,
            " ",
            $a,
            "
             LEFT JOIN users au ON au.id = ",
            $a,
            ".assignee_id
             LEFT JOIN inquiries si ON ",
            $a,
            ".subject_type = 'inquiry' AND si.id = ",
            $a,
            ".subject_id
             LEFT JOIN clients sic ON sic.id = si.client_id
             LEFT JOIN bookings sb ON ",
            $a,
            ".subject_type = 'booking' AND sb.id = ",
            $a,
            ".subject_id
             LEFT JOIN clients sbc ON sbc.id = sb.client_id
             LEFT JOIN models sbm ON sbm.id = sb.model_id
             LEFT JOIN clients sc ON ",
            $a,
            ".subject_type = 'client' AND sc.id = ",
            $a,
            ".subject_id
             LEFT JOIN models sm ON ",
            $a,
            ".subject_type = 'model' AND sm.id = ",
            $a,
            ".subject_id
             LEFT JOIN tasks st ON ",
            $a,
            ".subject_type = 'task' AND st.id = ",
            $a,
            ".subject_id
             LEFT JOIN exceptions se ON ",
            $a,
            ".subject_type = 'exception' AND se.id = ",
            $a,
            ".subject_id
             LEFT JOIN payments sp ON ",
            $a,
            ".subject_type = 'payment' AND sp.id = ",
            $a,
            ".subject_id
             "
        )
    };
}

/// The Action Center list for `ctx`, filtered, sorted, with counts per SLA state.
pub async fn list(db: &Db, ctx: &Ctx, f: &Filter) -> DomainResult<Listing> {
    authorize(db, ctx, Permission::ActionCenterRead, "action_center").await?;
    if let Some(k) = &f.kind
        && k != "task"
        && k != "exception"
    {
        return Err(DomainError::invalid("kind must be task or exception"));
    }
    if let Some(p) = &f.priority {
        crate::commands::one_of(p, crate::machine::PRIORITIES, "priority")?;
    }
    let me = ctx.actor.user_id();
    let only_for = if ctx.sees_all_items() { None } else { me };
    let mine = if f.mine { me } else { None };
    let mut h = db.acquire().await?;
    let mut conn = h.conn();
    // One builder for both kinds: the policies are read once and names and labels are shared.
    let b = Builder::new(&mut conn).await?;
    let mut items = Vec::new();
    if f.kind.as_deref() != Some("exception") {
        // Every open item (no cut before sorting), with its assignee's name and its subject's
        // label joined in: one query per kind, not one per item.
        let rows = q_all!(
            b.conn,
            TaskRow,
            concat!(
                items_with_labels!("t", "tasks"),
                "WHERE t.status IN ('open', 'in_progress')
                 AND ($1 IS NULL OR t.assignee_id IS NULL OR t.assignee_id = $1) AND ($2 IS NULL OR t.assignee_id = $2)
                 AND ($3 = 0 OR t.assignee_id IS NULL) AND ($4 IS NULL OR t.type = $4) AND ($5 IS NULL OR t.priority = $5)
             ORDER BY t.id"
            ),
            only_for,
            mine,
            i64::from(f.unassigned),
            f.item_type.clone(),
            f.priority.clone()
        )?;
        items.reserve(rows.len());
        for r in rows {
            let subject = r.task.subject_type.clone().zip(r.task.subject_id).map(|(kind, id)| Subject {
                label: r.ac_subject_label.clone().unwrap_or_else(|| kind.clone()),
                kind,
                id,
            });
            items.push(b.task_with(r.task, r.ac_assignee_name, subject));
        }
    }
    if f.kind.as_deref() != Some("task") {
        let rows = q_all!(
            b.conn,
            ExceptionRow,
            concat!(
                items_with_labels!("e", "exceptions"),
                "WHERE e.status IN ('open', 'acknowledged')
                 AND ($1 IS NULL OR e.assignee_id IS NULL OR e.assignee_id = $1) AND ($2 IS NULL OR e.assignee_id = $2)
                 AND ($3 = 0 OR e.assignee_id IS NULL) AND ($4 IS NULL OR e.type = $4)
             ORDER BY e.id"
            ),
            only_for,
            mine,
            i64::from(f.unassigned),
            f.item_type.clone()
        )?;
        for r in rows {
            let subject = r.exception.subject_type.clone().zip(r.exception.subject_id).map(|(kind, id)| Subject {
                label: r.ac_subject_label.clone().unwrap_or_else(|| kind.clone()),
                kind,
                id,
            });
            let item = b.exception_with(r.exception, r.ac_assignee_name, subject);
            if f.priority.as_ref().is_none_or(|p| *p == item.priority) {
                items.push(item);
            }
        }
    }
    sort(&mut items);
    let mut counts = Counts { total: items.len(), ..Default::default() };
    for i in &items {
        match i.sla_state.as_str() {
            "breached" => counts.breached += 1,
            "at_risk" => counts.at_risk += 1,
            _ => counts.ok += 1,
        }
    }
    Ok(Listing { items, counts })
}

/// One item as the Action Center shows it, open or not (for live updates); no permission
/// check: callers filter with `visible_to`.
pub async fn item(db: &Db, kind: &str, id: Uuid) -> DomainResult<Option<Item>> {
    let mut h = db.acquire().await?;
    let mut conn = h.conn();
    let row = match kind {
        "task" => match q_opt!(&mut conn, Task, "SELECT * FROM tasks WHERE id = $1", id)? {
            Some(t) => Some(Builder::new(&mut conn).await?.task(t).await?),
            None => None,
        },
        "exception" => match q_opt!(&mut conn, Exception, "SELECT * FROM exceptions WHERE id = $1", id)? {
            Some(e) => Some(Builder::new(&mut conn).await?.exception(e).await?),
            None => None,
        },
        _ => None,
    };
    Ok(row)
}

async fn visible_item(db: &Db, ctx: &Ctx, kind: &str, id: Uuid) -> DomainResult<Item> {
    authorize(db, ctx, Permission::ActionCenterRead, "action_center").await?;
    let it = item(db, kind, id).await?.ok_or(DomainError::NotFound { entity: "item" })?;
    if !visible_to(ctx, &it) {
        authorize(db, ctx, Permission::TasksAll, "action_center").await?;
    }
    Ok(it)
}

async fn reload(db: &Db, kind: &str, id: Uuid) -> DomainResult<Item> {
    item(db, kind, id).await?.ok_or(DomainError::NotFound { entity: "item" })
}

/// Confirm: completes a confirm_booking task and moves its booking one step forward through
/// the booking state machine (draft → pending → deposit_required → confirmed, never further),
/// in one transaction; if the booking cannot move (confirmed or later, or a guard says no),
/// it answers 409 and nothing changes.
pub async fn confirm(db: &Db, ctx: &Ctx, kind: &str, id: Uuid) -> DomainResult<Item> {
    let it = visible_item(db, ctx, kind, id).await?;
    authorize(db, ctx, Permission::TasksWrite, "task").await?;
    authorize(db, ctx, Permission::BookingsWrite, "booking").await?;
    if it.kind != "task" || it.item_type != "confirm_booking" {
        return Err(DomainError::GuardFailed {
            guard: "confirm_booking_task",
            message: "confirm applies to confirm_booking tasks".into(),
        });
    }
    let Some(Subject { kind: ref sk, id: booking_id, .. }) = it.subject else {
        return Err(DomainError::GuardFailed { guard: "booking_subject", message: "the task names no booking".into() });
    };
    if sk != "booking" {
        return Err(DomainError::GuardFailed { guard: "booking_subject", message: "the task names no booking".into() });
    }
    let mut tx = db.begin().await?;
    let booking = bookings::load(&mut tx.conn(), booking_id).await?;
    // Only up to confirmed: starting or completing a booking is never a Confirm.
    let next = match booking.status.as_str() {
        "pending" => "deposit_required",
        "deposit_required" => "confirmed",
        other => {
            return Err(DomainError::GuardFailed {
                guard: "booking_forward",
                message: format!("the booking is {other}; Confirm moves a booking only up to confirmed"),
            });
        }
    };
    bookings::transition_in(
        &mut tx,
        ctx,
        booking_id,
        &BookingTransition {
            status: next.into(),
            reason: Some("confirmed from the Action Center".into()),
            r#override: false,
            version: None,
        },
    )
    .await?;
    if it.status == "open" {
        tasks::transition_in(&mut tx.conn(), ctx, id, "in_progress", Some(it.version)).await?;
        tasks::transition_in(&mut tx.conn(), ctx, id, "done", None).await?;
    } else {
        tasks::transition_in(&mut tx.conn(), ctx, id, "done", Some(it.version)).await?;
    }
    tx.commit().await?;
    reload(db, kind, id).await
}

/// Contact: a templated message to the client of the item's subject, on the client's
/// preferred channel (falling back along the configured order). The note on the subject is
/// written when the outcome is known: "Contacted the client by ..." once a provider accepted
/// the message, "Could not contact the client ..." when every channel failed, never before.
pub async fn contact(
    db: &Db,
    ctx: &Ctx,
    kind: &str,
    id: Uuid,
    template: Option<String>,
) -> DomainResult<(Item, notifications::Notification)> {
    let it = visible_item(db, ctx, kind, id).await?;
    authorize(db, ctx, Permission::NotesWrite, "note").await?;
    let template = template.unwrap_or_else(|| "contact_client".into());
    let Some(subject) = it.subject.clone() else {
        return Err(DomainError::GuardFailed {
            guard: "client_subject",
            message: "the item has no subject with a client".into(),
        });
    };
    let mut tx = db.begin().await?;
    if !crate::commands::templates::exists(&mut tx.conn(), &template).await? {
        return Err(DomainError::NotFound { entity: "template" });
    }
    #[derive(sqlx::FromRow)]
    struct ClientRef {
        client_id: Uuid,
        start_at: Option<DateTime<Utc>>,
    }
    let client = {
        let mut conn = tx.conn();
        match subject.kind.as_str() {
            "booking" => {
                q_opt!(&mut conn, ClientRef, "SELECT client_id, start_at FROM bookings WHERE id = $1", subject.id)?
            }
            "inquiry" => q_opt!(
                &mut conn,
                ClientRef,
                "SELECT client_id, requested_start AS start_at FROM inquiries WHERE id = $1",
                subject.id
            )?,
            "client" => Some(ClientRef { client_id: subject.id, start_at: None }),
            _ => None,
        }
    }
    .ok_or_else(|| DomainError::GuardFailed {
        guard: "client_subject",
        message: "the item's subject has no client".into(),
    })?;
    let mut sent = notifications::queue(
        &mut tx,
        ctx,
        Message {
            channel: "preferred",
            to: "client",
            template: &template,
            client_id: Some(client.client_id),
            vars: json!({"start_at": client.start_at, "title": it.title}),
            subject: (subject.kind.clone(), subject.id),
            note_on_outcome: true,
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    let n = sent.pop().ok_or_else(|| DomainError::invalid("the client has no address to send to"))?;
    Ok((reload(db, kind, id).await?, n))
}

/// Note: free text on the item itself.
pub async fn note(db: &Db, ctx: &Ctx, kind: &str, id: Uuid, text: String) -> DomainResult<Item> {
    visible_item(db, ctx, kind, id).await?;
    notes::create(db, ctx, NewNote { subject_type: kind.into(), subject_id: id, text }).await?;
    reload(db, kind, id).await
}

/// Assign: to a user, to `round_robin` (the least-loaded operator on duty), or to nobody.
pub async fn assign(db: &Db, ctx: &Ctx, kind: &str, id: Uuid, assign_to: Option<String>) -> DomainResult<Item> {
    let it = visible_item(db, ctx, kind, id).await?;
    let who = match assign_to.as_deref() {
        None | Some("") => None,
        Some("round_robin") => {
            // The pick and the assignment commit together, so concurrent picks respect the cap.
            match kind {
                "task" => {
                    tasks::assign_round_robin(db, ctx, id, Some(it.version)).await?;
                }
                _ => {
                    exceptions::assign_round_robin(db, ctx, id, Some(it.version)).await?;
                }
            }
            return reload(db, kind, id).await;
        }
        Some(id) => Some(
            Uuid::parse_str(id)
                .map_err(|_| DomainError::invalid("assignee must be a user id, \"round_robin\" or null"))?,
        ),
    };
    match kind {
        "task" => {
            tasks::assign(db, ctx, id, who, Some(it.version)).await?;
        }
        _ => {
            exceptions::assign(db, ctx, id, who, Some(it.version)).await?;
        }
    }
    reload(db, kind, id).await
}

/// Acknowledge: someone has it. Stops the task's escalation ladder; moves an exception to
/// acknowledged.
pub async fn acknowledge(db: &Db, ctx: &Ctx, kind: &str, id: Uuid) -> DomainResult<Item> {
    let it = visible_item(db, ctx, kind, id).await?;
    if kind == "exception" {
        exceptions::transition(db, ctx, id, "acknowledged", None, Some(it.version)).await?;
        return reload(db, kind, id).await;
    }
    authorize(db, ctx, Permission::TasksWrite, "task").await?;
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = tasks::load(&mut conn, id).await?;
    if !it.open {
        return Err(DomainError::GuardFailed { guard: "task_open", message: format!("the task is {}", before.status) });
    }
    let at = now();
    let n = q_exec!(
        &mut conn,
        "UPDATE tasks SET acknowledged_at = $1, updated_at = $1, version = version + 1 WHERE id = $2 AND version = $3",
        at,
        id,
        it.version
    )?;
    if n == 0 {
        return Err(DomainError::VersionConflict { entity: "task", current_version: None });
    }
    emit(
        &mut conn,
        ctx,
        "task.acknowledged",
        "task",
        id,
        json!({"task_id": id, "type": before.kind, "assignee_id": before.assignee_id}),
    )
    .await?;
    write_audit(
        &mut conn,
        ctx,
        "task.acknowledged",
        "task",
        Some(id.to_string()),
        None,
        Some(json!({"acknowledged_at": at})),
    )
    .await?;
    tx.commit().await?;
    reload(db, kind, id).await
}
