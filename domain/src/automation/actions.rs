//! The six actions, run through the same commands as the API inside a transaction that also
//! records the execution row: the effect and its record commit together or not at all.

use std::time::Instant;

use serde_json::{Value, json};
use uuid::Uuid;

use super::crud::Rule;
use super::engine::{envelope, insert_execution};
use super::rules::{self, Action};
use crate::commands::bookings::{self, BookingTransition};
use crate::commands::exceptions::{self, NewException};
use crate::commands::inquiries::{self, InquiryTransition};
use crate::commands::notes::{self, NewNote};
use crate::commands::tasks::{self, NewTask};
use crate::commands::{assignment, notifications};
use crate::error::{DomainError, DomainResult};
use crate::rows::DomainEvent;
use crate::store::{Conn, Db, Tx};
use crate::{Actor, Ctx, now, q_exec};

#[derive(Debug, PartialEq)]
pub enum Ran {
    Done,
    /// The action was refused for good (the state machine said no, say); recorded as failed.
    Failed,
    /// Another delivery of the same event already ran it.
    AlreadyDone,
    /// A delayed action whose conditions no longer hold.
    Skipped,
}

/// Errors worth retrying: the database was unreachable or failed mid-way.
pub fn is_transient(e: &DomainError) -> bool {
    matches!(e, DomainError::Unavailable(_) | DomainError::Internal(_))
}

pub fn automation_ctx(rule: &Rule, event: &DomainEvent) -> Ctx {
    Ctx {
        actor: Actor::Automation(rule.id),
        ip: None,
        request_id: None,
        causation_id: Some(event.id),
        depth: event.depth + 1,
    }
}

pub async fn run(db: &Db, rule: &Rule, event: &DomainEvent, index: usize, delayed: bool) -> DomainResult<Ran> {
    let Some(action) = rule.actions.0.get(index) else {
        return Ok(Ran::Skipped);
    };
    let ctx = automation_ctx(rule, event);
    let started = Instant::now();
    let mut tx = db.begin().await?;
    if delayed {
        let payload = current_payload(&mut tx.conn(), event).await?;
        if !rules::all_hold(&rule.conditions.0, &payload, &envelope(event)) {
            q_exec!(
                &mut tx.conn(),
                "UPDATE automation_executions SET status = 'skipped', error = $1, updated_at = $2
                 WHERE rule_id = $3 AND event_id = $4 AND action_index = $5 AND status IN ('queued', 'scheduled')",
                "conditions no longer hold at run time",
                now(),
                rule.id,
                event.id,
                index as i64
            )?;
            tx.commit().await?;
            return Ok(Ran::Skipped);
        }
        let n = q_exec!(
            &mut tx.conn(),
            "UPDATE automation_executions SET status = 'running', updated_at = $1
             WHERE rule_id = $2 AND event_id = $3 AND action_index = $4 AND status IN ('queued', 'scheduled')",
            now(),
            rule.id,
            event.id,
            index as i64
        )?;
        if n == 0 {
            return Ok(Ran::AlreadyDone);
        }
    } else if !insert_execution(&mut tx.conn(), rule.id, event.id, index as i64, "running", None, None, 0, None).await?
    {
        return Ok(Ran::AlreadyDone);
    }
    match perform(&mut tx, &ctx, rule, event, action).await {
        Ok(result) => {
            q_exec!(
                &mut tx.conn(),
                "UPDATE automation_executions SET status = 'succeeded', actions_result = $1, duration_ms = $2, updated_at = $3
                 WHERE rule_id = $4 AND event_id = $5 AND action_index = $6",
                sqlx::types::Json(result),
                started.elapsed().as_millis() as i64,
                now(),
                rule.id,
                event.id,
                index as i64
            )?;
            tx.commit().await?;
            Ok(Ran::Done)
        }
        Err(e) if is_transient(&e) => Err(e),
        Err(e) => {
            drop(tx);
            let mut tx = db.begin().await?;
            let msg = e.to_string();
            let elapsed = started.elapsed().as_millis() as i64;
            if !insert_execution(
                &mut tx.conn(),
                rule.id,
                event.id,
                index as i64,
                "failed",
                None,
                Some(msg.clone()),
                elapsed,
                None,
            )
            .await?
            {
                q_exec!(
                    &mut tx.conn(),
                    "UPDATE automation_executions SET status = 'failed', error = $1, duration_ms = $2, updated_at = $3
                     WHERE rule_id = $4 AND event_id = $5 AND action_index = $6 AND status <> 'succeeded'",
                    msg,
                    elapsed,
                    now(),
                    rule.id,
                    event.id,
                    index as i64
                )?;
            }
            tx.commit().await?;
            tracing::info!(rule = %rule.id, event = %event.id, action = index, error = %e, "automation action refused");
            Ok(Ran::Failed)
        }
    }
}

/// The record an event is about, for actions: a payment's booking, otherwise the subject.
pub fn subject_of(event: &DomainEvent) -> (String, Uuid) {
    let p = &event.payload.0;
    let id_of = |k: &str| p.get(k).and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
    match event.subject_type.as_str() {
        "payment" => match id_of("booking_id") {
            Some(b) => ("booking".into(), b),
            None => (event.subject_type.clone(), event.subject_id),
        },
        _ => (event.subject_type.clone(), event.subject_id),
    }
}

fn entity_id(event: &DomainEvent, entity: &str) -> Option<Uuid> {
    let (st, sid) = subject_of(event);
    if st == entity {
        return Some(sid);
    }
    event.payload.0.get(format!("{entity}_id")).and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok())
}

/// The event's payload with its subject's current state laid over it (`status` and the
/// subject's own object), for conditions re-checked when a delayed action comes due.
pub async fn current_payload(conn: &mut Conn<'_>, event: &DomainEvent) -> DomainResult<Value> {
    let mut p = event.payload.0.clone();
    let (st, sid) = subject_of(event);
    let current = match st.as_str() {
        "booking" => bookings::load(conn, sid).await.ok().map(|r| (r.status.clone(), crate::commands::snapshot(&r))),
        "inquiry" => inquiries::load(conn, sid).await.ok().map(|r| (r.status.clone(), crate::commands::snapshot(&r))),
        "task" => tasks::load(conn, sid).await.ok().map(|r| (r.status.clone(), crate::commands::snapshot(&r))),
        "exception" => {
            exceptions::load(conn, sid).await.ok().map(|r| (r.status.clone(), crate::commands::snapshot(&r)))
        }
        _ => None,
    };
    if let (Some((status, snap)), Value::Object(map)) = (current, &mut p) {
        if event.subject_type == st {
            map.insert("status".into(), json!(status));
        }
        map.insert(st, snap);
    }
    Ok(p)
}

async fn resolve_assignee(tx: &mut Tx, event: &DomainEvent, assign_to: Option<&str>) -> DomainResult<Option<Uuid>> {
    match assign_to {
        None => Ok(None),
        Some("round_robin") => {
            let cap = tx.settings().max_open_items_per_operator;
            assignment::round_robin(tx, cap).await
        }
        Some("assignee") => {
            if let Some(a) =
                event.payload.0.get("assignee_id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok())
            {
                return Ok(Some(a));
            }
            if let Some(b) = entity_id(event, "booking") {
                return Ok(bookings::load(&mut tx.conn(), b).await.ok().and_then(|b| b.assignee_id));
            }
            if let Some(i) = entity_id(event, "inquiry") {
                return Ok(inquiries::load(&mut tx.conn(), i).await.ok().and_then(|i| i.assignee_id));
            }
            Ok(None)
        }
        Some(id) => Uuid::parse_str(id).map(Some).map_err(|_| DomainError::invalid("assign_to is not a user id")),
    }
}

fn subject_for_records(event: &DomainEvent) -> (Option<String>, Option<Uuid>) {
    let (st, sid) = subject_of(event);
    if crate::machine::SUBJECT_TYPES.contains(&st.as_str()) { (Some(st), Some(sid)) } else { (None, None) }
}

async fn perform(tx: &mut Tx, ctx: &Ctx, rule: &Rule, event: &DomainEvent, a: &Action) -> DomainResult<Value> {
    let reason =
        || a.str_param("reason").map(String::from).unwrap_or_else(|| format!("automation rule \"{}\"", rule.name));
    match a.kind.as_str() {
        "update_status" => {
            let to = a.str_param("newStatus").unwrap_or_default().to_string();
            let entity = a.str_param("entity").map(String::from).unwrap_or_else(|| subject_of(event).0);
            let id = entity_id(event, &entity)
                .ok_or_else(|| DomainError::invalid(format!("the event names no {entity}")))?;
            let status = match entity.as_str() {
                "booking" => {
                    let t = BookingTransition {
                        status: to,
                        reason: Some(reason()),
                        r#override: a.params.get("override").and_then(Value::as_bool).unwrap_or(false),
                        version: None,
                    };
                    bookings::transition_in(tx, ctx, id, &t).await?.status
                }
                "inquiry" => {
                    let t = InquiryTransition { status: to, reason: Some(reason()), proposal: None, version: None };
                    inquiries::transition_in(tx, ctx, id, &t).await?.status
                }
                "task" => tasks::transition_in(&mut tx.conn(), ctx, id, &to, None).await?.status,
                "exception" => exceptions::transition_in(tx, ctx, id, &to, Some(reason()), None).await?.status,
                other => return Err(DomainError::invalid(format!("{other} has no status"))),
            };
            Ok(json!({"entity": entity, "id": id, "status": status}))
        }
        "create_task" => {
            let (subject_type, subject_id) = subject_for_records(event);
            let assignee_id = resolve_assignee(tx, event, a.str_param("assign_to")).await?;
            let due_at = a
                .params
                .get("due_in_minutes")
                .and_then(Value::as_i64)
                .map(|m| crate::sla::calendar::plus_minutes(now(), m, "due_in_minutes"))
                .transpose()?;
            let t = tasks::insert(
                &mut tx.conn(),
                ctx,
                NewTask {
                    kind: a.str_param("type").unwrap_or("custom").into(),
                    title: a.str_param("title").map(String::from),
                    priority: a.str_param("priority").map(String::from),
                    subject_type,
                    subject_id,
                    assignee_id,
                    due_at,
                },
            )
            .await?;
            Ok(json!({"task_id": t.id, "assignee_id": t.assignee_id}))
        }
        "create_exception" => {
            let (subject_type, subject_id) = subject_for_records(event);
            let e = exceptions::insert(
                &mut tx.conn(),
                ctx,
                NewException {
                    kind: a.str_param("type").unwrap_or("job_failed").into(),
                    title: a.str_param("title").map(String::from),
                    severity: a.str_param("severity").unwrap_or("medium").into(),
                    subject_type,
                    subject_id,
                    assignee_id: None,
                },
            )
            .await?;
            Ok(json!({"exception_id": e.id}))
        }
        "send_notification" => {
            let sent = notifications::queue_in(
                tx,
                ctx,
                a.str_param("channel").unwrap_or("preferred"),
                a.str_param("to").unwrap_or("client"),
                a.str_param("template").unwrap_or("generic"),
                event,
            )
            .await?;
            let ids: Vec<Uuid> = sent.iter().map(|n| n.id).collect();
            let first = sent.first();
            Ok(json!({"notification_id": first.map(|n| n.id), "notification_ids": ids,
                      "channel": first.map(|n| n.channel.clone()), "status": first.map(|n| n.status.clone())}))
        }
        "assign" => {
            let who = resolve_assignee(tx, event, a.str_param("assign_to")).await?;
            let (st, sid) = subject_of(event);
            match st.as_str() {
                "task" => {
                    tasks::assign_in(tx, ctx, sid, who, None).await?;
                }
                "exception" => {
                    exceptions::assign_in(tx, ctx, sid, who, None).await?;
                }
                other => {
                    return Err(DomainError::invalid(format!("assign works on tasks and exceptions, not {other}")));
                }
            };
            Ok(json!({"entity": st, "id": sid, "assignee_id": who}))
        }
        "add_note" => {
            let (st, sid) = subject_of(event);
            let n = notes::insert(
                &mut tx.conn(),
                ctx,
                NewNote { subject_type: st, subject_id: sid, text: a.str_param("text").unwrap_or_default().into() },
            )
            .await?;
            Ok(json!({"note_id": n.id}))
        }
        other => Err(DomainError::invalid(format!("unknown action {other}"))),
    }
}

/// A sentence saying what an action would do with an event (dry runs).
pub fn describe(a: &Action, event: &DomainEvent) -> String {
    let (st, sid) = subject_of(event);
    let when = if a.delay() > 0 {
        format!(" after {} minutes (conditions re-checked then)", a.delay())
    } else {
        String::new()
    };
    let p = |k: &str| a.str_param(k).unwrap_or("-").to_string();
    let what = match a.kind.as_str() {
        "update_status" => {
            let entity = a.str_param("entity").map(String::from).unwrap_or(st.clone());
            format!(
                "move the {entity} {} to {}",
                entity_id(event, &entity).map(|i| i.to_string()).unwrap_or("(not named by the event)".into()),
                p("newStatus")
            )
        }
        "create_task" => format!(
            "create a {} task ({} priority) on {st} {sid}{}",
            p("type"),
            a.str_param("priority").unwrap_or("normal"),
            a.str_param("assign_to").map(|x| format!(", assigned to {x}")).unwrap_or_default()
        ),
        "create_exception" => format!("raise a {} exception ({}) on {st} {sid}", p("type"), p("severity")),
        "send_notification" => {
            format!("send the {} template to the {} on channel {}", p("template"), p("to"), p("channel"))
        }
        "assign" => format!("assign the {st} {sid} to {}", p("assign_to")),
        "add_note" => format!("add a note to {st} {sid}: {}", p("text")),
        other => format!("unknown action {other}"),
    };
    format!("{what}{when}")
}
