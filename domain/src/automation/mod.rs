//! The automation engine: rules triggered by domain events, evaluated by workers (never inside
//! a request), acting through the same commands as people with actor `automation:<rule id>`.
//! Each evaluation and each action is recorded in `automation_executions`, unique on
//! (rule, event, action index), in the same transaction as the action's effect: an event
//! delivered twice never acts twice.

pub mod actions;
pub mod rules;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::FromRow;
use sqlx::types::Json;
use uuid::Uuid;

pub use rules::{Action, Condition, MAX_DEPTH};

use crate::commands::exceptions::{self, NewException};
use crate::commands::{PageReq, authorize, check_version, require_text, snapshot, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::policy::Permission;
use crate::rows::{DomainEvent, Page};
use crate::store::{Conn, Db};
use crate::{Actor, Ctx, new_id, now, q_all, q_exec, q_opt};

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct Rule {
    pub id: Uuid,
    pub name: String,
    pub enabled: bool,
    pub trigger: String,
    pub conditions: Json<Vec<Condition>>,
    pub actions: Json<Vec<Action>>,
    pub is_default: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct Execution {
    pub id: Uuid,
    pub rule_id: Uuid,
    pub event_id: Uuid,
    pub action_index: i64,
    pub status: String,
    pub actions_result: Option<Json<Value>>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RuleInput {
    pub name: String,
    pub enabled: Option<bool>,
    pub trigger: String,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    pub actions: Vec<Action>,
    pub version: Option<i64>,
}

/// The marker "rule" under which loop-protection reports are recorded once per event.
const LOOP_GUARD: Uuid = Uuid::nil();

pub async fn load_rule(conn: &mut Conn<'_>, id: Uuid) -> DomainResult<Rule> {
    q_opt!(conn, Rule, "SELECT * FROM automation_rules WHERE id = $1", id)?
        .ok_or(DomainError::NotFound { entity: "automation rule" })
}

fn check_input(r: &RuleInput) -> DomainResult<String> {
    let name = require_text(Some(&r.name), "name")?;
    rules::validate(&r.trigger, &r.conditions, &r.actions)?;
    if r.trigger.is_empty() {
        return Err(DomainError::invalid("trigger is required"));
    }
    Ok(name)
}

pub async fn create_rule(db: &Db, ctx: &Ctx, r: RuleInput) -> DomainResult<Rule> {
    authorize(db, ctx, Permission::AutomationWrite, "automation_rule").await?;
    let name = check_input(&r)?;
    let mut tx = db.begin().await?;
    let row = insert_rule(&mut tx.conn(), ctx, &name, &r, false).await?;
    tx.commit().await?;
    Ok(row)
}

async fn insert_rule(
    conn: &mut Conn<'_>,
    ctx: &Ctx,
    name: &str,
    r: &RuleInput,
    is_default: bool,
) -> DomainResult<Rule> {
    let id = new_id();
    let at = now();
    q_exec!(
        conn,
        "INSERT INTO automation_rules (id, name, enabled, trigger, conditions, actions, is_default, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        id,
        name,
        r.enabled.unwrap_or(true),
        r.trigger.clone(),
        Json(r.conditions.clone()),
        Json(r.actions.clone()),
        is_default,
        ctx.actor.label(),
        at
    )?;
    let row = load_rule(conn, id).await?;
    write_audit(
        conn,
        ctx,
        "automation_rule.created",
        "automation_rule",
        Some(id.to_string()),
        None,
        Some(snapshot(&row)),
    )
    .await?;
    Ok(row)
}

pub async fn update_rule(db: &Db, ctx: &Ctx, id: Uuid, r: RuleInput) -> DomainResult<Rule> {
    authorize(db, ctx, Permission::AutomationWrite, "automation_rule").await?;
    let name = check_input(&r)?;
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = load_rule(&mut conn, id).await?;
    check_version("automation rule", r.version, before.version)?;
    let n = q_exec!(
        &mut conn,
        "UPDATE automation_rules SET name = $1, enabled = $2, trigger = $3, conditions = $4, actions = $5, updated_at = $6,
             version = version + 1 WHERE id = $7 AND version = $8",
        name,
        r.enabled.unwrap_or(before.enabled),
        r.trigger.clone(),
        Json(r.conditions.clone()),
        Json(r.actions.clone()),
        now(),
        id,
        before.version
    )?;
    if n == 0 {
        return Err(DomainError::VersionConflict { entity: "automation rule", current_version: None });
    }
    let after = load_rule(&mut conn, id).await?;
    write_audit(
        &mut conn,
        ctx,
        "automation_rule.updated",
        "automation_rule",
        Some(id.to_string()),
        Some(snapshot(&before)),
        Some(snapshot(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

pub async fn delete_rule(db: &Db, ctx: &Ctx, id: Uuid) -> DomainResult<()> {
    authorize(db, ctx, Permission::AutomationWrite, "automation_rule").await?;
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = load_rule(&mut conn, id).await?;
    q_exec!(&mut conn, "DELETE FROM automation_rules WHERE id = $1", id)?;
    write_audit(
        &mut conn,
        ctx,
        "automation_rule.deleted",
        "automation_rule",
        Some(id.to_string()),
        Some(snapshot(&before)),
        None,
    )
    .await?;
    tx.commit().await
}

pub async fn get_rule(db: &Db, ctx: &Ctx, id: Uuid) -> DomainResult<Rule> {
    authorize(db, ctx, Permission::AutomationRead, "automation_rule").await?;
    load_rule(&mut db.acquire().await?.conn(), id).await
}

pub async fn list_rules(db: &Db, ctx: &Ctx, trigger: Option<String>, page: PageReq) -> DomainResult<Page<Rule>> {
    authorize(db, ctx, Permission::AutomationRead, "automation_rule").await?;
    let rows = q_all!(
        &mut db.acquire().await?.conn(),
        Rule,
        "SELECT * FROM automation_rules WHERE ($1 IS NULL OR trigger = $1) AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        trigger,
        page.cursor,
        page.fetch()
    )?;
    Ok(Page::from_rows(rows, page.limit, |r| r.id))
}

pub async fn list_executions(
    db: &Db,
    ctx: &Ctx,
    rule_id: Option<Uuid>,
    event_id: Option<Uuid>,
    status: Option<String>,
    page: PageReq,
) -> DomainResult<Page<Execution>> {
    authorize(db, ctx, Permission::AutomationRead, "automation_execution").await?;
    let rows = q_all!(
        &mut db.acquire().await?.conn(),
        Execution,
        "SELECT * FROM automation_executions WHERE ($1 IS NULL OR rule_id = $1) AND ($2 IS NULL OR event_id = $2)
             AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5",
        rule_id,
        event_id,
        status,
        page.cursor,
        page.fetch()
    )?;
    Ok(Page::from_rows(rows, page.limit, |e| e.id))
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
async fn insert_execution(
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
    let event = {
        let mut h = db.acquire().await?;
        q_opt!(&mut h.conn(), DomainEvent, "SELECT * FROM domain_events WHERE id = $1", event_id)?
            .ok_or(DomainError::NotFound { entity: "event" })?
    };
    let rules = {
        let mut h = db.acquire().await?;
        q_all!(
            &mut h.conn(),
            Rule,
            "SELECT * FROM automation_rules WHERE trigger = $1 AND enabled = $2 ORDER BY id",
            event.kind.clone(),
            true
        )?
    };
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
                let ctx = Ctx {
                    actor: Actor::System,
                    ip: None,
                    request_id: None,
                    causation_id: Some(event.id),
                    depth: event.depth + 1,
                };
                exceptions::insert(
                    &mut tx.conn(),
                    &ctx,
                    NewException {
                        kind: "job_failed".into(),
                        title: Some(format!(
                            "Automation loop stopped: {} at depth {} (rules: {})",
                            event.kind,
                            event.depth,
                            rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
                        )),
                        severity: "high".into(),
                        subject_type: None,
                        subject_id: None,
                        assignee_id: None,
                    },
                )
                .await?;
            }
            tx.commit().await?;
        }
        return Ok(out);
    }
    let env = envelope(&event);
    for rule in rules {
        let started = std::time::Instant::now();
        // The first evaluation decides; a redelivery replays its verdict instead of re-judging
        // a state that the actions themselves may have changed.
        let previous = {
            let mut h = db.acquire().await?;
            q_opt!(
                &mut h.conn(),
                StatusRow,
                "SELECT status FROM automation_executions WHERE rule_id = $1 AND event_id = $2 AND action_index = -1",
                rule.id,
                event.id
            )?
        };
        let matched = match previous {
            Some(p) => p.status == "matched",
            None => {
                let m = rules::all_hold(&rule.conditions.0, &event.payload.0, &env);
                let mut tx = db.begin().await?;
                insert_execution(
                    &mut tx.conn(),
                    rule.id,
                    event.id,
                    -1,
                    if m { "matched" } else { "skipped" },
                    None,
                    None,
                    started.elapsed().as_millis() as i64,
                    None,
                )
                .await?;
                tx.commit().await?;
                m
            }
        };
        if !matched {
            continue;
        }
        out.rules_matched += 1;
        for (i, action) in rule.actions.0.iter().enumerate() {
            let delay = action.delay();
            if delay > 0 {
                let mut tx = db.begin().await?;
                if insert_execution(
                    &mut tx.conn(),
                    rule.id,
                    event.id,
                    i as i64,
                    "scheduled",
                    None,
                    None,
                    0,
                    Some(now() + Duration::minutes(delay)),
                )
                .await?
                {
                    out.actions_scheduled += 1;
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

#[derive(FromRow)]
struct DueRow {
    id: Uuid,
}

/// Claims delayed actions that have come due (scheduled → queued) and returns their ids for
/// the queue. The claim makes a second scheduler, or a repeated sweep, harmless.
pub async fn claim_due_actions(db: &Db, limit: i64) -> DomainResult<Vec<Uuid>> {
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let due = q_all!(
        &mut conn,
        DueRow,
        "SELECT id FROM automation_executions WHERE status = 'scheduled' AND run_at <= $1 ORDER BY run_at LIMIT $2",
        now(),
        limit
    )?;
    let mut claimed = Vec::new();
    for d in due {
        if q_exec!(
            &mut conn,
            "UPDATE automation_executions SET status = 'queued', updated_at = $1 WHERE id = $2 AND status = 'scheduled'",
            now(),
            d.id
        )? == 1
        {
            claimed.push(d.id);
        }
    }
    tx.commit().await?;
    Ok(claimed)
}

/// Runs one delayed action that has come due, re-checking the rule's conditions against the
/// current state of the subject first.
pub async fn run_delayed(db: &Db, execution_id: Uuid) -> DomainResult<actions::Ran> {
    let (exec, rule, event) = {
        let mut h = db.acquire().await?;
        let mut conn = h.conn();
        let exec = q_opt!(&mut conn, Execution, "SELECT * FROM automation_executions WHERE id = $1", execution_id)?
            .ok_or(DomainError::NotFound { entity: "automation execution" })?;
        let rule = load_rule(&mut conn, exec.rule_id).await?;
        let event = q_opt!(&mut conn, DomainEvent, "SELECT * FROM domain_events WHERE id = $1", exec.event_id)?
            .ok_or(DomainError::NotFound { entity: "event" })?;
        (exec, rule, event)
    };
    if exec.status != "queued" && exec.status != "scheduled" {
        return Ok(actions::Ran::AlreadyDone);
    }
    actions::run(db, &rule, &event, exec.action_index as usize, true).await
}

/// Puts back delayed actions that were claimed but never run (a worker died holding them).
pub async fn requeue_stale_claims(db: &Db, older_than: Duration) -> DomainResult<u64> {
    let mut tx = db.begin().await?;
    let n = q_exec!(
        &mut tx.conn(),
        "UPDATE automation_executions SET status = 'scheduled' WHERE status = 'queued' AND updated_at < $1",
        now() - older_than
    )?;
    tx.commit().await?;
    Ok(n)
}

/// One event a dry run looks at: a sample (`type` and `payload`) or a stored one.
#[derive(Clone, Debug, Deserialize)]
pub struct SampleEvent {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub payload: Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct DryRun {
    pub event_id: Option<Uuid>,
    pub event_type: String,
    pub matched: bool,
    pub conditions: Vec<Value>,
    pub actions: Vec<Value>,
}

/// What the rule would do with a sample event, or with the last `replay_last` real events of
/// its trigger. Nothing is written.
pub async fn dry_run(
    db: &Db,
    ctx: &Ctx,
    id: Uuid,
    sample: Option<SampleEvent>,
    replay_last: Option<i64>,
) -> DomainResult<Vec<DryRun>> {
    authorize(db, ctx, Permission::AutomationRead, "automation_rule").await?;
    let mut h = db.acquire().await?;
    let mut conn = h.conn();
    let rule = load_rule(&mut conn, id).await?;
    let events: Vec<DomainEvent> = match (sample, replay_last) {
        (_, Some(n)) => {
            if !(1..=500).contains(&n) {
                return Err(DomainError::invalid("replay_last must be between 1 and 500"));
            }
            q_all!(
                &mut conn,
                DomainEvent,
                "SELECT * FROM domain_events WHERE type = $1 ORDER BY id DESC LIMIT $2",
                rule.trigger.clone(),
                n
            )?
        }
        (Some(s), None) => {
            if let Some(k) = &s.kind
                && k != &rule.trigger
            {
                return Err(DomainError::invalid(format!(
                    "event.type: the rule triggers on {}, not {k}",
                    rule.trigger
                )));
            }
            if !s.payload.is_object() {
                return Err(DomainError::invalid("event.payload must be an object"));
            }
            vec![DomainEvent {
                id: Uuid::nil(),
                kind: rule.trigger.clone(),
                subject_type: rules::trigger_subject(&rule.trigger).to_string(),
                subject_id: Uuid::nil(),
                payload: Json(s.payload),
                actor: ctx.actor.label(),
                causation_id: None,
                depth: 0,
                occurred_at: now(),
                dispatched_at: None,
            }]
        }
        (None, None) => return Err(DomainError::invalid("give a sample event or replay_last")),
    };
    let mut out = Vec::new();
    for e in events {
        let env = envelope(&e);
        let conditions: Vec<Value> = rule
            .conditions
            .0
            .iter()
            .map(|c| {
                json!({"field": c.field, "operator": c.operator, "value": c.value,
                       "actual": rules::lookup(&e.payload.0, &env, &c.field), "holds": rules::holds(c, &e.payload.0, &env)})
            })
            .collect();
        let matched = e.depth <= MAX_DEPTH && rules::all_hold(&rule.conditions.0, &e.payload.0, &env);
        let actions = if matched {
            rule.actions.0.iter().map(|a| json!({"type": a.kind, "params": a.params, "delay_minutes": a.delay(), "would": actions::describe(a, &e)})).collect()
        } else {
            vec![]
        };
        out.push(DryRun {
            event_id: if e.id.is_nil() { None } else { Some(e.id) },
            event_type: e.kind,
            matched,
            conditions,
            actions,
        });
    }
    Ok(out)
}

/// The default rules (SPEC §6), written once when absent; all editable afterwards.
pub async fn seed_defaults(db: &Db) -> DomainResult<usize> {
    let defaults: Vec<(&str, Value)> = vec![
        (
            "Confirm the booking when its deposit is paid",
            json!({
            "trigger": "payment.succeeded",
            "conditions": [{"field": "type", "operator": "equals", "value": "deposit"}],
            "actions": [{"type": "update_status", "params": {"newStatus": "confirmed"}},
                        {"type": "create_task", "params": {"type": "notify_model"}}]}),
        ),
        (
            "Auto-qualify web inquiries",
            json!({
            "trigger": "inquiry.created",
            "conditions": [{"field": "source", "operator": "equals", "value": "web"},
                           {"field": "client.blocked", "operator": "equals", "value": false}],
            "actions": [{"type": "update_status", "params": {"newStatus": "qualified"}}]}),
        ),
        (
            "Deposit reminder after 2 hours",
            json!({
            "trigger": "booking.status_changed",
            "conditions": [{"field": "to", "operator": "equals", "value": "deposit_required"},
                           {"field": "booking.status", "operator": "equals", "value": "deposit_required"}],
            "actions": [{"type": "send_notification", "delay_minutes": 120,
                         "params": {"channel": "preferred", "template": "deposit_reminder", "to": "client"}}]}),
        ),
        (
            "No-show risk 30 minutes before",
            json!({
            "trigger": "booking.starting_soon",
            "conditions": [{"field": "client.confirmed_today", "operator": "not_equals", "value": true}],
            "actions": [{"type": "create_exception", "params": {"type": "no_show_risk", "severity": "high"}}]}),
        ),
        (
            "Escalate failed payments",
            json!({
            "trigger": "payment.failed",
            "conditions": [],
            "actions": [{"type": "create_exception", "params": {"type": "payment_failed", "severity": "high"}},
                        {"type": "create_task", "params": {"type": "contact_client", "priority": "critical", "assign_to": "assignee"}}]}),
        ),
    ];
    let ctx = Ctx::system();
    let mut written = 0;
    let mut tx = db.begin().await?;
    for (name, body) in defaults {
        #[derive(FromRow)]
        struct One {
            #[allow(dead_code)]
            id: Uuid,
        }
        if q_opt!(
            &mut tx.conn(),
            One,
            "SELECT id FROM automation_rules WHERE is_default = $1 AND name = $2",
            true,
            name
        )?
        .is_some()
        {
            continue;
        }
        let input = RuleInput {
            name: name.into(),
            enabled: Some(true),
            trigger: body["trigger"].as_str().unwrap_or_default().into(),
            conditions: serde_json::from_value(body["conditions"].clone())
                .map_err(|e| DomainError::Internal(e.to_string()))?,
            actions: serde_json::from_value(body["actions"].clone())
                .map_err(|e| DomainError::Internal(e.to_string()))?,
            version: None,
        };
        rules::validate(&input.trigger, &input.conditions, &input.actions)?;
        insert_rule(&mut tx.conn(), &ctx, name, &input, true).await?;
        written += 1;
    }
    tx.commit().await?;
    Ok(written)
}
