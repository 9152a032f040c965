//! The stored entities, as read from either engine.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;
use sqlx::types::Json;
use uuid::Uuid;

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: String,
    #[serde(skip)]
    pub password_hash: String,
    pub active: bool,
    pub on_duty: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct Client {
    pub id: Uuid,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub telegram: Option<String>,
    pub preferred_channel: Option<String>,
    pub notes: Option<String>,
    pub tags: Json<Value>,
    pub blocked: bool,
    pub blocked_reason: Option<String>,
    pub bookings_count: i64,
    pub no_shows_count: i64,
    pub spend_amount: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct Model {
    pub id: Uuid,
    pub name: String,
    pub status: String,
    pub base_location: Option<String>,
    pub rates: Json<Value>,
    pub languages: Json<Value>,
    pub attributes: Json<Value>,
    pub profile_text: Option<String>,
    pub seo_slug: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct ModelStats {
    pub model_id: Uuid,
    pub bookings_count: i64,
    pub completed_count: i64,
    pub rating_sum: i64,
    pub rating_count: i64,
}

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct Inquiry {
    pub id: Uuid,
    pub source: String,
    pub client_id: Uuid,
    pub requested_start: Option<DateTime<Utc>>,
    pub duration_minutes: Option<i64>,
    pub location: Option<String>,
    pub preferences: Json<Value>,
    pub budget_amount: Option<i64>,
    pub budget_currency: Option<String>,
    pub model_id: Option<Uuid>,
    pub assignee_id: Option<Uuid>,
    pub status: String,
    pub proposal: Option<Json<Value>>,
    pub lost_reason: Option<String>,
    pub notes: Option<String>,
    pub booking_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct Booking {
    pub id: Uuid,
    pub client_id: Uuid,
    pub model_id: Uuid,
    pub inquiry_id: Option<Uuid>,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub location: Option<String>,
    pub price_amount: i64,
    pub price_currency: String,
    pub deposit_amount: i64,
    pub deposit_currency: String,
    pub status: String,
    pub assignee_id: Option<Uuid>,
    pub cancellation_reason: Option<String>,
    pub override_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    pub starting_soon_at: Option<DateTime<Utc>>,
    pub safety_start_at: Option<DateTime<Utc>>,
    pub safety_end_at: Option<DateTime<Utc>>,
    pub client_confirmed_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct Payment {
    pub id: Uuid,
    pub booking_id: Uuid,
    pub kind: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub provider_ref: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    /// The PaymentIntent's client secret, for the frontend; kept out of audit snapshots.
    #[serde(skip_serializing)]
    pub client_secret: Option<String>,
    /// For a refund: the payment it refunds.
    pub refund_of: Option<Uuid>,
    pub reason: Option<String>,
    /// The provider's last failure message.
    pub error: Option<String>,
}

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct Task {
    pub id: Uuid,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub priority: String,
    pub status: String,
    pub assignee_id: Option<Uuid>,
    pub subject_type: Option<String>,
    pub subject_id: Option<Uuid>,
    pub due_at: Option<DateTime<Utc>>,
    pub escalation_level: i64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    pub sla_started_at: Option<DateTime<Utc>>,
    pub paused_at: Option<DateTime<Utc>>,
    pub sla_warned_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct Exception {
    pub id: Uuid,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub severity: String,
    pub status: String,
    pub subject_type: Option<String>,
    pub subject_id: Option<Uuid>,
    pub assignee_id: Option<Uuid>,
    pub resolution: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    pub sla_started_at: Option<DateTime<Utc>>,
    pub paused_at: Option<DateTime<Utc>>,
    pub sla_warned_at: Option<DateTime<Utc>>,
    /// The SLA ladder's rung (0 to 3), as for tasks.
    pub escalation_level: i64,
}

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct Note {
    pub id: Uuid,
    pub subject_type: String,
    pub subject_id: Uuid,
    pub author: String,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct AuditEntry {
    pub id: Uuid,
    pub actor: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: Option<String>,
    pub before: Option<Json<Value>>,
    pub after: Option<Json<Value>>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct DomainEvent {
    pub id: Uuid,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub subject_type: String,
    pub subject_id: Uuid,
    pub payload: Json<Value>,
    pub actor: String,
    pub causation_id: Option<Uuid>,
    pub depth: i64,
    pub occurred_at: DateTime<Utc>,
    pub dispatched_at: Option<DateTime<Utc>>,
}

/// One page of a list, newest first, and the cursor of the next page.
#[derive(Clone, Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Uuid>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only says a next page exists.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, id: fn(&T) -> Uuid) -> Page<T> {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit.max(0) as usize);
        let next_cursor = if more { rows.last().map(id) } else { None };
        Page { items: rows, next_cursor }
    }
}
