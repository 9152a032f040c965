//! Payments as the domain sees them: the port to the payment provider (Stripe; the workers
//! crate owns the HTTP client), the payment settings the binary hands down, and the
//! verification of Stripe's webhook signatures (HMAC-SHA256 over `t.payload`).

use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use crate::error::DomainError;
use crate::jobs::BoxFut;

/// A PaymentIntent to create.
#[derive(Clone, Debug)]
pub struct IntentRequest {
    /// Minor units.
    pub amount: i64,
    /// ISO 4217, any case (Stripe wants lower case).
    pub currency: String,
    pub description: String,
    /// `metadata[key]=value` pairs (booking id, payment id).
    pub metadata: Vec<(String, String)>,
    /// Stays the same for every retry of the same Virel operation.
    pub idempotency_key: String,
}

/// A refund to create.
#[derive(Clone, Debug)]
pub struct RefundRequest {
    pub payment_intent: String,
    /// None: the whole remaining amount.
    pub amount: Option<i64>,
    pub metadata: Vec<(String, String)>,
    pub idempotency_key: String,
}

/// A PaymentIntent as Virel needs it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Intent {
    pub id: String,
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub client_secret: Option<String>,
    pub metadata: serde_json::Map<String, Value>,
}

/// A refund as Virel needs it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Refund {
    pub id: String,
    /// pending, requires_action, succeeded, failed, canceled.
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub payment_intent: Option<String>,
    pub failure_reason: Option<String>,
    pub metadata: serde_json::Map<String, Value>,
}

/// One page of the provider's event list, newest first.
#[derive(Clone, Debug, Default)]
pub struct EventPage {
    /// Each event as the provider sent it (the same JSON a webhook would carry).
    pub events: Vec<Value>,
    pub has_more: bool,
}

/// What went wrong talking to the provider.
#[derive(Clone, Debug, PartialEq)]
pub enum ProviderError {
    /// Unreachable, timed out, 429 or 5xx: worth retrying; nothing is known to have happened.
    Unavailable(String),
    /// The provider refused the request (4xx): retrying the same request cannot help.
    Rejected { status: u16, code: Option<String>, message: String },
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderError::Unavailable(m) => write!(f, "payment provider unavailable: {m}"),
            ProviderError::Rejected { status, code, message } => {
                write!(
                    f,
                    "payment provider refused ({status}{}): {message}",
                    code.as_deref().map(|c| format!(", {c}")).unwrap_or_default()
                )
            }
        }
    }
}

impl From<ProviderError> for DomainError {
    fn from(e: ProviderError) -> DomainError {
        match e {
            ProviderError::Unavailable(_) => {
                DomainError::Unavailable("the payment provider is unavailable; nothing was changed".into())
            }
            ProviderError::Rejected { message, code, .. } => DomainError::Provider { message, code },
        }
    }
}

pub type ProviderResult<T> = Result<T, ProviderError>;

/// The payment provider's API (Stripe), implemented by the workers crate.
pub trait PaymentProvider: Send + Sync {
    fn name(&self) -> &'static str;
    fn create_intent(&self, req: IntentRequest) -> BoxFut<'_, ProviderResult<Intent>>;
    fn retrieve_intent(&self, id: String) -> BoxFut<'_, ProviderResult<Intent>>;
    fn cancel_intent(&self, id: String, idempotency_key: String) -> BoxFut<'_, ProviderResult<Intent>>;
    fn create_refund(&self, req: RefundRequest) -> BoxFut<'_, ProviderResult<Refund>>;
    fn retrieve_refund(&self, id: String) -> BoxFut<'_, ProviderResult<Refund>>;
    /// Events created at or after `created_gte` (Unix seconds), newest first, after the event
    /// id `starting_after` when paging on.
    fn list_events(&self, created_gte: i64, starting_after: Option<String>) -> BoxFut<'_, ProviderResult<EventPage>>;
}

/// Payments as configured: the provider (None: payments disabled) and the webhook secrets.
#[derive(Clone, Default)]
pub struct Payments {
    pub provider: Option<Arc<dyn PaymentProvider>>,
    pub webhook: Option<WebhookSecrets>,
}

impl Payments {
    pub fn disabled() -> Payments {
        Payments::default()
    }

    pub fn enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// The provider, or 409 `guard_failed` (`payments_enabled`) when payments are disabled:
    /// the deployment has no provider key, which retrying will not change (a 503 would say
    /// it might).
    pub fn provider(&self) -> Result<&Arc<dyn PaymentProvider>, DomainError> {
        self.provider.as_ref().ok_or_else(|| DomainError::GuardFailed {
            guard: "payments_enabled",
            message: "payments are disabled: no payment provider key is configured".into(),
        })
    }
}

impl std::fmt::Debug for Payments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payments")
            .field("provider", &self.provider.as_ref().map(|p| p.name()))
            .field("webhook", &self.webhook.as_ref().map(|w| w.secrets.len()))
            .finish()
    }
}

/// The webhook signing secrets (several while one rolls) and the allowed clock skew.
#[derive(Clone)]
pub struct WebhookSecrets {
    secrets: Vec<Vec<u8>>,
    pub tolerance_secs: i64,
}

impl WebhookSecrets {
    /// `secrets` is one secret or several separated by commas.
    pub fn new(secrets: &str, tolerance_secs: i64) -> WebhookSecrets {
        let secrets =
            secrets.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.as_bytes().to_vec()).collect();
        WebhookSecrets { secrets, tolerance_secs }
    }

    /// Checks a `Stripe-Signature` header (`t=...,v1=...,v1=...,v0=...`) over the raw body.
    /// Any `v1` made with any of the secrets passes; `v0` and unknown schemes are ignored;
    /// the timestamp must be within the tolerance of `now` (Unix seconds). Constant-time.
    pub fn verify(&self, header: &str, payload: &[u8], now: i64) -> Result<(), SignatureError> {
        let mut timestamp = None;
        let mut sigs = Vec::new();
        for part in header.split(',') {
            let Some((k, v)) = part.trim().split_once('=') else { continue };
            match k.trim() {
                "t" => timestamp = v.trim().parse::<i64>().ok(),
                "v1" => {
                    if let Ok(bytes) = hex::decode(v.trim()) {
                        sigs.push(bytes);
                    }
                }
                _ => {}
            }
        }
        let t = timestamp.ok_or(SignatureError::Malformed)?;
        if sigs.is_empty() {
            return Err(SignatureError::NoV1);
        }
        if (now - t).abs() > self.tolerance_secs {
            return Err(SignatureError::Stale);
        }
        for secret in &self.secrets {
            for sig in &sigs {
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { continue };
                mac.update(t.to_string().as_bytes());
                mac.update(b".");
                mac.update(payload);
                if mac.verify_slice(sig).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(SignatureError::Mismatch)
    }
}

/// Why a webhook signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    Malformed,
    NoV1,
    Stale,
    Mismatch,
}

impl SignatureError {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureError::Missing => "no Stripe-Signature header",
            SignatureError::Malformed => "the Stripe-Signature header has no timestamp",
            SignatureError::NoV1 => "the Stripe-Signature header has no v1 signature",
            SignatureError::Stale => "the signature's timestamp is outside the tolerance",
            SignatureError::Mismatch => "no v1 signature matches",
        }
    }
}

/// Signs a payload as Stripe does (`t=<t>,v1=<hex HMAC-SHA256 of "t.payload">`): for tests and
/// for Virel's own outgoing webhooks.
pub fn sign(secret: &[u8], t: i64, payload: &[u8]) -> String {
    hex::encode(hmac_sha256(secret, t, payload))
}

fn hmac_sha256(secret: &[u8], t: i64, payload: &[u8]) -> Vec<u8> {
    // HMAC accepts a key of any length, so this never falls back; if it ever did, the
    // signature would be empty, which no verifier accepts.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return Vec::new() };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;

    #[test]
    fn stripe_signatures_verify_and_forgeries_do_not() {
        let w = WebhookSecrets::new("whsec_new", 300);
        let t = 1_700_000_000;
        let good = sign(b"whsec_new", t, BODY);
        assert_eq!(w.verify(&format!("t={t},v1={good}"), BODY, t + 10), Ok(()));
        // Old and new secret while one rolls: either v1 may match.
        let old = sign(b"whsec_old", t, BODY);
        assert_eq!(w.verify(&format!("t={t},v1={old},v1={good}"), BODY, t), Ok(()));
        assert_eq!(w.verify(&format!("t={t},v1={old}"), BODY, t), Err(SignatureError::Mismatch));
        // Tampered body, stale, v0 only, no timestamp.
        assert_eq!(w.verify(&format!("t={t},v1={good}"), b"{}", t), Err(SignatureError::Mismatch));
        assert_eq!(w.verify(&format!("t={t},v1={good}"), BODY, t + 600), Err(SignatureError::Stale));
        assert_eq!(w.verify(&format!("t={t},v0={good}"), BODY, t), Err(SignatureError::NoV1));
        assert_eq!(w.verify(&format!("v1={good}"), BODY, t), Err(SignatureError::Malformed));
        // Several configured secrets: any one will do.
        let w2 = WebhookSecrets::new("whsec_other, whsec_old", 300);
        assert_eq!(w2.verify(&format!("t={t},v1={old}"), BODY, t), Ok(()));
    }

    #[test]
    fn a_known_vector() {
        // hmac.new(b"whsec_test", b"1700000000." + BODY, hashlib.sha256).hexdigest()
        // (Python's hmac module, the same computation as Stripe's libraries.)
        let sig = sign(b"whsec_test", 1_700_000_000, BODY);
        assert_eq!(sig, "001ce3ef73e456cedaab328328720d3ad59defb8bbd0f1518f46c04ad4ac0bb7");
    }
}
