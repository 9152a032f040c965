//! `/payments` and the deposit of a booking (SPEC §9): Stripe PaymentIntents, refunds through
//! Stripe, the list finance reads, and what Stripe's webhooks delivered.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;
use virel_domain::commands::payments::{self, PaymentFilter};
use virel_domain::commands::webhooks_in::{self, WebhookIn};
use virel_domain::rows::Payment;

use super::{encode_cursor, page};
use crate::auth::Auth;
use crate::dto::Money;
use crate::error::ApiResult;
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

#[derive(Object, Clone, Debug)]
pub struct PaymentOut {
    pub id: Uuid,
    pub booking_id: Uuid,
    /// deposit, balance or refund.
    #[oai(rename = "type")]
    pub kind: String,
    /// requested, pending, processing, succeeded, failed, canceled, refunded.
    pub status: String,
    pub amount: Money,
    /// The Stripe PaymentIntent (or, for a refund, the Stripe refund) id.
    pub provider_ref: Option<String>,
    /// For a refund: the payment it refunds.
    pub refund_of: Option<Uuid>,
    pub reason: Option<String>,
    /// The provider's last failure message.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl From<Payment> for PaymentOut {
    fn from(p: Payment) -> PaymentOut {
        PaymentOut {
            id: p.id,
            booking_id: p.booking_id,
            kind: p.kind,
            status: p.status,
            amount: Money { amount: p.amount, currency: p.currency },
            provider_ref: p.provider_ref,
            refund_of: p.refund_of,
            reason: p.reason,
            error: p.error,
            created_at: p.created_at,
            updated_at: p.updated_at,
            version: p.version,
        }
    }
}

#[derive(Object, Clone, Debug)]
pub struct PaymentPage {
    pub items: Vec<PaymentOut>,
    pub next_cursor: Option<String>,
}

#[derive(Object, Clone, Debug)]
pub struct DepositOut {
    pub payment: PaymentOut,
    /// The PaymentIntent's client secret, for Stripe.js to collect the card.
    pub client_secret: Option<String>,
}

#[derive(ApiResponse)]
pub enum DepositResponse {
    /// The PaymentIntent was created, the deposit recorded, the booking is deposit_required.
    #[oai(status = 201)]
    Created(Json<DepositOut>),
    /// The booking already had this deposit: the same payment again.
    #[oai(status = 200)]
    Existing(Json<DepositOut>),
}

#[derive(Object)]
pub struct RefundIn {
    /// Minor units; the whole amount left when absent.
    pub amount: Option<i64>,
    pub reason: Option<String>,
}

#[derive(ApiResponse)]
pub enum RefundResponse {
    /// The refund is recorded (`requested`) and being made at Stripe.
    #[oai(status = 202)]
    Accepted(Json<PaymentOut>),
}

#[derive(Object, Clone, Debug)]
pub struct WebhookInOut {
    pub id: Uuid,
    pub provider: String,
    /// Null for a rejected delivery (nothing in it is trusted).
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    /// received, processed, unmatched, ignored, rejected.
    pub status: String,
    /// webhook or reconciliation.
    pub source: String,
    pub error: Option<String>,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
}

impl From<WebhookIn> for WebhookInOut {
    fn from(w: WebhookIn) -> WebhookInOut {
        WebhookInOut {
            id: w.id,
            provider: w.provider,
            event_id: w.event_id,
            event_type: w.event_type,
            status: w.status,
            source: w.source,
            error: w.error,
            received_at: w.received_at,
            processed_at: w.processed_at,
        }
    }
}

#[derive(Object, Clone, Debug)]
pub struct WebhookInPage {
    pub items: Vec<WebhookInOut>,
    pub next_cursor: Option<String>,
}

#[OpenApi(tag = "ApiTags::Payments")]
impl Api {
    /// Request the booking's deposit: creates a Stripe PaymentIntent, records the pending
    /// deposit and moves the booking to deposit_required (`bookings:write`, as for any move of
    /// a booking). Again for the same booking: the same payment. 502 when Stripe refuses, 503
    /// when it is unreachable, 409 `guard_failed` when payments are disabled; nothing changes
    /// then.
    #[oai(path = "/bookings/:id/deposit", method = "post", operation_id = "requestBookingDeposit")]
    async fn deposit(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<DepositResponse> {
        let d = payments::request_deposit(&self.state.db, &auth.0, &self.state.payments, id.0).await?;
        let out = DepositOut { client_secret: d.client_secret, payment: d.payment.into() };
        Ok(if d.created { DepositResponse::Created(Json(out)) } else { DepositResponse::Existing(Json(out)) })
    }

    /// Payments, newest first (`payments:read`).
    #[oai(path = "/payments", method = "get", operation_id = "listPayments")]
    async fn list(
        &self,
        auth: Auth,
        booking_id: Query<Option<Uuid>>,
        status: Query<Option<String>>,
        #[oai(name = "type")] kind: Query<Option<String>>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<PaymentPage>> {
        let f = PaymentFilter { booking_id: booking_id.0, status: status.0, kind: kind.0 };
        let p = payments::list(&self.state.db, &auth.0, f, page(limit.0, cursor.0)?).await?;
        Ok(Json(PaymentPage {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: encode_cursor(p.next_cursor),
        }))
    }

    #[oai(path = "/payments/:id", method = "get", operation_id = "getPayment")]
    async fn get(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<PaymentOut>> {
        Ok(Json(payments::get(&self.state.db, &auth.0, id.0).await?.into()))
    }

    /// Refund a succeeded payment through Stripe (`payments:refund`; reason required, amount
    /// optional = all that is left). Stripe makes it once, however often the job is retried.
    #[oai(path = "/payments/:id/refund", method = "post", operation_id = "refundPayment")]
    async fn refund(&self, auth: Auth, id: Path<Uuid>, body: Json<RefundIn>) -> ApiResult<RefundResponse> {
        let r =
            payments::request_refund(&self.state.db, &auth.0, &self.state.payments, id.0, body.0.amount, body.0.reason)
                .await?;
        Ok(RefundResponse::Accepted(Json(r.into())))
    }

    /// What Stripe's webhooks and the reconciliation delivered, newest first
    /// (`payments:read`): unmatched and rejected deliveries stay visible here.
    #[oai(path = "/webhooks/stripe/events", method = "get", operation_id = "listStripeEvents")]
    async fn events(
        &self,
        auth: Auth,
        status: Query<Option<String>>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<WebhookInPage>> {
        let p = webhooks_in::list(&self.state.db, &auth.0, status.0, page(limit.0, cursor.0)?).await?;
        Ok(Json(WebhookInPage {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: encode_cursor(p.next_cursor),
        }))
    }
}

/// `POST /api/v1/webhooks/stripe`, outside the OpenAPI service because the signature is over
/// the raw bytes: verified before anything is parsed, stored, 200 at once; the work happens on
/// the critical queue. 400 for a bad or stale signature (kept as rejected).
#[poem::handler]
pub async fn stripe_webhook(
    req: &poem::Request,
    body: poem::Body,
    state: poem::web::Data<&Arc<AppState>>,
) -> poem::Response {
    use crate::error::{ErrorBody, json_response, status_of};
    use poem::http::StatusCode;
    use virel_domain::commands::webhooks_in::Received;
    let raw = match body.into_bytes().await {
        Ok(b) => b,
        Err(_) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                ErrorBody::new("bad_request", "unreadable body", serde_json::json!({})),
            );
        }
    };
    let signature = req.headers().get("stripe-signature").and_then(|v| v.to_str().ok());
    let got = webhooks_in::receive_stripe(
        &state.db,
        state.payments.webhook.as_ref(),
        signature,
        &raw,
        Utc::now().timestamp(),
    )
    .await;
    let outcome = match &got {
        Ok(Received::Accepted(_)) => "accepted",
        Ok(Received::Replay) => "replay",
        Ok(Received::Rejected(_)) => "rejected",
        Err(_) if state.payments.webhook.is_none() => "disabled",
        Err(_) => "error",
    };
    metrics::counter!("virel_stripe_webhooks_total", "outcome" => outcome).increment(1);
    let ok = |replay: bool| {
        poem::Response::builder()
            .status(StatusCode::OK)
            .content_type("application/json")
            .body(serde_json::json!({"received": true, "replay": replay}).to_string())
    };
    match got {
        Ok(Received::Accepted(_)) => ok(false),
        Ok(Received::Replay) => ok(true),
        Ok(Received::Rejected(why)) => json_response(
            StatusCode::BAD_REQUEST,
            ErrorBody::new("bad_signature", format!("webhook refused: {why}"), serde_json::json!({})),
        ),
        Err(e) => {
            let status = status_of(&e);
            json_response(status, ErrorBody::new(e.code(), e.to_string(), e.details()))
        }
    }
}
