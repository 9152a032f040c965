//! Notification channels. A channel needs its provider's credentials; without them it is
//! disabled, says so (health, the notification's error), and never pretends to have sent.

use serde_json::{Value, json};
use uuid::Uuid;
use virel_domain::commands::notifications;
use virel_domain::{Db, DomainResult};

/// The channels and the variables that would enable each.
pub const CHANNELS: &[(&str, &[&str])] = &[
    ("telegram_diva", &["TELEGRAM_DIVA_BOT_TOKEN"]),
    ("telegram_kesha", &["TELEGRAM_KESHA_BOT_TOKEN"]),
    ("email", &["RESEND_API_KEY", "SMTP_URL"]),
    ("sms", &["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM"]),
];

/// Every channel reports disabled: this build of Virel has no provider clients yet, so no
/// credentials can make one send.
pub fn channel_status() -> Value {
    let mut m = serde_json::Map::new();
    for (name, vars) in CHANNELS {
        m.insert(
            (*name).into(),
            json!({"status": "disabled", "reason": "no provider client for this channel yet", "configured_by": vars}),
        );
    }
    Value::Object(m)
}

/// Sends a queued notification, or records why it cannot be sent. A disabled channel is a
/// permanent failure: retrying cannot help, so it fails at once and tells an operator.
pub async fn send(db: &Db, id: Uuid) -> DomainResult<()> {
    let n = notifications::get(db, id).await?;
    if n.status != "queued" {
        return Ok(());
    }
    notifications::record_failure(db, id, &format!("channel {} is disabled: no provider configured", n.channel), true)
        .await
}
