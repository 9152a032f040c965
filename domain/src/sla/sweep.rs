//! The SLA sweep: at-risk warnings and the escalation ladder it climbs for overdue items.

use serde::Serialize;
use serde_json::json;
use sqlx::FromRow;
use uuid::Uuid;

use super::*;
use crate::commands::exceptions::{self, NewException};
use crate::commands::notifications;
use crate::commands::tasks::{self};
use crate::commands::{emit, snapshot, write_audit};
use crate::error::DomainResult;
use crate::rows::{Exception, Task};
use crate::store::Db;
use crate::{Ctx, now, q_all, q_exec, q_opt};

#[derive(Debug, Default, Serialize)]
pub struct SweepOutcome {
    pub warned: usize,
    pub escalated: [usize; 3],
}

/// One SLA sweep: at-risk warnings, then one escalation level per overdue task or exception
/// (open or in progress, not acknowledged; SPEC §7). Every step is
/// a guarded update, so two sweeps at once (two schedulers, a redelivered job) do each step
/// exactly once.
pub async fn sweep(db: &Db) -> DomainResult<SweepOutcome> {
    let mut out = SweepOutcome::default();
    let at = now();
    let ctx = Ctx::system();
    // At-risk warnings (tasks and exceptions), pushed like any change.
    let tasks_open = {
        let mut h = db.acquire().await?;
        q_all!(
            &mut h.conn(),
            Task,
            "SELECT * FROM tasks WHERE status IN ('open', 'in_progress') AND due_at IS NOT NULL AND paused_at IS NULL
                 AND (sla_warned_at IS NULL OR escalation_level < 3)"
        )?
    };
    for t in &tasks_open {
        let p = policy_for(&mut db.acquire().await?.conn(), "task", &t.kind).await?;
        let pct = p.as_ref().map(|p| p.at_risk_percent).unwrap_or(20);
        let started = t.sla_started_at.unwrap_or(t.created_at);
        if t.sla_warned_at.is_none() && state(at, t.due_at, started, None, pct) != "ok" {
            let mut tx = db.begin().await?;
            let n = q_exec!(
                &mut tx.conn(),
                "UPDATE tasks SET sla_warned_at = $1, updated_at = $1 WHERE id = $2 AND sla_warned_at IS NULL",
                at,
                t.id
            )?;
            if n == 1 {
                emit(
                    &mut tx.conn(),
                    &ctx,
                    "task.sla_at_risk",
                    "task",
                    t.id,
                    json!({"task_id": t.id, "type": t.kind, "due_at": t.due_at, "assignee_id": t.assignee_id}),
                )
                .await?;
                out.warned += 1;
            }
            tx.commit().await?;
        }
        // Escalation: open or in-progress tasks past their deadline that nobody acknowledged.
        let (Some(due), Some(p)) = (t.due_at, p) else { continue };
        if t.acknowledged_at.is_some() || t.escalation_level >= 3 {
            continue;
        }
        let level = t.escalation_level + 1;
        let after = p.escalation_secs.0.get((level - 1) as usize).copied().unwrap_or(0);
        // A delay beyond the calendar (a row written around the validation) never fires.
        let Ok(fires_at) = super::calendar::plus_seconds(due, after, "escalation_secs") else { continue };
        if at < fires_at {
            continue;
        }
        if escalate(db, t.id, level).await? {
            out.escalated[(level - 1) as usize] += 1;
        }
    }
    let exceptions_open = {
        let mut h = db.acquire().await?;
        q_all!(
            &mut h.conn(),
            Exception,
            "SELECT * FROM exceptions WHERE status = 'open' AND due_at IS NOT NULL AND paused_at IS NULL
                 AND (sla_warned_at IS NULL OR escalation_level < 3)"
        )?
    };
    for e in exceptions_open {
        let p = policy_for(&mut db.acquire().await?.conn(), "exception", &e.kind).await?;
        let pct = p.as_ref().map(|p| p.at_risk_percent).unwrap_or(20);
        if state(at, e.due_at, e.sla_started_at.unwrap_or(e.created_at), None, pct) == "ok" {
            continue;
        }
        // The ladder, as for tasks: one level per sweep once its delay after the deadline passed.
        if let (Some(due), Some(p)) = (e.due_at, &p)
            && e.escalation_level < 3
        {
            let level = e.escalation_level + 1;
            let after = p.escalation_secs.0.get((level - 1) as usize).copied().unwrap_or(0);
            if let Ok(fires_at) = super::calendar::plus_seconds(due, after, "escalation_secs")
                && at >= fires_at
                && escalate_exception(db, e.id, level).await?
            {
                out.escalated[(level - 1) as usize] += 1;
            }
        }
        if e.sla_warned_at.is_some() {
            continue;
        }
        let mut tx = db.begin().await?;
        if q_exec!(
            &mut tx.conn(),
            "UPDATE exceptions SET sla_warned_at = $1, updated_at = $1 WHERE id = $2 AND sla_warned_at IS NULL",
            at,
            e.id
        )? == 1
        {
            emit(
                &mut tx.conn(),
                &ctx,
                "exception.sla_at_risk",
                "exception",
                e.id,
                json!({"exception_id": e.id, "type": e.kind, "due_at": e.due_at}),
            )
            .await?;
            out.warned += 1;
        }
        tx.commit().await?;
    }
    Ok(out)
}

#[derive(FromRow)]
struct Pick {
    id: Uuid,
}

/// Queues an escalation's message to staff (`assignee`, or every active user of a role; on
/// duty only for the safety check), in the escalation's transaction. Someone without any
/// address is skipped (and logged), never a reason to hold the escalation back.
async fn notify_staff(
    tx: &mut crate::store::Tx,
    to: &str,
    assignee: Option<Uuid>,
    template: &str,
    vars: serde_json::Value,
    subject: (String, Uuid),
    critical: bool,
) -> DomainResult<Vec<Uuid>> {
    let m = notifications::Message {
        channel: "preferred",
        to,
        template,
        assignee_id: assignee,
        on_duty: critical,
        vars,
        subject,
        critical,
        ..Default::default()
    };
    match notifications::queue(tx, &Ctx::system(), m).await {
        Ok(v) => Ok(v.into_iter().map(|n| n.id).collect()),
        Err(crate::DomainError::Invalid(why)) => {
            tracing::warn!(to, template, %why, "escalation message not queued");
            Ok(vec![])
        }
        Err(e) => Err(e),
    }
}

/// Climbs one rung of the ladder for a task, once: level 1 tells the assignee (the Action
/// Center pushes the breach; a missed safety check also raises `safety_check_missed`), level 2
/// hands the task to the least-loaded OPS_MANAGER and raises `sla_breached`, level 3 raises a
/// critical `sla_breached` for the OWNER. False when another sweep got there first.
pub async fn escalate(db: &Db, task_id: Uuid, level: i64) -> DomainResult<bool> {
    let ctx = Ctx::system();
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = tasks::load(&mut conn, task_id).await?;
    let n = q_exec!(
        &mut conn,
        "UPDATE tasks SET escalation_level = $1, updated_at = $2, version = version + 1
         WHERE id = $3 AND escalation_level = $4 AND status IN ('open', 'in_progress') AND acknowledged_at IS NULL",
        level,
        now(),
        task_id,
        level - 1
    )?;
    if n == 0 {
        return Ok(false);
    }
    let mut payload = json!({"task_id": task_id, "type": before.kind, "level": level, "due_at": before.due_at,
        "assignee_id": before.assignee_id, "subject_type": before.subject_type, "subject_id": before.subject_id});
    match level {
        1 if before.kind == "safety_check" => {
            let e = exceptions::insert(
                &mut conn,
                &ctx,
                NewException {
                    kind: "safety_check_missed".into(),
                    title: Some(format!("Safety check missed: {}", before.title)),
                    severity: "critical".into(),
                    subject_type: before.subject_type.clone(),
                    subject_id: before.subject_id,
                    assignee_id: before.assignee_id,
                },
            )
            .await?;
            payload["exception_id"] = json!(e.id);
        }
        2 => {
            let manager = q_opt!(
                &mut conn,
                Pick,
                "SELECT u.id FROM users u WHERE u.role = 'OPS_MANAGER' AND u.active = $1
                 ORDER BY (SELECT COUNT(*) FROM tasks t WHERE t.assignee_id = u.id AND t.status IN ('open', 'in_progress')), u.id LIMIT 1",
                true
            )?
            .map(|p| p.id);
            if let Some(m) = manager {
                q_exec!(
                    &mut conn,
                    "UPDATE tasks SET assignee_id = $1, version = version + 1 WHERE id = $2",
                    m,
                    task_id
                )?;
                emit(&mut conn, &ctx, "task.assigned", "task", task_id, json!({"task_id": task_id, "assignee_id": m, "previous_assignee_id": before.assignee_id, "type": before.kind, "reason": "sla escalation"})).await?;
            }
            let e = exceptions::insert(
                &mut conn,
                &ctx,
                NewException {
                    kind: "sla_breached".into(),
                    title: Some(format!("SLA breached: {}", before.title)),
                    severity: "high".into(),
                    subject_type: Some("task".into()),
                    subject_id: Some(task_id),
                    assignee_id: manager,
                },
            )
            .await?;
            payload["reassigned_to"] = json!(manager);
            payload["exception_id"] = json!(e.id);
        }
        3 => {
            let owner = q_opt!(
                &mut conn,
                Pick,
                "SELECT id FROM users WHERE role = 'OWNER' AND active = $1 ORDER BY id LIMIT 1",
                true
            )?
            .map(|p| p.id);
            let e = exceptions::insert(
                &mut conn,
                &ctx,
                NewException {
                    kind: "sla_breached".into(),
                    title: Some(format!("SLA breached, level 3: {}", before.title)),
                    severity: "critical".into(),
                    subject_type: Some("task".into()),
                    subject_id: Some(task_id),
                    assignee_id: owner,
                },
            )
            .await?;
            payload["notified_owner"] = json!(owner);
            payload["exception_id"] = json!(e.id);
        }
        _ => {}
    }
    // Who hears of it, on their own channel: level 1 the assignee (a missed safety check: the
    // OPS_MANAGERs on duty, at once, from the critical queue), level 3 the OWNER.
    let notify = match level {
        1 if before.kind == "safety_check" => Some(("OPS_MANAGER", "safety_check", true)),
        1 if before.assignee_id.is_some() => Some(("assignee", "sla_breach", false)),
        3 => Some(("OWNER", "sla_breach", false)),
        _ => None,
    };
    if let Some((to, template, critical)) = notify {
        let vars = json!({"title": before.title, "due_at": before.due_at, "level": level, "task_type": before.kind});
        let ids =
            notify_staff(&mut tx, to, before.assignee_id, template, vars, ("task".into(), task_id), critical).await?;
        payload["notified"] = json!(ids);
    }
    let mut conn = tx.conn();
    emit(&mut conn, &ctx, "task.sla_breached", "task", task_id, payload.clone()).await?;
    let after = tasks::load(&mut conn, task_id).await?;
    write_audit(
        &mut conn,
        &ctx,
        "task.escalated",
        "task",
        Some(task_id.to_string()),
        Some(snapshot(&before)),
        Some(json!({"level": level, "task": snapshot(&after), "detail": payload})),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Climbs one rung of the ladder for an exception, once: level 1 tells the assignee (the
/// Action Center pushes the breach), level 2 hands it to the least-loaded OPS_MANAGER and
/// raises it to at least high severity, level 3 makes it critical for the OWNER. No new
/// exception is raised about an exception, so the ladder cannot feed itself. False when
/// another sweep got there first, or the exception was acknowledged meanwhile.
pub async fn escalate_exception(db: &Db, exception_id: Uuid, level: i64) -> DomainResult<bool> {
    let ctx = Ctx::system();
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = exceptions::load(&mut conn, exception_id).await?;
    let severity = match level {
        2 if !matches!(before.severity.as_str(), "high" | "critical") => "high",
        3 => "critical",
        _ => before.severity.as_str(),
    }
    .to_string();
    let n = q_exec!(
        &mut conn,
        "UPDATE exceptions SET escalation_level = $1, severity = $2, updated_at = $3, version = version + 1
         WHERE id = $4 AND escalation_level = $5 AND status = 'open'",
        level,
        severity.clone(),
        now(),
        exception_id,
        level - 1
    )?;
    if n == 0 {
        return Ok(false);
    }
    let mut payload = json!({"exception_id": exception_id, "type": before.kind, "level": level, "due_at": before.due_at,
        "severity": severity, "assignee_id": before.assignee_id, "subject_type": before.subject_type,
        "subject_id": before.subject_id});
    match level {
        2 => {
            let manager = q_opt!(
                &mut conn,
                Pick,
                "SELECT u.id FROM users u WHERE u.role = 'OPS_MANAGER' AND u.active = $1
                 ORDER BY (SELECT COUNT(*) FROM tasks t WHERE t.assignee_id = u.id AND t.status IN ('open', 'in_progress')), u.id LIMIT 1",
                true
            )?
            .map(|p| p.id);
            if let Some(m) = manager
                && Some(m) != before.assignee_id
            {
                q_exec!(
                    &mut conn,
                    "UPDATE exceptions SET assignee_id = $1, version = version + 1 WHERE id = $2",
                    m,
                    exception_id
                )?;
                emit(
                    &mut conn,
                    &ctx,
                    "exception.assigned",
                    "exception",
                    exception_id,
                    json!({"exception_id": exception_id, "assignee_id": m, "previous_assignee_id": before.assignee_id,
                           "type": before.kind, "severity": severity, "reason": "sla escalation"}),
                )
                .await?;
            }
            payload["reassigned_to"] = json!(manager);
        }
        3 => {
            let owner = q_opt!(
                &mut conn,
                Pick,
                "SELECT id FROM users WHERE role = 'OWNER' AND active = $1 ORDER BY id LIMIT 1",
                true
            )?
            .map(|p| p.id);
            payload["notified_owner"] = json!(owner);
        }
        _ => {}
    }
    let notify = match level {
        1 if before.assignee_id.is_some() => Some("assignee"),
        3 => Some("OWNER"),
        _ => None,
    };
    if let Some(to) = notify {
        let title = before.title.clone();
        let vars = json!({"title": title, "due_at": before.due_at, "level": level, "task_type": before.kind});
        let ids = notify_staff(
            &mut tx,
            to,
            before.assignee_id,
            "sla_breach",
            vars,
            ("exception".into(), exception_id),
            false,
        )
        .await?;
        payload["notified"] = json!(ids);
    }
    let mut conn = tx.conn();
    emit(&mut conn, &ctx, "exception.sla_breached", "exception", exception_id, payload.clone()).await?;
    let after = exceptions::load(&mut conn, exception_id).await?;
    write_audit(
        &mut conn,
        &ctx,
        "exception.escalated",
        "exception",
        Some(exception_id.to_string()),
        Some(snapshot(&before)),
        Some(json!({"level": level, "exception": snapshot(&after), "detail": payload})),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}
