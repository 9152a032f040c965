//! Notifications: a templated message to a client, a model, an assignee or a role, recorded
//! as a row (queued → sent | failed) and announced by a `notification.queued` event that a
//! worker turns into a send.

use serde_json::{Value, json};
use sqlx::FromRow;
use uuid::Uuid;

use super::exceptions::{self, NewException};
use super::{emit, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::rows::DomainEvent;
use crate::store::{Conn, Db, Tx};
use crate::{Ctx, new_id, now, q_exec, q_opt};

#[derive(Clone, Debug, FromRow, serde::Serialize)]
pub struct Notification {
    pub id: Uuid,
    pub channel: String,
    pub recipient: Option<String>,
    pub template: String,
    pub body: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub provider_id: Option<String>,
    pub subject_type: Option<String>,
    pub subject_id: Option<Uuid>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Named templates; `{{name}}` is replaced by a variable of the event.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "deposit_reminder",
        "Hello {{client_name}}, a reminder that the deposit of {{deposit}} for your booking on {{start_at}} is still due.",
    ),
    ("booking_confirmed", "Hello {{client_name}}, your booking on {{start_at}} is confirmed."),
    ("booking_reminder", "Hello {{client_name}}, a reminder of your booking on {{start_at}}."),
    (
        "contact_client",
        "Hello {{client_name}}, we tried to reach you about your booking on {{start_at}}. Please call us back.",
    ),
    ("task_escalated", "Task \"{{title}}\" is past its deadline and has been escalated."),
    ("generic", "Hello {{client_name}}, there is an update about your booking."),
];

pub fn render(template: &str, vars: &Value) -> String {
    let text = TEMPLATES.iter().find(|(n, _)| *n == template).map(|(_, t)| *t).unwrap_or("{{message}}");
    let mut out = text.to_string();
    if let Value::Object(m) = vars {
        for (k, v) in m {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            out = out.replace(&format!("{{{{{k}}}}}"), &s);
        }
    }
    out
}

#[derive(FromRow)]
struct Contact {
    name: String,
    phone: Option<String>,
    email: Option<String>,
    telegram: Option<String>,
    preferred_channel: Option<String>,
}

/// A message to send: to the client (on its preferred channel when `channel` is
/// `preferred`), or to a staff target named by `to`.
pub struct Message<'a> {
    pub channel: &'a str,
    pub to: &'a str,
    pub template: &'a str,
    pub client_id: Option<Uuid>,
    pub vars: Value,
    pub subject: (String, Uuid),
}

/// Records a notification about an event's subject and announces it for sending.
pub async fn queue_in(
    tx: &mut Tx,
    ctx: &Ctx,
    channel: &str,
    to: &str,
    template: &str,
    event: &DomainEvent,
) -> DomainResult<Notification> {
    let p = &event.payload.0;
    let vars = json!({
        "start_at": p.get("start_at").cloned().unwrap_or(Value::Null),
        "deposit": p.get("deposit").map(|d| format!("{} {}", d["amount"], d["currency"].as_str().unwrap_or(""))),
        "title": p.get("title").cloned().unwrap_or(Value::Null),
    });
    let client_id = p.get("client_id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
    let subject = crate::automation::actions::subject_of(event);
    queue(&mut tx.conn(), ctx, Message { channel, to, template, client_id, vars, subject }).await
}

/// Records a notification (queued) and announces it with `notification.queued`, in the
/// caller's transaction.
pub async fn queue(conn: &mut Conn<'_>, ctx: &Ctx, m: Message<'_>) -> DomainResult<Notification> {
    let Message { channel, to, template, client_id, mut vars, subject } = m;
    let (channel, recipient) = match to {
        "client" => {
            let client_id = client_id.ok_or_else(|| DomainError::invalid("there is no client to contact"))?;
            let c = q_opt!(
                conn,
                Contact,
                "SELECT name, phone, email, telegram, preferred_channel FROM clients WHERE id = $1",
                client_id
            )?
            .ok_or(DomainError::NotFound { entity: "client" })?;
            vars["client_name"] = json!(c.name);
            let ch = if channel == "preferred" {
                match c.preferred_channel.as_deref() {
                    Some("telegram") => "telegram_diva",
                    Some("email") => "email",
                    _ => "sms",
                }
            } else {
                channel
            };
            let addr = match ch {
                "email" => c.email,
                "sms" => c.phone,
                _ => c.telegram,
            };
            (ch.to_string(), addr)
        }
        other => {
            let ch = if channel == "preferred" { "email" } else { channel };
            (ch.to_string(), Some(other.to_string()))
        }
    };
    let body = render(template, &vars);
    let id = new_id();
    let at = now();
    let (st, sid) = subject;
    q_exec!(
        conn,
        "INSERT INTO notifications (id, channel, recipient, template, body, status, subject_type, subject_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $8)",
        id,
        channel.clone(),
        recipient.clone(),
        template,
        body,
        st.clone(),
        sid,
        at
    )?;
    let row = load(conn, id).await?;
    emit(
        conn,
        ctx,
        "notification.queued",
        "notification",
        id,
        json!({"notification_id": id, "channel": channel, "template": template, "status": "queued"}),
    )
    .await?;
    write_audit(
        conn,
        ctx,
        "notification.queued",
        "notification",
        Some(id.to_string()),
        None,
        Some(super::snapshot(&row)),
    )
    .await?;
    Ok(row)
}

pub async fn load(conn: &mut Conn<'_>, id: Uuid) -> DomainResult<Notification> {
    q_opt!(conn, Notification, "SELECT * FROM notifications WHERE id = $1", id)?
        .ok_or(DomainError::NotFound { entity: "notification" })
}

pub async fn get(db: &Db, id: Uuid) -> DomainResult<Notification> {
    load(&mut db.acquire().await?.conn(), id).await
}

/// Records a failed send. When `final_attempt`, the notification is failed for good: a
/// `notification.failed` event and a notification_failed exception tell an operator.
pub async fn record_failure(db: &Db, id: Uuid, error: &str, final_attempt: bool) -> DomainResult<()> {
    let ctx = Ctx::system();
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = load(&mut conn, id).await?;
    if before.status != "queued" {
        return Ok(());
    }
    let status = if final_attempt { "failed" } else { "queued" };
    q_exec!(
        &mut conn,
        "UPDATE notifications SET status = $1, attempts = attempts + 1, last_error = $2, updated_at = $3 WHERE id = $4",
        status,
        error,
        now(),
        id
    )?;
    if final_attempt {
        emit(&mut conn, &ctx, "notification.failed", "notification", id, json!({"notification_id": id, "channel": before.channel, "template": before.template, "error": error, "status": "failed"})).await?;
        exceptions::insert(
            &mut conn,
            &ctx,
            NewException {
                kind: "notification_failed".into(),
                title: Some(format!("{} message ({}) not sent: {error}", before.channel, before.template)),
                severity: "medium".into(),
                subject_type: before
                    .subject_type
                    .clone()
                    .filter(|s| crate::machine::SUBJECT_TYPES.contains(&s.as_str())),
                subject_id: before.subject_id.filter(|_| {
                    before.subject_type.as_deref().is_some_and(|s| crate::machine::SUBJECT_TYPES.contains(&s))
                }),
                assignee_id: None,
            },
        )
        .await?;
        write_audit(
            &mut conn,
            &ctx,
            "notification.failed",
            "notification",
            Some(id.to_string()),
            Some(super::snapshot(&before)),
            Some(json!({"error": error})),
        )
        .await?;
    }
    tx.commit().await
}

pub async fn record_sent(db: &Db, id: Uuid, provider_id: &str) -> DomainResult<()> {
    let ctx = Ctx::system();
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = load(&mut conn, id).await?;
    if before.status == "sent" {
        return Ok(());
    }
    q_exec!(
        &mut conn,
        "UPDATE notifications SET status = 'sent', attempts = attempts + 1, provider_id = $1, updated_at = $2 WHERE id = $3",
        provider_id,
        now(),
        id
    )?;
    emit(
        &mut conn,
        &ctx,
        "notification.sent",
        "notification",
        id,
        json!({"notification_id": id, "channel": before.channel, "template": before.template, "status": "sent"}),
    )
    .await?;
    write_audit(
        &mut conn,
        &ctx,
        "notification.sent",
        "notification",
        Some(id.to_string()),
        None,
        Some(json!({"provider_id": provider_id})),
    )
    .await?;
    tx.commit().await
}

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
