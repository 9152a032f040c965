//! SMS through Twilio's Messages API: a form POST with basic auth, `From` or
//! `MessagingServiceSid`, and the status callback for delivery reports.

use std::time::Duration;

use serde_json::Value;
use virel_domain::jobs::JobError;

#[derive(Clone)]
pub struct Twilio {
    http: reqwest::Client,
    base: String,
    account_sid: String,
    auth_token: String,
    from: Option<String>,
    messaging_service_sid: Option<String>,
    status_callback: Option<String>,
}

impl std::fmt::Debug for Twilio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Twilio")
            .field("base", &self.base)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"***")
            .finish()
    }
}

/// Error codes that say the number cannot receive the message (invalid, not mobile,
/// unsubscribed, unreachable region): permanent.
const PERMANENT_CODES: &[i64] = &[21211, 21214, 21217, 21219, 21407, 21408, 21610, 21612, 21614, 21635];

impl Twilio {
    pub fn new(
        http: reqwest::Client,
        base: &str,
        account_sid: &str,
        auth_token: &str,
        from: Option<String>,
        messaging_service_sid: Option<String>,
        status_callback: Option<String>,
    ) -> Twilio {
        Twilio {
            http,
            base: base.trim_end_matches('/').to_string(),
            account_sid: account_sid.to_string(),
            auth_token: auth_token.to_string(),
            from,
            messaging_service_sid,
            status_callback,
        }
    }

    /// Sends `body` to `to`; the provider id is the message SID.
    pub async fn send(&self, to: &str, body: &str) -> Result<String, JobError> {
        let url = format!("{}/2010-04-01/Accounts/{}/Messages.json", self.base, self.account_sid);
        let mut form: Vec<(&str, &str)> = vec![("To", to), ("Body", body)];
        match (&self.messaging_service_sid, &self.from) {
            (Some(ms), _) => form.push(("MessagingServiceSid", ms)),
            (None, Some(from)) => form.push(("From", from)),
            (None, None) => return Err(JobError::Permanent("sms: neither TWILIO_FROM nor a messaging service".into())),
        }
        if let Some(cb) = &self.status_callback {
            form.push(("StatusCallback", cb));
        }
        let resp = self
            .http
            .post(url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&form)
            .send()
            .await
            .map_err(|e| JobError::Transient(format!("sms (twilio): {}", e.without_url())))?;
        let status = resp.status();
        let retry_after =
            resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
        let json: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success()
            && let Some(sid) = json["sid"].as_str()
        {
            return Ok(sid.to_string());
        }
        let code = json["code"].as_i64();
        let what = format!(
            "sms (twilio) {}{}: {}",
            status.as_u16(),
            code.map(|c| format!(" code {c}")).unwrap_or_default(),
            json["message"].as_str().unwrap_or("no message")
        );
        Err(match status.as_u16() {
            429 => JobError::RetryAfter(Duration::from_secs(retry_after.unwrap_or(1).max(1)), what),
            401 => JobError::Permanent("sms (twilio) 401: the account SID or auth token was refused".into()),
            400..=499 if code.is_some_and(|c| PERMANENT_CODES.contains(&c)) => JobError::Permanent(what),
            400..=499 => JobError::Permanent(what),
            _ => JobError::Transient(what),
        })
    }
}
