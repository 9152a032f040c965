//! `/webhooks/subscriptions` and `/webhooks/deliveries`: the OWNER's outgoing-webhook
//! subscribers (the secret is in the answer to the creation only) and what was sent to them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;
use virel_domain::webhooks::{self, Delivery, Subscription, SubscriptionInput};

use super::{encode_cursor, page};
use crate::auth::{Auth, Done};
use crate::error::ApiResult;
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

#[derive(Object)]
pub struct SubscriptionIn {
    /// Where to POST: http or https, no credentials. Loopback, private, link-local and
    /// metadata addresses are refused (unless `VIREL_WEBHOOK_ALLOW_PRIVATE=1` allows private
    /// ones), at save for a literal address and at each delivery for the resolved host.
    pub url: String,
    /// Domain event types to send, e.g. `booking.status_changed`, `payment.succeeded`.
    pub event_types: Vec<String>,
    pub enabled: Option<bool>,
    /// On update: the version read, to refuse a stale write with 409.
    pub version: Option<i64>,
}

#[derive(Object)]
pub struct SubscriptionOut {
    pub id: Uuid,
    pub url: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Object)]
pub struct SubscriptionCreated {
    #[oai(flatten)]
    pub subscription: SubscriptionOut,
    /// The signing secret: shown here once and never again. Keep it with the subscriber.
    pub secret: String,
}

#[derive(Object)]
pub struct SubscriptionPage {
    pub items: Vec<SubscriptionOut>,
    pub next_cursor: Option<String>,
}

#[derive(Object)]
pub struct DeliveryOut {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub url: String,
    /// pending, delivered, retrying, failed.
    pub status: String,
    pub attempts: i64,
    /// The subscriber's last HTTP status, when it answered.
    pub response_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

#[derive(Object)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryOut>,
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Subscription(Json<SubscriptionCreated>),
}

fn out(s: Subscription) -> SubscriptionOut {
    SubscriptionOut {
        id: s.id,
        url: s.url,
        event_types: s.event_types.0,
        enabled: s.enabled,
        created_by: s.created_by,
        created_at: s.created_at,
        updated_at: s.updated_at,
        version: s.version,
    }
}

fn delivery_out(d: Delivery) -> DeliveryOut {
    DeliveryOut {
        id: d.id,
        subscription_id: d.subscription_id,
        event_id: d.event_id,
        event_type: d.event_type,
        url: d.url,
        status: d.status,
        attempts: d.attempts,
        response_code: d.response_code,
        last_error: d.last_error,
        created_at: d.created_at,
        updated_at: d.updated_at,
        delivered_at: d.delivered_at,
    }
}

fn input(b: SubscriptionIn) -> SubscriptionInput {
    SubscriptionInput { url: b.url, event_types: b.event_types, enabled: b.enabled, version: b.version }
}

#[OpenApi(tag = "ApiTags::Webhooks")]
impl Api {
    #[oai(path = "/webhooks/subscriptions", method = "get", operation_id = "listWebhookSubscriptions")]
    async fn list(
        &self,
        auth: Auth,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<SubscriptionPage>> {
        let p = webhooks::list(&self.state.db, &auth.0, page(limit.0, cursor.0)?).await?;
        Ok(Json(SubscriptionPage {
            items: p.items.into_iter().map(out).collect(),
            next_cursor: encode_cursor(p.next_cursor),
        }))
    }

    /// Add a subscriber. The answer carries the signing secret, once.
    #[oai(path = "/webhooks/subscriptions", method = "post", operation_id = "createWebhookSubscription")]
    async fn create(&self, auth: Auth, body: Json<SubscriptionIn>) -> ApiResult<Created> {
        let c = webhooks::create(&self.state.db, &auth.0, input(body.0)).await?;
        Ok(Created::Subscription(Json(SubscriptionCreated { subscription: out(c.subscription), secret: c.secret })))
    }

    #[oai(path = "/webhooks/subscriptions/:id", method = "get", operation_id = "getWebhookSubscription")]
    async fn get(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<SubscriptionOut>> {
        Ok(Json(out(webhooks::get(&self.state.db, &auth.0, id.0).await?)))
    }

    #[oai(path = "/webhooks/subscriptions/:id", method = "put", operation_id = "replaceWebhookSubscription")]
    async fn put(&self, auth: Auth, id: Path<Uuid>, body: Json<SubscriptionIn>) -> ApiResult<Json<SubscriptionOut>> {
        Ok(Json(out(webhooks::update(&self.state.db, &auth.0, id.0, input(body.0)).await?)))
    }

    #[oai(path = "/webhooks/subscriptions/:id", method = "delete", operation_id = "deleteWebhookSubscription")]
    async fn delete(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<Done>> {
        webhooks::delete(&self.state.db, &auth.0, id.0).await?;
        Ok(Json(Done { ok: true }))
    }

    /// Deliveries, newest first: one per subscriber and event, with its attempts, the last
    /// HTTP status and error.
    #[oai(path = "/webhooks/deliveries", method = "get", operation_id = "listWebhookDeliveries")]
    async fn deliveries(
        &self,
        auth: Auth,
        subscription_id: Query<Option<Uuid>>,
        status: Query<Option<String>>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<DeliveryPage>> {
        let p =
            webhooks::list_deliveries(&self.state.db, &auth.0, subscription_id.0, status.0, page(limit.0, cursor.0)?)
                .await?;
        Ok(Json(DeliveryPage {
            items: p.items.into_iter().map(delivery_out).collect(),
            next_cursor: encode_cursor(p.next_cursor),
        }))
    }
}
