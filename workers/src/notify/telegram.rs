//! Telegram Bot API `sendMessage`, one client per bot (DIVA, KESHA). The token is part of the
//! URL path, so no error text here carries a URL.

use std::time::Duration;

use serde_json::{Value, json};
use virel_domain::jobs::JobError;

#[derive(Clone)]
pub struct Telegram {
    http: reqwest::Client,
    base: String,
    token: String,
    /// `diva` or `kesha`, for messages.
    pub bot: &'static str,
}

impl std::fmt::Debug for Telegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telegram").field("base", &self.base).field("bot", &self.bot).field("token", &"***").finish()
    }
}

impl Telegram {
    pub fn new(http: reqwest::Client, base: &str, token: &str, bot: &'static str) -> Telegram {
        Telegram { http, base: base.trim_end_matches('/').to_string(), token: token.to_string(), bot }
    }

    /// Sends `text` to `chat_id`; the provider id is `chat:message_id`.
    pub async fn send(&self, chat_id: &str, text: &str) -> Result<String, JobError> {
        let url = format!("{}/bot{}/sendMessage", self.base, self.token);
        let resp = self
            .http
            .post(url)
            .json(&json!({"chat_id": chat_id, "text": text, "disable_web_page_preview": true}))
            .send()
            .await
            .map_err(|e| JobError::Transient(format!("telegram ({}): {}", self.bot, e.without_url())))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let description = body["description"].as_str().unwrap_or("no description").to_string();
        if status.is_success() && body["ok"] == true {
            let id = &body["result"]["message_id"];
            return Ok(format!("{chat_id}:{id}"));
        }
        let what = format!("telegram ({}) {}: {description}", self.bot, status.as_u16());
        Err(match status.as_u16() {
            429 => {
                let secs = body["parameters"]["retry_after"].as_u64().unwrap_or(1).max(1);
                JobError::RetryAfter(Duration::from_secs(secs), what)
            }
            401 => JobError::Permanent(format!("telegram ({}) 401: the bot token was refused", self.bot)),
            // 400 "chat not found", 403 "bot was blocked by the user": retrying cannot help.
            400..=499 => JobError::Permanent(what),
            _ => JobError::Transient(what),
        })
    }
}
