//! Dry runs: what a rule would do with a sample or replayed event, writing nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::types::Json;
use uuid::Uuid;

pub use rules::{Action, Condition, MAX_DEPTH};

use crate::commands::authorize;
use crate::error::{DomainError, DomainResult};
use crate::policy::Permission;
use crate::rows::DomainEvent;
use crate::store::Db;
use crate::{Ctx, now, q_all};

use super::*;

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
                // The stored rule decides which events it takes: a conflict with its state.
                return Err(DomainError::GuardFailed {
                    guard: "trigger_matches",
                    message: format!("event.type: the rule triggers on {}, not {k}", rule.trigger),
                });
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
