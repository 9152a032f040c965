//! `/notifications`: the delivery ledger (recipients masked without `clients:pii`);
//! `/notification-templates`: the message templates, stored and editable (`automation:write`),
//! checked when saved; `POST /webhooks/twilio`: Twilio's delivery reports, verified by
//! `X-Twilio-Signature`.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Body, Request, Response, handler};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;
use virel_domain::commands::contacts;
use virel_domain::commands::notifications::{self, Filter};
use virel_domain::commands::templates::{self, TemplateInput};

use super::{encode_cursor, page};
use crate::auth::Auth;
use crate::error::ApiResult;
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

#[derive(Object)]
pub struct NotificationOut {
    pub id: Uuid,
    /// telegram_diva, telegram_kesha, email or sms.
    pub channel: String,
    /// The address on the channel; masked without `clients:pii`.
    pub recipient: Option<String>,
    /// client, model or user.
    pub recipient_kind: Option<String>,
    pub recipient_id: Option<Uuid>,
    pub template: String,
    pub title: Option<String>,
    pub body: String,
    /// queued, sending, sent, delivered or failed.
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub provider_id: Option<String>,
    pub subject_type: Option<String>,
    pub subject_id: Option<Uuid>,
    /// The notification this one falls back from (its channel refused or is disabled).
    pub fallback_of: Option<Uuid>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<notifications::Notification> for NotificationOut {
    fn from(n: notifications::Notification) -> Self {
        NotificationOut {
            id: n.id,
            channel: n.channel,
            recipient: n.recipient,
            recipient_kind: n.recipient_kind,
            recipient_id: n.recipient_id,
            template: n.template,
            title: n.title,
            body: n.body,
            status: n.status,
            attempts: n.attempts,
            last_error: n.last_error,
            provider_id: n.provider_id,
            subject_type: n.subject_type,
            subject_id: n.subject_id,
            fallback_of: n.fallback_of,
            sent_at: n.sent_at,
            delivered_at: n.delivered_at,
            created_at: n.created_at,
            updated_at: n.updated_at,
        }
    }
}

#[derive(Object)]
pub struct NotificationPage {
    pub items: Vec<NotificationOut>,
    pub next_cursor: Option<String>,
}

#[derive(Object)]
pub struct TemplateOut {
    /// None for a shipped default nobody replaced.
    pub id: Option<Uuid>,
    pub name: String,
    /// Empty: every channel.
    pub channel: String,
    /// Empty: every locale.
    pub locale: String,
    pub subject: Option<String>,
    pub body: String,
    /// diva or kesha: the Telegram bot for this template.
    pub bot: Option<String>,
    /// A shipped default.
    pub builtin: bool,
    pub version: Option<i64>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Object)]
pub struct TemplateList {
    pub items: Vec<TemplateOut>,
    /// The variables a template may use.
    pub variables: Vec<String>,
}

#[derive(Object)]
pub struct TemplateIn {
    #[oai(validator(max_length = 200))]
    pub name: String,
    /// telegram_diva, telegram_kesha, email or sms; omitted for every channel.
    pub channel: Option<String>,
    pub locale: Option<String>,
    /// The email subject (a template too).
    #[oai(validator(max_length = 10000))]
    pub subject: Option<String>,
    /// minijinja, strict: `{{ client_name }}`; an unknown variable is refused (422).
    #[oai(validator(max_length = 10000))]
    pub body: String,
    pub bot: Option<String>,
}

/// Where a user or model is reached by notifications.
#[derive(Object)]
pub struct ContactFields {
    /// E.164, `+447700900123` (SMS).
    #[oai(validator(max_length = 32))]
    pub phone: Option<String>,
    /// A model's email (a user's is their login, shown here, changed on the user).
    #[oai(validator(max_length = 254))]
    pub email: Option<String>,
    /// A Telegram chat id (digits) or `@handle`.
    #[oai(validator(max_length = 64))]
    pub telegram: Option<String>,
    /// telegram, sms or email.
    #[oai(validator(max_length = 16))]
    pub preferred_channel: Option<String>,
}

impl From<contacts::Contact> for ContactFields {
    fn from(c: contacts::Contact) -> Self {
        ContactFields { phone: c.phone, email: c.email, telegram: c.telegram, preferred_channel: c.preferred_channel }
    }
}

impl From<ContactFields> for contacts::Contact {
    fn from(c: ContactFields) -> Self {
        contacts::Contact {
            phone: c.phone,
            email: c.email,
            telegram: c.telegram,
            preferred_channel: c.preferred_channel,
        }
    }
}

/// What a user's contact may change: a user's email is their login, changed on the user.
#[derive(Object)]
pub struct UserContactIn {
    /// E.164, `+447700900123` (SMS).
    #[oai(validator(max_length = 32))]
    pub phone: Option<String>,
    /// A Telegram chat id (digits) or `@handle`.
    #[oai(validator(max_length = 64))]
    pub telegram: Option<String>,
    /// telegram, sms or email.
    #[oai(validator(max_length = 16))]
    pub preferred_channel: Option<String>,
}

impl From<UserContactIn> for contacts::Contact {
    fn from(c: UserContactIn) -> Self {
        contacts::Contact { phone: c.phone, email: None, telegram: c.telegram, preferred_channel: c.preferred_channel }
    }
}

#[derive(ApiResponse)]
pub enum Deleted {
    #[oai(status = 204)]
    Done,
}

fn template_out(t: templates::Template) -> TemplateOut {
    TemplateOut {
        id: Some(t.id),
        name: t.name,
        channel: t.channel,
        locale: t.locale,
        subject: t.subject,
        body: t.body,
        bot: t.bot,
        builtin: false,
        version: Some(t.version),
        updated_at: Some(t.updated_at),
    }
}

#[OpenApi(tag = "ApiTags::Automation")]
impl Api {
    /// The delivery ledger, newest first: every send, its attempts and fallbacks.
    #[oai(path = "/notifications", method = "get", operation_id = "listNotifications")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: Auth,
        status: Query<Option<String>>,
        channel: Query<Option<String>>,
        subject_type: Query<Option<String>>,
        subject_id: Query<Option<Uuid>>,
        template: Query<Option<String>>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<NotificationPage>> {
        let f = Filter {
            status: status.0,
            channel: channel.0,
            subject_type: subject_type.0,
            subject_id: subject_id.0,
            template: template.0,
        };
        let p = notifications::list(&self.state.db, &auth.0, f, page(limit.0, cursor.0)?).await?;
        Ok(Json(NotificationPage {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: encode_cursor(p.next_cursor),
        }))
    }

    /// The templates: stored ones and the shipped defaults not replaced.
    #[oai(path = "/notification-templates", method = "get", operation_id = "listNotificationTemplates")]
    async fn templates(&self, auth: Auth) -> ApiResult<Json<TemplateList>> {
        let items = templates::list(&self.state.db, &auth.0).await?;
        Ok(Json(TemplateList {
            items: items
                .into_iter()
                .map(|t| TemplateOut {
                    id: t.id,
                    name: t.name,
                    channel: t.channel,
                    locale: t.locale,
                    subject: t.subject,
                    body: t.body,
                    bot: t.bot,
                    builtin: t.builtin,
                    version: t.version,
                    updated_at: t.updated_at,
                })
                .collect(),
            variables: templates::VARIABLES.iter().map(|(k, _)| k.to_string()).collect(),
        }))
    }

    /// Store a template (replacing the one of the same name, channel and locale). It is
    /// rendered against a sample context first: 422 names an unknown variable or template.
    #[oai(path = "/notification-templates", method = "put", operation_id = "saveNotificationTemplate")]
    async fn save(&self, auth: Auth, body: Json<TemplateIn>) -> ApiResult<Json<TemplateOut>> {
        let b = body.0;
        let input = TemplateInput {
            name: b.name,
            channel: b.channel,
            locale: b.locale,
            subject: b.subject,
            body: b.body,
            bot: b.bot,
        };
        Ok(Json(template_out(templates::save(&self.state.db, &auth.0, input).await?)))
    }

    /// Same as PUT (a new template or a replacement).
    #[oai(path = "/notification-templates", method = "post", operation_id = "createNotificationTemplate")]
    async fn create(&self, auth: Auth, body: Json<TemplateIn>) -> ApiResult<Json<TemplateOut>> {
        self.save(auth, body).await
    }

    /// A user's contact fields (their own, or with `users:read`).
    #[oai(path = "/users/:id/contact", method = "get", operation_id = "getUserContact")]
    async fn user_contact(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<ContactFields>> {
        Ok(Json(contacts::get(&self.state.db, &auth.0, "user", id.0).await?.into()))
    }

    /// Set a user's phone, Telegram chat and preferred channel (their own, or `users:manage`).
    #[oai(path = "/users/:id/contact", method = "put", operation_id = "setUserContact")]
    async fn set_user_contact(
        &self,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<UserContactIn>,
    ) -> ApiResult<Json<ContactFields>> {
        Ok(Json(contacts::set(&self.state.db, &auth.0, "user", id.0, body.0.into()).await?.into()))
    }

    /// A model's contact fields (`models:read`).
    #[oai(path = "/models/:id/contact", method = "get", operation_id = "getModelContact")]
    async fn model_contact(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<ContactFields>> {
        Ok(Json(contacts::get(&self.state.db, &auth.0, "model", id.0).await?.into()))
    }

    /// Set a model's phone, email, Telegram and preferred channel (`models:write`).
    #[oai(path = "/models/:id/contact", method = "put", operation_id = "setModelContact")]
    async fn set_model_contact(
        &self,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<ContactFields>,
    ) -> ApiResult<Json<ContactFields>> {
        Ok(Json(contacts::set(&self.state.db, &auth.0, "model", id.0, body.0.into()).await?.into()))
    }

    /// Remove a stored template; a shipped default of that name applies again.
    #[oai(path = "/notification-templates/:id", method = "delete", operation_id = "deleteNotificationTemplate")]
    async fn delete(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Deleted> {
        templates::delete(&self.state.db, &auth.0, id.0).await?;
        Ok(Deleted::Done)
    }
}

/// Whether `given` is Twilio's signature of this callback: base64 of HMAC-SHA1 over the URL
/// followed by each POST parameter's name and value, sorted by name. Compared in constant time
/// (`Mac::verify_slice`); anything unreadable is simply not a valid signature.
pub fn twilio_signature_valid(auth_token: &str, url: &str, params: &BTreeMap<String, String>, given: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(given.trim()) else { return false };
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()) else { return false };
    mac.update(url.as_bytes());
    for (k, v) in params {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    !given.is_empty() && mac.verify_slice(&given).is_ok()
}

/// `POST /api/v1/webhooks/twilio`: a message status callback. Verified before anything else
/// (403 without a valid `X-Twilio-Signature`); `delivered` marks the notification delivered,
/// `undelivered` / `failed` fails it with Twilio's error code.
#[handler]
pub async fn twilio_webhook(req: &Request, body: Body, state: Data<&Arc<AppState>>) -> Response {
    let Some(hook) = &state.twilio else {
        return Response::builder().status(StatusCode::NOT_FOUND).body("the SMS channel is not configured");
    };
    let Ok(bytes) = body.into_bytes().await else {
        return Response::builder().status(StatusCode::BAD_REQUEST).body("unreadable body");
    };
    let params: BTreeMap<String, String> = form_urlencoded(&bytes);
    let url = match &hook.url {
        Some(u) => u.clone(),
        None => {
            let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            let proto = if state.settings.trust_proxy {
                req.headers().get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or("http")
            } else {
                "http"
            };
            format!("{proto}://{host}{}", req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        }
    };
    let given = req.headers().get("x-twilio-signature").and_then(|h| h.to_str().ok()).unwrap_or("");
    if !twilio_signature_valid(&hook.auth_token, &url, &params, given) {
        tracing::warn!("twilio callback with a missing or wrong signature");
        return Response::builder().status(StatusCode::FORBIDDEN).body("bad signature");
    }
    let sid = params.get("MessageSid").or(params.get("SmsSid")).cloned().unwrap_or_default();
    let status = params.get("MessageStatus").or(params.get("SmsStatus")).cloned().unwrap_or_default();
    let outcome = match status.as_str() {
        "delivered" => Some(true),
        "undelivered" | "failed" => Some(false),
        _ => None,
    };
    if let (Some(delivered), false) = (outcome, sid.is_empty()) {
        let detail =
            format!("{status}{}", params.get("ErrorCode").map(|c| format!(" (error {c})")).unwrap_or_default());
        if let Err(e) = notifications::record_delivery(&state.db, "sms", &sid, delivered, &detail).await {
            tracing::warn!(error = %e, "cannot record a twilio delivery report");
            return Response::builder().status(StatusCode::SERVICE_UNAVAILABLE).body("try again");
        }
    }
    Response::builder().status(StatusCode::NO_CONTENT).finish()
}

fn form_urlencoded(bytes: &[u8]) -> BTreeMap<String, String> {
    fn decode(s: &str) -> String {
        let s = s.replace('+', " ");
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && i + 2 < b.len()
                && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(bytes)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}
