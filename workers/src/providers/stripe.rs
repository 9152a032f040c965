//! Stripe over plain HTTP: form-encoded requests, small response structs that tolerate
//! unknown and missing fields, `Stripe-Version` pinned, and an `Idempotency-Key` on every POST
//! derived from Virel's own ids (so a retried job repeats the same request, not a new one).
//! The secret key is never logged nor shown: this type has no `Debug` that prints it.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use virel_domain::jobs::BoxFut;
use virel_domain::payments::{
    EventPage, Intent, IntentRequest, PaymentProvider, ProviderError, ProviderResult, Refund, RefundRequest,
};

/// The API version Virel's parsing was written against.
pub const STRIPE_VERSION: &str = "2024-06-20";
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// The event types Virel processes (also what reconciliation asks for).
pub const EVENT_TYPES: &[&str] = &[
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.processing",
    "charge.refunded",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "charge.dispute.created",
];

pub struct StripeClient {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl std::fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient").field("base", &self.base).field("key", &"[redacted]").finish()
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct List {
    data: Vec<Value>,
    has_more: bool,
}

impl StripeClient {
    /// `base` without a trailing slash (`https://api.stripe.com`, or a local fake in tests).
    pub fn new(key: &str, base: &str) -> anyhow::Result<StripeClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(StripeClient { http, base: base.trim_end_matches('/').to_string(), key: key.to_string() })
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> ProviderResult<T> {
        let resp = req
            .bearer_auth(&self.key)
            .header("Stripe-Version", STRIPE_VERSION)
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(describe(e)))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| ProviderError::Unavailable(describe(e)))?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .map_err(|e| ProviderError::Unavailable(format!("unreadable answer from Stripe: {e}")));
        }
        let err: ErrorEnvelope = serde_json::from_str(&text).unwrap_or_default();
        let message = err.error.message.unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(ProviderError::Unavailable(format!("HTTP {}: {message}", status.as_u16())));
        }
        Err(ProviderError::Rejected {
            status: status.as_u16(),
            code: err.error.decline_code.or(err.error.code).or(err.error.kind),
            message,
        })
    }

    fn post(&self, path: &str, form: &[(String, String)], idempotency_key: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base)).header("Idempotency-Key", idempotency_key).form(form)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }
}

/// A transport error without the URL's query (nothing secret is in it, but keep logs short).
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        e.without_url().to_string()
    }
}

fn metadata(form: &mut Vec<(String, String)>, md: &[(String, String)]) {
    for (k, v) in md {
        form.push((format!("metadata[{k}]"), v.clone()));
    }
}

/// Stripe ids are short ASCII words; refuse anything that could bend a URL path.
fn id_ok(id: &str) -> ProviderResult<&str> {
    if !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(id)
    } else {
        Err(ProviderError::Rejected { status: 400, code: None, message: "not a Stripe id".into() })
    }
}

impl PaymentProvider for StripeClient {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn create_intent(&self, req: IntentRequest) -> BoxFut<'_, ProviderResult<Intent>> {
        Box::pin(async move {
            let mut form = vec![
                ("amount".to_string(), req.amount.to_string()),
                ("currency".to_string(), req.currency.to_ascii_lowercase()),
                ("description".to_string(), req.description.clone()),
                ("automatic_payment_methods[enabled]".to_string(), "true".to_string()),
            ];
            metadata(&mut form, &req.metadata);
            self.send(self.post("/v1/payment_intents", &form, &req.idempotency_key)).await
        })
    }

    fn retrieve_intent(&self, id: String) -> BoxFut<'_, ProviderResult<Intent>> {
        Box::pin(async move { self.send(self.get(&format!("/v1/payment_intents/{}", id_ok(&id)?))).await })
    }

    fn cancel_intent(&self, id: String, idempotency_key: String) -> BoxFut<'_, ProviderResult<Intent>> {
        Box::pin(async move {
            self.send(self.post(&format!("/v1/payment_intents/{}/cancel", id_ok(&id)?), &[], &idempotency_key)).await
        })
    }

    fn create_refund(&self, req: RefundRequest) -> BoxFut<'_, ProviderResult<Refund>> {
        Box::pin(async move {
            let mut form = vec![("payment_intent".to_string(), req.payment_intent.clone())];
            if let Some(a) = req.amount {
                form.push(("amount".to_string(), a.to_string()));
            }
            metadata(&mut form, &req.metadata);
            self.send(self.post("/v1/refunds", &form, &req.idempotency_key)).await
        })
    }

    fn retrieve_refund(&self, id: String) -> BoxFut<'_, ProviderResult<Refund>> {
        Box::pin(async move { self.send(self.get(&format!("/v1/refunds/{}", id_ok(&id)?))).await })
    }

    fn list_events(&self, created_gte: i64, starting_after: Option<String>) -> BoxFut<'_, ProviderResult<EventPage>> {
        Box::pin(async move {
            let mut q: Vec<(String, String)> =
                vec![("limit".into(), "100".into()), ("created[gte]".into(), created_gte.to_string())];
            for (i, t) in EVENT_TYPES.iter().enumerate() {
                q.push((format!("types[{i}]"), t.to_string()));
            }
            if let Some(s) = starting_after {
                q.push(("starting_after".into(), id_ok(&s)?.to_string()));
            }
            let list: List = self.send(self.get("/v1/events").query(&q)).await?;
            Ok(EventPage { events: list.data, has_more: list.has_more })
        })
    }
}
