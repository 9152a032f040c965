//! Where staff and models are reached: the contact fields notifications resolve a recipient
//! to (users: phone, Telegram chat, preferred channel, besides their login email; models:
//! phone, email, Telegram, preferred channel).

use serde::Serialize;
use serde_json::json;
use sqlx::FromRow;
use uuid::Uuid;

use super::{authorize, emit, one_of, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::policy::Permission;
use crate::store::Db;
use crate::{Ctx, now, q_exec, q_opt};

#[derive(Clone, Debug, Default, FromRow, Serialize, PartialEq)]
pub struct Contact {
    pub phone: Option<String>,
    pub email: Option<String>,
    pub telegram: Option<String>,
    pub preferred_channel: Option<String>,
}

/// The channels a person may prefer.
pub const PREFERRED: &[&str] = &["telegram", "sms", "email"];

fn clean(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn check(c: &Contact, email_allowed: bool) -> DomainResult<()> {
    if let Some(p) = &c.phone {
        let digits = p.chars().filter(|c| c.is_ascii_digit()).count();
        if !p.starts_with('+') || !p[1..].chars().all(|c| c.is_ascii_digit()) || !(8..=15).contains(&digits) {
            return Err(DomainError::invalid("phone must be an E.164 number such as +447700900123"));
        }
    }
    if let Some(e) = &c.email {
        if !email_allowed {
            return Err(DomainError::invalid("a user's email is their login: change it on the user"));
        }
        match e.split_once('@') {
            Some((l, d)) if !l.is_empty() && d.contains('.') && e.len() <= 254 => {}
            _ => return Err(DomainError::invalid("email must be an email address")),
        }
    }
    if let Some(t) = &c.telegram {
        let body = t.strip_prefix('@').unwrap_or(t);
        let chat_id = t.strip_prefix('-').unwrap_or(t).chars().all(|c| c.is_ascii_digit());
        let handle =
            t.starts_with('@') && body.len() >= 3 && body.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if t.len() > 64 || !(chat_id || handle) {
            return Err(DomainError::invalid("telegram must be a chat id (digits) or a @handle"));
        }
    }
    if let Some(p) = &c.preferred_channel {
        one_of(p, PREFERRED, "preferred_channel")?;
    }
    Ok(())
}

/// Reads a user's or model's contact fields (`kind` is `user` or `model`).
pub async fn get(db: &Db, ctx: &Ctx, kind: &str, id: Uuid) -> DomainResult<Contact> {
    let p = if kind == "user" { Permission::UsersRead } else { Permission::ModelsRead };
    if !(kind == "user" && ctx.actor.user_id() == Some(id)) {
        authorize(db, ctx, p, kind).await?;
    }
    let sql = if kind == "user" {
        "SELECT phone, email, telegram, preferred_channel FROM users WHERE id = $1"
    } else {
        "SELECT phone, email, telegram, preferred_channel FROM models WHERE id = $1"
    };
    q_opt!(&mut db.acquire().await?.conn(), Contact, sql, id)?
        .ok_or(DomainError::NotFound { entity: if kind == "user" { "user" } else { "model" } })
}

/// Replaces a user's (themselves, or `users:manage`) or a model's (`models:write`) contact
/// fields; audited, with a `user.contact_updated` / `model.contact_updated` event.
pub async fn set(db: &Db, ctx: &Ctx, kind: &str, id: Uuid, c: Contact) -> DomainResult<Contact> {
    let is_user = kind == "user";
    if !(is_user && ctx.actor.user_id() == Some(id)) {
        let p = if is_user { Permission::UsersManage } else { Permission::ModelsWrite };
        authorize(db, ctx, p, kind).await?;
    }
    let c = Contact {
        phone: clean(c.phone),
        email: clean(c.email).map(|e| e.to_lowercase()),
        telegram: clean(c.telegram),
        preferred_channel: clean(c.preferred_channel),
    };
    check(&c, !is_user)?;
    let before = get(db, &Ctx::system(), kind, id).await?;
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    if is_user {
        q_exec!(
            &mut conn,
            "UPDATE users SET phone = $1, telegram = $2, preferred_channel = $3, updated_at = $4, version = version + 1 WHERE id = $5",
            c.phone.clone(),
            c.telegram.clone(),
            c.preferred_channel.clone(),
            now(),
            id
        )?;
    } else {
        q_exec!(
            &mut conn,
            "UPDATE models SET phone = $1, email = $2, telegram = $3, preferred_channel = $4, updated_at = $5, version = version + 1 WHERE id = $6",
            c.phone.clone(),
            c.email.clone(),
            c.telegram.clone(),
            c.preferred_channel.clone(),
            now(),
            id
        )?;
    }
    let event = format!("{kind}.contact_updated");
    emit(&mut conn, ctx, &event, kind, id, json!({format!("{kind}_id"): id, "preferred_channel": c.preferred_channel}))
        .await?;
    // The audit keeps which fields changed, not the addresses.
    let changed: Vec<&str> = [
        ("phone", before.phone != c.phone),
        ("email", before.email != c.email && !is_user),
        ("telegram", before.telegram != c.telegram),
        ("preferred_channel", before.preferred_channel != c.preferred_channel),
    ]
    .into_iter()
    .filter(|(_, d)| *d)
    .map(|(f, _)| f)
    .collect();
    write_audit(&mut conn, ctx, &event, kind, Some(id.to_string()), None, Some(json!({"changed": changed}))).await?;
    tx.commit().await?;
    let mut out = c;
    if is_user {
        out.email = before.email;
    }
    Ok(out)
}
