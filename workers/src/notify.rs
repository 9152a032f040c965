//! Notification channels: two Telegram bots (DIVA for clients, KESHA for staff and models),
//! email (SMTP through lettre, or Resend), SMS (Twilio). A channel needs its provider's
//! credentials; without them it is disabled, says so (health, the notification's error), and
//! never pretends to have sent. Base URLs are configurable, so tests run these real clients
//! against local servers.
//!
//! One send: claim the row (`sending`, the attempt counted; a row whose provider id is already
//! recorded is marked sent instead of sent again), call the provider, then record the
//! provider's id before marking it sent. A transient failure goes back to `queued` and the
//! job is retried with backoff (a rate limit's `retry_after` at least); a permanent refusal,
//! or a disabled channel, fails the row and falls back to the next channel of the order.

pub mod email;
pub mod sms;
pub mod telegram;

use std::time::Duration;

use uuid::Uuid;
use virel_domain::commands::notifications::{self, ChannelState, Claim};
use virel_domain::jobs::{BoxFut, JobError, Notifier};
use virel_domain::{Db, DomainResult};

pub use email::Email;
pub use sms::Twilio;
pub use telegram::Telegram;

/// The channel settings, as the binary read them. Secrets are redacted from `Debug`.
#[derive(Clone, Default)]
pub struct ChannelsConfig {
    pub telegram_api_base: Option<String>,
    pub telegram_diva_token: Option<String>,
    pub telegram_kesha_token: Option<String>,
    pub smtp_url: Option<String>,
    pub email_from: Option<String>,
    pub resend_api_key: Option<String>,
    pub resend_api_base: Option<String>,
    pub twilio_account_sid: Option<String>,
    pub twilio_auth_token: Option<String>,
    pub twilio_from: Option<String>,
    pub twilio_messaging_service_sid: Option<String>,
    pub twilio_api_base: Option<String>,
    /// Where Twilio posts delivery reports (`VIREL_PUBLIC_URL` + `/api/v1/webhooks/twilio`).
    pub twilio_status_callback: Option<String>,
}

impl std::fmt::Debug for ChannelsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "set" } else { "unset" };
        f.debug_struct("ChannelsConfig")
            .field("telegram_api_base", &self.telegram_api_base)
            .field("telegram_diva_token", &set(&self.telegram_diva_token))
            .field("telegram_kesha_token", &set(&self.telegram_kesha_token))
            .field("smtp_url", &set(&self.smtp_url))
            .field("email_from", &self.email_from)
            .field("resend_api_key", &set(&self.resend_api_key))
            .field("resend_api_base", &self.resend_api_base)
            .field("twilio_account_sid", &self.twilio_account_sid)
            .field("twilio_auth_token", &set(&self.twilio_auth_token))
            .field("twilio_from", &self.twilio_from)
            .field("twilio_messaging_service_sid", &self.twilio_messaging_service_sid)
            .field("twilio_api_base", &self.twilio_api_base)
            .finish()
    }
}

pub const TELEGRAM_API_BASE: &str = "https://api.telegram.org";
pub const RESEND_API_BASE: &str = "https://api.resend.com";
pub const TWILIO_API_BASE: &str = "https://api.twilio.com";

/// The configured channels; `Channels::default()` has every channel disabled.
#[derive(Clone, Debug, Default)]
pub struct Channels {
    pub diva: Option<Telegram>,
    pub kesha: Option<Telegram>,
    pub email: Option<Email>,
    pub sms: Option<Twilio>,
}

impl Channels {
    /// Builds the provider clients for every channel whose settings are complete.
    pub fn from_config(cfg: &ChannelsConfig) -> anyhow::Result<Channels> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?;
        let tg_base = cfg.telegram_api_base.as_deref().unwrap_or(TELEGRAM_API_BASE);
        let diva = cfg.telegram_diva_token.as_deref().map(|t| Telegram::new(http.clone(), tg_base, t, "diva"));
        let kesha = cfg.telegram_kesha_token.as_deref().map(|t| Telegram::new(http.clone(), tg_base, t, "kesha"));
        let email = match (&cfg.resend_api_key, &cfg.smtp_url, &cfg.email_from) {
            (Some(key), _, Some(from)) => {
                Some(Email::resend(http.clone(), cfg.resend_api_base.as_deref().unwrap_or(RESEND_API_BASE), key, from))
            }
            (None, Some(url), Some(from)) => Some(Email::smtp(url, from)?),
            _ => None,
        };
        let sms = match (&cfg.twilio_account_sid, &cfg.twilio_auth_token) {
            (Some(sid), Some(token)) if cfg.twilio_from.is_some() || cfg.twilio_messaging_service_sid.is_some() => {
                Some(Twilio::new(
                    http.clone(),
                    cfg.twilio_api_base.as_deref().unwrap_or(TWILIO_API_BASE),
                    sid,
                    token,
                    cfg.twilio_from.clone(),
                    cfg.twilio_messaging_service_sid.clone(),
                    cfg.twilio_status_callback.clone(),
                ))
            }
            _ => None,
        };
        Ok(Channels { diva, kesha, email, sms })
    }

    /// Each channel `up` with its provider, or `disabled` with the settings that enable it.
    pub fn status(&self) -> Vec<ChannelState> {
        notifications::all_disabled()
            .into_iter()
            .map(|mut c| {
                let provider = match c.channel.as_str() {
                    "telegram_diva" => self.diva.as_ref().map(|_| "telegram"),
                    "telegram_kesha" => self.kesha.as_ref().map(|_| "telegram"),
                    "email" => self.email.as_ref().map(Email::provider),
                    _ => self.sms.as_ref().map(|_| "twilio"),
                };
                if let Some(p) = provider {
                    c.status = "up".into();
                    c.provider = Some(p.into());
                    c.enable_with.clear();
                }
                c
            })
            .collect()
    }

    fn disabled(&self, channel: &str) -> String {
        let how =
            notifications::CHANNELS.iter().find(|(n, _)| *n == channel).map(|(_, v)| v.join(", ")).unwrap_or_default();
        format!("channel {channel} is disabled (set {how})")
    }

    /// One attempt at the provider: its message id, or why not.
    async fn deliver(&self, n: &notifications::Notification) -> Result<String, JobError> {
        let to = n.recipient.as_deref().unwrap_or_default();
        if to.is_empty() {
            return Err(JobError::Permanent("no address for the recipient on this channel".into()));
        }
        let off = || JobError::Permanent(self.disabled(&n.channel));
        match n.channel.as_str() {
            "telegram_diva" => self.diva.as_ref().ok_or_else(off)?.send(to, &n.body).await,
            "telegram_kesha" => self.kesha.as_ref().ok_or_else(off)?.send(to, &n.body).await,
            "email" => {
                let subject = n.title.as_deref().unwrap_or("Virel");
                self.email.as_ref().ok_or_else(off)?.send(n.id, to, subject, &n.body).await
            }
            "sms" => self.sms.as_ref().ok_or_else(off)?.send(to, &n.body).await,
            other => Err(JobError::Permanent(format!("unknown channel {other}"))),
        }
    }

    /// Sends a queued notification, or records why it cannot be sent.
    pub async fn send_one(&self, db: &Db, id: Uuid) -> Result<(), JobError> {
        let n = match notifications::claim(db, id).await? {
            Claim::Done => return Ok(()),
            Claim::Send(n) => n,
        };
        match self.deliver(&n).await {
            Ok(provider_id) => {
                // Kept before the status changes: a retry after a crash here finds it and
                // marks the row sent instead of sending again.
                notifications::record_provider_id(db, id, &provider_id).await?;
                notifications::record_sent(db, id, &provider_id).await?;
                sent_metric(&n.channel, "sent");
                tracing::info!(notification = %id, channel = %n.channel, "notification sent");
                Ok(())
            }
            Err(JobError::Permanent(reason)) => {
                tracing::warn!(notification = %id, channel = %n.channel, error = %reason, "notification refused");
                let next = notifications::refused(db, id, &reason).await?;
                sent_metric(&n.channel, if next.is_some() { "fallback" } else { "refused" });
                match next {
                    Some(fallback) => {
                        tracing::info!(notification = %id, %fallback, "falling back to the next channel");
                        Ok(())
                    }
                    None => Err(JobError::Permanent(reason)),
                }
            }
            Err(e) => {
                notifications::record_retry(db, id, e.message()).await?;
                sent_metric(&n.channel, "retry");
                Err(e)
            }
        }
    }
}

/// `virel_notification_sends_total{channel, status}`: one per attempt at a provider; `sent`,
/// `retry` (a transient failure, tried again after its backoff), `fallback` (refused, passed to
/// the next channel) or `refused` (refused, no channel left: the notification failed).
fn sent_metric(channel: &str, status: &'static str) {
    metrics::counter!("virel_notification_sends_total", "channel" => channel.to_string(), "status" => status)
        .increment(1);
}

impl Notifier for Channels {
    fn send(&self, db: &Db, id: Uuid) -> BoxFut<'_, Result<(), JobError>> {
        let db = db.clone();
        Box::pin(async move { self.send_one(&db, id).await })
    }
}

/// Sends with every channel disabled (what a process without channel settings does).
pub async fn send(db: &Db, id: Uuid) -> DomainResult<()> {
    match Channels::default().send_one(db, id).await {
        Ok(()) | Err(JobError::Permanent(_)) => Ok(()),
        Err(e) => Err(virel_domain::DomainError::Unavailable(e.message().to_string())),
    }
}
