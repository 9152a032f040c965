//! Passwords, login throttling and refresh tokens (opaque, stored hashed, rotated, with
//! reuse detection). Access tokens (JWT) are minted by the API from what these return.

use base64::Engine;
use chrono::Duration;
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::FromRow;
use uuid::Uuid;

use super::users::{find_by_email, load, verify_password};
use super::write_audit;
use crate::error::{DomainError, DomainResult};
use crate::policy::Role;
use crate::rows::User;
use crate::store::Db;
use crate::{Actor, Ctx, new_id, now, q_exec, q_opt};

/// Failed logins for one email or one address within the window before 429.
pub const MAX_FAILURES: i64 = 5;
pub const FAILURE_WINDOW_MINUTES: i64 = 15;
pub const REFRESH_TTL_DAYS: i64 = 30;

pub struct Session {
    pub user: User,
    pub refresh_token: String,
}

#[derive(FromRow)]
struct Count {
    n: i64,
}

#[derive(FromRow)]
struct TokenRow {
    id: Uuid,
    user_id: Uuid,
    family_id: Uuid,
    expires_at: chrono::DateTime<chrono::Utc>,
    used_at: Option<chrono::DateTime<chrono::Utc>>,
    revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A hash that a missing user is checked against, so a login for an unknown email costs the
/// same time as one with a wrong password.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| super::users::hash_password("not a password").unwrap_or_default())
}

async fn recent_failures(db: &Db, email: &str, ip: Option<&str>) -> DomainResult<i64> {
    let since = now() - Duration::minutes(FAILURE_WINDOW_MINUTES);
    let row = q_opt!(
        &mut db.acquire().await?.conn(),
        Count,
        "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'auth.login_failed' AND at > $1
             AND (entity_id = $2 OR ($3 IS NOT NULL AND ip = $3))",
        since,
        email,
        ip
    )?;
    Ok(row.map(|r| r.n).unwrap_or(0))
}

async fn issue(conn: &mut crate::store::Conn<'_>, user_id: Uuid, family: Uuid) -> DomainResult<String> {
    let token = new_token();
    let at = now();
    q_exec!(
        conn,
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        new_id(),
        user_id,
        family,
        token_hash(&token),
        at + Duration::days(REFRESH_TTL_DAYS),
        at
    )?;
    Ok(token)
}

/// Checks a password. Failures are audited (`auth.login_failed`) and counted; past the limit
/// the caller is told to wait (429) before the password is even looked at.
pub async fn login(db: &Db, ctx: &Ctx, email: &str, password: &str) -> DomainResult<Session> {
    let email = email.trim().to_lowercase();
    let failures = recent_failures(db, &email, ctx.ip.as_deref()).await?;
    if failures >= MAX_FAILURES {
        let mut tx = db.begin().await?;
        write_audit(&mut tx.conn(), ctx, "auth.login_throttled", "user", Some(email.clone()), None, None).await?;
        tx.commit().await?;
        return Err(DomainError::TooManyRequests { retry_after_secs: (FAILURE_WINDOW_MINUTES * 60) as u64 });
    }

    // Slow down a guesser before the hard limit: each recent failure costs 100 ms more.
    if failures > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(100 * failures as u64)).await;
    }
    let user = find_by_email(&mut db.acquire().await?.conn(), &email).await?;
    let ok = match &user {
        Some(u) => verify_password(password, &u.password_hash) && u.active,
        None => {
            verify_password(password, dummy_hash());
            false
        }
    };
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let Some(user) = user.filter(|_| ok) else {
        write_audit(&mut conn, ctx, "auth.login_failed", "user", Some(email.clone()), None, None).await?;
        tx.commit().await?;
        return Err(DomainError::Unauthorized("wrong email or password".into()));
    };
    let token = issue(&mut conn, user.id, new_id()).await?;
    let actor_ctx = Ctx {
        actor: Actor::User { id: user.id, role: Role::parse(&user.role).unwrap_or(Role::Operator) },
        ..ctx.clone()
    };
    write_audit(&mut conn, &actor_ctx, "auth.login", "user", Some(user.id.to_string()), None, None).await?;
    tx.commit().await?;
    Ok(Session { user, refresh_token: token })
}

/// Rotates a refresh token. A token that was already rotated (or revoked) is a sign of theft:
/// its whole family is revoked, and the caller must log in again.
pub async fn refresh(db: &Db, ctx: &Ctx, token: &str) -> DomainResult<Session> {
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let row = q_opt!(
        &mut conn,
        TokenRow,
        "SELECT id, user_id, family_id, expires_at, used_at, revoked_at FROM refresh_tokens WHERE token_hash = $1",
        token_hash(token)
    )?;
    let Some(row) = row else {
        return Err(DomainError::Unauthorized("invalid refresh token".into()));
    };
    let at = now();
    if row.used_at.is_none() && row.revoked_at.is_some() {
        // Ended by a logout (or a password change): no alarm, just no.
        return Err(DomainError::Unauthorized("refresh token revoked; log in again".into()));
    }
    if row.used_at.is_some() {
        q_exec!(
            &mut conn,
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
            at,
            row.family_id
        )?;
        write_audit(
            &mut conn,
            ctx,
            "auth.refresh_reuse_detected",
            "user",
            Some(row.user_id.to_string()),
            None,
            Some(json!({"family_id": row.family_id})),
        )
        .await?;
        tx.commit().await?;
        return Err(DomainError::Unauthorized(
            "refresh token reuse detected; all sessions of this login were revoked".into(),
        ));
    }
    if row.expires_at <= at {
        return Err(DomainError::Unauthorized("refresh token expired".into()));
    }
    // Guarded by `used_at IS NULL`: of two concurrent refreshes with one token, one wins.
    let n = q_exec!(
        &mut conn,
        "UPDATE refresh_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND revoked_at IS NULL",
        at,
        row.id
    )?;
    if n == 0 {
        return Err(DomainError::Unauthorized("refresh token already used".into()));
    }
    let user = load(&mut conn, row.user_id).await?;
    if !user.active {
        return Err(DomainError::Unauthorized("account disabled".into()));
    }
    let token = issue(&mut conn, user.id, row.family_id).await?;
    write_audit(&mut conn, ctx, "auth.refresh", "user", Some(user.id.to_string()), None, None).await?;
    tx.commit().await?;
    Ok(Session { user, refresh_token: token })
}

/// Ends the session the refresh token belongs to (its whole family).
pub async fn logout(db: &Db, ctx: &Ctx, token: Option<&str>) -> DomainResult<()> {
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    if let Some(token) = token {
        let row = q_opt!(
            &mut conn,
            TokenRow,
            "SELECT id, user_id, family_id, expires_at, used_at, revoked_at FROM refresh_tokens WHERE token_hash = $1",
            token_hash(token)
        )?;
        if let Some(row) = row {
            if Some(row.user_id) != ctx.actor.user_id() {
                return Err(DomainError::Unauthorized("that refresh token belongs to another user".into()));
            }
            let _ = row.id;
            q_exec!(
                &mut conn,
                "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
                now(),
                row.family_id
            )?;
        }
    } else if let Some(uid) = ctx.actor.user_id() {
        q_exec!(
            &mut conn,
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            now(),
            uid
        )?;
    }
    write_audit(&mut conn, ctx, "auth.logout", "user", ctx.actor.user_id().map(|u| u.to_string()), None, None).await?;
    tx.commit().await?;
    Ok(())
}

/// A fresh random secret (64 hex characters), for the embedded mode's JWT key.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
