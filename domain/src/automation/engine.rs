//! The engine: evaluating an event against the enabled rules, recording each verdict and action.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::FromRow;
use sqlx::types::Json;
use uuid::Uuid;

pub use rules::{Action, Condition, MAX_DEPTH};

use crate::commands::exceptions::{self, NewException};
use crate::error::{DomainError, DomainResult};
use crate::rows::DomainEvent;
use crate::store::{Conn, Db};
use crate::{Actor, Ctx, new_id, now, q_all, q_exec, q_one, q_opt};

use super::*;

/// The marker "rule" under which loop-protection reports are recorded once per event.
const LOOP_GUARD: Uuid = Uuid::nil();

/// From this depth of an automation chain (a rule's event causing a rule's event), events run
/// rules only within [`CASCADE_BUDGET_PER_MINUTE`].
pub const CASCADE_DEPTH: i64 = 2;
/// The default of the most events at [`CASCADE_DEPTH`] or deeper the whole system may make in
/// a minute while they still run rules (`VIREL_AUTOMATION_CASCADE_BUDGET`). Every event runs every rule of its trigger and each rule's actions
/// make events again, so a few rules on one trigger multiply along a chain long before
/// [`MAX_DEPTH`] stops it; past the budget the chain stops at this depth (each stop recorded,
/// one exception per minute), and ordinary work, one or two links deep, is never counted.
pub const CASCADE_BUDGET_PER_MINUTE: i64 = 500;

#[derive(FromRow)]
struct Count {
    n: i64,
}

/// The envelope fields a condition reaches as `event.*`.
pub fn envelope(e: &DomainEvent) -> Value {
    json!({"type": e.kind, "subject_type": e.subject_type, "subject_id": e.subject_id, "actor": e.actor, "depth": e.depth, "occurred_at": e.occurred_at})
}

/// What `process_event` did, for the worker's log and metrics.
#[derive(Debug, Default, Serialize)]
pub struct EventOutcome {
    pub rules_matched: usize,
    pub actions_run: usize,
    pub actions_failed: usize,
    pub actions_scheduled: usize,
    pub loop_stopped: bool,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn insert_execution(
    conn: &mut Conn<'_>,
    rule: Uuid,
    event: Uuid,
    index: i64,
    status: &str,
    result: Option<Value>,
    error: Option<String>,
    duration_ms: i64,
    run_at: Option<DateTime<Utc>>,
) -> DomainResult<bool> {
    let at = now();
    let n = q_exec!(
        conn,
        "INSERT INTO automation_executions (id, rule_id, event_id, action_index, status, actions_result, error, duration_ms, run_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) ON CONFLICT (rule_id, event_id, action_index) DO NOTHING",
        new_id(),
        rule,
        event,
        index,
        status,
        result.map(Json),
        error,
        duration_ms,
        run_at,
        at
    )?;
    Ok(n == 1)
}

#[derive(FromRow)]
struct StatusRow {
    status: String,
}

/// Evaluates every enabled rule whose trigger is this event's type and runs the actions of the
/// matching ones (or schedules the delayed ones). Safe to call any number of times per event.
/// Errors are transient (the database); the caller retries them.
pub async fn process_event(db: &Db, event_id: Uuid) -> DomainResult<EventOutcome> {
    let mut out = EventOutcome::default();
    let mut h = db.acquire().await?;
    let event = q_opt!(&mut h.conn(), DomainEvent, "SELECT * FROM domain_events WHERE id = $1", event_id)?
        .ok_or(DomainError::NotFound { entity: "event" })?;
    let rules = {
        q_all!(
            &mut h.conn(),
            Rule,
            "SELECT * FROM automation_rules WHERE trigger = $1 AND enabled = $2 ORDER BY id",
            event.kind.clone(),
            true
        )?
    };
    drop(h);
    if rules.is_empty() {
        return Ok(out);
    }
    if event.depth > MAX_DEPTH {
        out.loop_stopped = true;
        // A loop-protection report is itself never reported again.
        let is_report = event.kind == "exception.created"
            && event.payload.0.get("type").and_then(Value::as_str) == Some("job_failed");
        if !is_report {
            let mut tx = db.begin().await?;
            if insert_execution(
                &mut tx.conn(),
                LOOP_GUARD,
                event.id,
                -2,
                "stopped",
                None,
                Some(format!("depth {} exceeds {MAX_DEPTH}", event.depth)),
                0,
                None,
            )
            .await?
            {
                let title = format!(
                    "Automation loop stopped: {} at depth {} (rules: {})",
                    event.kind,
                    event.depth,
                    rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
                );
                report_stop(&mut tx.conn(), &event, title).await?;
            }
            tx.commit().await?;
        }
        return Ok(out);
    }
    if event.depth >= CASCADE_DEPTH && over_cascade_budget(db, &event).await? {
        out.loop_stopped = true;
        return Ok(out);
    }
    let env = envelope(&event);
    for rule in rules {
        let started = std::time::Instant::now();
        // The first evaluation decides; a redelivery replays its verdict instead of re-judging
        // a state that the actions themselves may have changed. One statement records this
        // verdict unless one exists (atomic by itself, no transaction around it); only when
        // one existed is it read back.
        let m = rules::all_hold(&rule.conditions.0, &event.payload.0, &env);
        let matched = {
            let mut h = db.acquire().await?;
            let verdict = if m { "matched" } else { "skipped" };
            let elapsed = started.elapsed().as_millis() as i64;
            if insert_execution(&mut h.conn(), rule.id, event.id, -1, verdict, None, None, elapsed, None).await? {
                m
            } else {
                q_opt!(
                    &mut h.conn(),
                    StatusRow,
                    "SELECT status FROM automation_executions WHERE rule_id = $1 AND event_id = $2 AND action_index = -1",
                    rule.id,
                    event.id
                )?
                .map_or(m, |p| p.status == "matched")
            }
        };
        if !matched {
            continue;
        }
        out.rules_matched += 1;
        for (i, action) in rule.actions.0.iter().enumerate() {
            let delay = action.delay();
            if delay > 0 {
                // A delay beyond the calendar (a row written around the validation) fails this
                // action, recorded like any refused action; the others carry on.
                let (status, error, run_at) =
                    match crate::sla::calendar::plus_minutes(now(), delay, &format!("actions[{i}].delay_minutes")) {
                        Ok(t) => ("scheduled", None, Some(t)),
                        Err(e) => ("failed", Some(e.to_string()), None),
                    };
                let mut tx = db.begin().await?;
                if insert_execution(&mut tx.conn(), rule.id, event.id, i as i64, status, None, error, 0, run_at).await?
                {
                    if run_at.is_some() {
                        out.actions_scheduled += 1;
                    } else {
                        out.actions_failed += 1;
                    }
                }
                tx.commit().await?;
                continue;
            }
            match actions::run(db, &rule, &event, i, false).await? {
                actions::Ran::Done => out.actions_run += 1,
                actions::Ran::Failed => out.actions_failed += 1,
                actions::Ran::AlreadyDone | actions::Ran::Skipped => {}
            }
        }
    }
    Ok(out)
}

/// Whether chained events are over the budget (the settings'); if so the stop is recorded
/// for `event`, and the first stop of a minute raises an exception.
async fn over_cascade_budget(db: &Db, event: &DomainEvent) -> DomainResult<bool> {
    let since = now() - chrono::Duration::minutes(1);
    let recent = {
        let mut h = db.acquire().await?;
        q_one!(
            &mut h.conn(),
            Count,
            "SELECT COUNT(*) AS n FROM domain_events WHERE depth >= $1 AND occurred_at > $2",
            CASCADE_DEPTH,
            since
        )?
        .n
    };
    let budget = db.settings().cascade_budget_per_minute;
    if recent <= budget {
        return Ok(false);
    }
    let title = "Automation cascade stopped: too many chained events";
    let mut tx = db.begin().await?;
    let why = format!("{recent} chained events in the last minute; at most {budget} run rules");
    if insert_execution(&mut tx.conn(), LOOP_GUARD, event.id, -3, "stopped", None, Some(why.clone()), 0, None).await? {
        // One report per minute of overload: the minute's marker row is unique, so of many
        // workers stopping chains at once exactly one inserts it and raises the exception.
        let minute = now().timestamp() / 60;
        let marker = Uuid::from_u64_pair(0, minute as u64);
        if insert_execution(&mut tx.conn(), LOOP_GUARD, marker, -4, "stopped", None, Some(why), 0, None).await? {
            report_stop(&mut tx.conn(), event, title.into()).await?;
        }
    }
    tx.commit().await?;
    Ok(true)
}

/// The `job_failed` exception that reports an automation chain stopped at `event`.
async fn report_stop(conn: &mut Conn<'_>, event: &DomainEvent, title: String) -> DomainResult<()> {
    let ctx =
        Ctx { actor: Actor::System, ip: None, request_id: None, causation_id: Some(event.id), depth: event.depth + 1 };
    let new = NewException {
        kind: "job_failed".into(),
        title: Some(title),
        severity: "high".into(),
        subject_type: None,
        subject_id: None,
        assignee_id: None,
    };
    exceptions::insert(conn, &ctx, new).await?;
    Ok(())
}
