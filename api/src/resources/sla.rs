//! `/sla-policies`: how long items may stay open, and how they escalate (editable by OWNER and
//! OPS_MANAGER).

use std::sync::Arc;

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;
use uuid::Uuid;
use virel_domain::sla::{self, Calendar, PolicyPatch};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

#[derive(Object)]
pub struct PolicyOut {
    pub id: Uuid,
    /// task or exception.
    pub kind: String,
    /// The task or exception type, or `*` for the kind's default.
    pub item_type: String,
    pub name: String,
    /// The window, in minutes (of working time when `business_hours`).
    pub minutes: i64,
    pub business_hours: bool,
    /// `{"timezone": "Europe/London", "weekly": {"mon": [["09:00", "18:00"]], ...}}`.
    pub calendar: Value,
    pub pause_on_awaiting_client: bool,
    pub at_risk_percent: i64,
    /// Seconds after the deadline at which escalation levels 1, 2 and 3 fire.
    pub escalation_secs: Vec<i64>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub version: i64,
}

#[derive(Object)]
pub struct PolicyIn {
    pub name: Option<String>,
    pub minutes: Option<i64>,
    pub business_hours: Option<bool>,
    pub calendar: Option<Value>,
    pub pause_on_awaiting_client: Option<bool>,
    pub at_risk_percent: Option<i64>,
    pub escalation_secs: Option<Vec<i64>>,
    pub version: Option<i64>,
}

fn out(p: sla::Policy) -> PolicyOut {
    PolicyOut {
        id: p.id,
        kind: p.kind,
        item_type: p.item_type,
        name: p.name,
        minutes: p.minutes,
        business_hours: p.business_hours,
        calendar: serde_json::to_value(&p.calendar.0).unwrap_or(Value::Null),
        pause_on_awaiting_client: p.pause_on_awaiting_client,
        at_risk_percent: p.at_risk_percent,
        escalation_secs: p.escalation_secs.0,
        updated_at: p.updated_at,
        version: p.version,
    }
}

#[OpenApi(tag = "ApiTags::ActionCenter")]
impl Api {
    #[oai(path = "/sla-policies", method = "get", operation_id = "listSlaPolicies")]
    async fn list(&self, auth: Auth) -> ApiResult<Json<Vec<PolicyOut>>> {
        Ok(Json(sla::list_policies(&self.state.db, &auth.0).await?.into_iter().map(out).collect()))
    }

    #[oai(path = "/sla-policies/:id", method = "patch", operation_id = "updateSlaPolicy")]
    async fn patch(&self, auth: Auth, id: Path<Uuid>, body: Json<PolicyIn>) -> ApiResult<Json<PolicyOut>> {
        let b = body.0;
        let calendar = match b.calendar {
            None => None,
            Some(v) => Some(
                serde_json::from_value::<Calendar>(v)
                    .map_err(|e| ApiError::from(virel_domain::DomainError::invalid(format!("calendar: {e}"))))?,
            ),
        };
        let p = PolicyPatch {
            name: b.name,
            minutes: b.minutes,
            business_hours: b.business_hours,
            calendar,
            pause_on_awaiting_client: b.pause_on_awaiting_client,
            at_risk_percent: b.at_risk_percent,
            escalation_secs: b.escalation_secs,
            version: b.version,
        };
        Ok(Json(out(sla::update_policy(&self.state.db, &auth.0, id.0, p).await?)))
    }
}
