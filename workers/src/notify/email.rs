//! Email: SMTP through lettre (`SMTP_URL`: `smtp://` with optional `?tls=required` or
//! `?tls=opportunistic`, `smtps://` for TLS from the start, credentials in the user info), or
//! Resend's HTTP API when its key is set (with its `Idempotency-Key`, so a retry of a message
//! Resend already took is not sent twice).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::{Value, json};
use uuid::Uuid;
use virel_domain::jobs::JobError;

#[derive(Clone)]
pub enum Email {
    Smtp { transport: AsyncSmtpTransport<Tokio1Executor>, from: String },
    Resend { http: reqwest::Client, base: String, key: String, from: String },
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Email::Smtp { from, .. } => f.debug_struct("Smtp").field("from", from).finish_non_exhaustive(),
            Email::Resend { base, from, .. } => {
                f.debug_struct("Resend").field("base", base).field("from", from).field("key", &"***").finish()
            }
        }
    }
}

impl Email {
    /// SMTP from `SMTP_URL`; the error never repeats the URL (it may hold a password).
    pub fn smtp(url: &str, from: &str) -> anyhow::Result<Email> {
        from.parse::<lettre::message::Mailbox>()
            .map_err(|_| anyhow::anyhow!("EMAIL_FROM is not an email address (\"Name <a@b>\" or a@b)"))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|_| {
                anyhow::anyhow!(
                    "SMTP_URL must be smtp://[user:password@]host[:port][?tls=required|opportunistic] or smtps://..."
                )
            })?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        Ok(Email::Smtp { transport, from: from.to_string() })
    }

    pub fn resend(http: reqwest::Client, base: &str, key: &str, from: &str) -> Email {
        Email::Resend {
            http,
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            from: from.to_string(),
        }
    }

    pub fn provider(&self) -> &'static str {
        match self {
            Email::Smtp { .. } => "smtp",
            Email::Resend { .. } => "resend",
        }
    }

    /// Sends one message; the provider id is the Message-ID (SMTP) or Resend's id.
    pub async fn send(&self, id: Uuid, to: &str, subject: &str, body: &str) -> Result<String, JobError> {
        match self {
            Email::Smtp { transport, from } => {
                let message_id = format!("<{id}@virel>");
                let to = to
                    .parse::<lettre::message::Mailbox>()
                    .map_err(|_| JobError::Permanent("email: the recipient is not an email address".into()))?;
                let msg = lettre::Message::builder()
                    .from(from.parse().map_err(|_| JobError::Permanent("email: EMAIL_FROM is invalid".into()))?)
                    .to(to)
                    .subject(subject)
                    .message_id(Some(message_id.clone()))
                    .header(ContentType::TEXT_PLAIN)
                    .body(body.to_string())
                    .map_err(|e| JobError::Permanent(format!("email: cannot build the message: {e}")))?;
                match transport.send(msg).await {
                    Ok(_) => Ok(message_id),
                    Err(e) if e.is_permanent() => Err(JobError::Permanent(format!("email (smtp): {e}"))),
                    Err(e) => Err(JobError::Transient(format!("email (smtp): {e}"))),
                }
            }
            Email::Resend { http, base, key, from } => {
                let resp = http
                    .post(format!("{base}/emails"))
                    .bearer_auth(key)
                    .header("Idempotency-Key", format!("notification-{id}"))
                    .json(&json!({"from": from, "to": [to], "subject": subject, "text": body}))
                    .send()
                    .await
                    .map_err(|e| JobError::Transient(format!("email (resend): {}", e.without_url())))?;
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let json: Value = resp.json().await.unwrap_or(Value::Null);
                if status.is_success()
                    && let Some(id) = json["id"].as_str()
                {
                    return Ok(id.to_string());
                }
                let what = format!(
                    "email (resend) {}: {}",
                    status.as_u16(),
                    json["message"].as_str().or(json["name"].as_str()).unwrap_or("no message")
                );
                Err(match status.as_u16() {
                    429 => JobError::RetryAfter(Duration::from_secs(retry_after.unwrap_or(1).max(1)), what),
                    401 | 403 => {
                        JobError::Permanent(format!("email (resend) {}: the API key was refused", status.as_u16()))
                    }
                    // 409: the same idempotency key is still being processed: try again.
                    409 => JobError::Transient(what),
                    400..=499 => JobError::Permanent(what),
                    _ => JobError::Transient(what),
                })
            }
        }
    }
}
