//! `/automation`: rules (CRUD, validated: 422 names the bad part), dry runs, and executions.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use uuid::Uuid;
use virel_domain::automation::{self, Action, Condition, RuleInput, SampleEvent};

use super::{encode_cursor, page};
use crate::auth::{Auth, Done};
use crate::dto::View;
use crate::error::{ApiError, ApiResult};
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

#[derive(Object, Clone)]
pub struct ConditionIo {
    /// A dotted path into the event payload (`source`, `booking.status`, `amount.amount`), or
    /// `event.type` / `event.depth` / `event.actor` for the envelope.
    pub field: String,
    /// equals, not_equals, in, not_in, gt, gte, lt, lte, contains, exists.
    pub operator: String,
    pub value: Option<Value>,
}

#[derive(Object, Clone)]
pub struct ActionIo {
    /// update_status, create_task, create_exception, send_notification, assign, add_note.
    #[oai(rename = "type")]
    pub kind: String,
    /// The action's parameters (SPEC §6), e.g. `{"newStatus": "confirmed"}`.
    pub params: Option<Value>,
    /// Run later; the conditions are checked again when it comes due.
    pub delay_minutes: Option<i64>,
}

#[derive(Object)]
pub struct RuleIn {
    #[oai(validator(max_length = 200))]
    pub name: String,
    pub enabled: Option<bool>,
    /// An event type, e.g. `inquiry.created`.
    #[oai(validator(max_length = 64))]
    pub trigger: String,
    pub conditions: Option<Vec<ConditionIo>>,
    pub actions: Vec<ActionIo>,
    pub version: Option<i64>,
}

#[derive(Object)]
pub struct RuleOut {
    pub id: Uuid,
    pub name: String,
    pub enabled: bool,
    pub trigger: String,
    pub conditions: Vec<ConditionIo>,
    pub actions: Vec<ActionIo>,
    pub is_default: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Object)]
pub struct RulePage {
    pub items: Vec<RuleOut>,
    pub next_cursor: Option<String>,
}

#[derive(Object)]
pub struct ExecutionOut {
    pub id: Uuid,
    pub rule_id: Uuid,
    pub event_id: Uuid,
    /// -1 is the evaluation of the conditions; 0.. the actions in order.
    pub action_index: i64,
    /// matched, skipped, succeeded, failed, scheduled, queued, running, stopped.
    pub status: String,
    pub actions_result: Option<Value>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Object)]
pub struct ExecutionPage {
    pub items: Vec<ExecutionOut>,
    pub next_cursor: Option<String>,
}

#[derive(Object)]
pub struct SampleEventIn {
    #[oai(rename = "type")]
    pub kind: Option<String>,
    pub payload: Option<Value>,
}

#[derive(Object)]
pub struct TestIn {
    /// A sample event to evaluate.
    pub event: Option<SampleEventIn>,
    /// Or: run the rule over the last N real events of its trigger.
    pub replay_last: Option<i64>,
}

#[derive(Object)]
pub struct TestResult {
    pub event_id: Option<Uuid>,
    pub event_type: String,
    pub matched: bool,
    /// Each condition with the value found and whether it holds.
    pub conditions: Vec<Value>,
    /// What each action would do (nothing was changed).
    pub actions: Vec<Value>,
}

#[derive(Object)]
pub struct TestOut {
    pub dry_run: bool,
    pub results: Vec<TestResult>,
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Rule(Json<RuleOut>),
}

fn rule_out(r: automation::Rule) -> RuleOut {
    RuleOut {
        id: r.id,
        name: r.name,
        enabled: r.enabled,
        trigger: r.trigger,
        conditions: r
            .conditions
            .0
            .into_iter()
            .map(|c| ConditionIo { field: c.field, operator: c.operator, value: Some(c.value) })
            .collect(),
        actions: r
            .actions
            .0
            .into_iter()
            .map(|a| ActionIo { kind: a.kind, params: Some(Value::Object(a.params)), delay_minutes: a.delay_minutes })
            .collect(),
        is_default: r.is_default,
        created_by: r.created_by,
        created_at: r.created_at,
        updated_at: r.updated_at,
        version: r.version,
    }
}

fn rule_in(r: RuleIn) -> ApiResult<RuleInput> {
    let mut actions = Vec::new();
    for (i, a) in r.actions.into_iter().enumerate() {
        let params = match a.params {
            None | Some(Value::Null) => Default::default(),
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(virel_domain::DomainError::invalid(format!("actions[{i}].params must be an object")).into());
            }
        };
        actions.push(Action { kind: a.kind, params, delay_minutes: a.delay_minutes });
    }
    Ok(RuleInput {
        name: r.name,
        enabled: r.enabled,
        trigger: r.trigger,
        conditions: r
            .conditions
            .unwrap_or_default()
            .into_iter()
            .map(|c| Condition { field: c.field, operator: c.operator, value: c.value.unwrap_or(Value::Null) })
            .collect(),
        actions,
        version: r.version,
    })
}

#[OpenApi(tag = "ApiTags::Automation")]
impl Api {
    #[oai(path = "/automation/rules", method = "get", operation_id = "listAutomationRules")]
    async fn list(
        &self,
        auth: Auth,
        trigger: Query<Option<String>>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<RulePage>> {
        let p = automation::list_rules(&self.state.db, &auth.0, trigger.0, page(limit.0, cursor.0)?).await?;
        Ok(Json(RulePage {
            items: p.items.into_iter().map(rule_out).collect(),
            next_cursor: encode_cursor(p.next_cursor),
        }))
    }

    /// Create a rule. Unknown triggers, fields, operators, actions or parameter types are
    /// refused with 422 naming the bad part.
    #[oai(path = "/automation/rules", method = "post", operation_id = "createAutomationRule")]
    async fn create(&self, auth: Auth, body: Json<RuleIn>) -> ApiResult<Created> {
        let r = automation::create_rule(&self.state.db, &auth.0, rule_in(body.0)?).await?;
        Ok(Created::Rule(Json(rule_out(r))))
    }

    #[oai(path = "/automation/rules/:id", method = "get", operation_id = "getAutomationRule")]
    async fn get(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<RuleOut>> {
        Ok(Json(rule_out(automation::get_rule(&self.state.db, &auth.0, id.0).await?)))
    }

    #[oai(path = "/automation/rules/:id", method = "put", operation_id = "replaceAutomationRule")]
    async fn put(&self, auth: Auth, id: Path<Uuid>, body: Json<RuleIn>) -> ApiResult<Json<RuleOut>> {
        Ok(Json(rule_out(automation::update_rule(&self.state.db, &auth.0, id.0, rule_in(body.0)?).await?)))
    }

    #[oai(path = "/automation/rules/:id", method = "delete", operation_id = "deleteAutomationRule")]
    async fn delete(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<Done>> {
        automation::delete_rule(&self.state.db, &auth.0, id.0).await?;
        Ok(Json(Done { ok: true }))
    }

    /// Dry run: what the rule would do with a sample event, or with the last N real events of
    /// its trigger (`{"replay_last": N}`). Nothing is changed.
    #[oai(path = "/automation/rules/:id/test", method = "post", operation_id = "testAutomationRule")]
    async fn test(&self, auth: Auth, id: Path<Uuid>, body: Json<TestIn>) -> ApiResult<Json<TestOut>> {
        let b = body.0;
        if b.event.is_none() && b.replay_last.is_none() {
            return Err(ApiError::from(virel_domain::DomainError::invalid("give event or replay_last")));
        }
        let sample = b
            .event
            .map(|e| SampleEvent { kind: e.kind, payload: e.payload.unwrap_or(Value::Object(Default::default())) });
        let v = View::of(&auth.0);
        let results = automation::dry_run(&self.state.db, &auth.0, id.0, sample, b.replay_last).await?;
        Ok(Json(TestOut {
            dry_run: true,
            results: results
                .into_iter()
                .map(|r| TestResult {
                    event_id: r.event_id,
                    event_type: r.event_type,
                    matched: r.matched,
                    conditions: r.conditions.into_iter().map(|c| v.json(c)).collect(),
                    actions: r.actions,
                })
                .collect(),
        }))
    }

    /// Executions, newest first: each evaluation (index -1) and each action.
    #[oai(path = "/automation/executions", method = "get", operation_id = "listAutomationExecutions")]
    async fn executions(
        &self,
        auth: Auth,
        rule_id: Query<Option<Uuid>>,
        event_id: Query<Option<Uuid>>,
        status: Query<Option<String>>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<ExecutionPage>> {
        let p = automation::list_executions(
            &self.state.db,
            &auth.0,
            rule_id.0,
            event_id.0,
            status.0,
            page(limit.0, cursor.0)?,
        )
        .await?;
        Ok(Json(ExecutionPage {
            items: p
                .items
                .into_iter()
                .map(|e| ExecutionOut {
                    id: e.id,
                    rule_id: e.rule_id,
                    event_id: e.event_id,
                    action_index: e.action_index,
                    status: e.status,
                    actions_result: e.actions_result.map(|r| r.0),
                    error: e.error,
                    duration_ms: e.duration_ms,
                    run_at: e.run_at,
                    created_at: e.created_at,
                    updated_at: e.updated_at,
                })
                .collect(),
            next_cursor: encode_cursor(p.next_cursor),
        }))
    }
}
