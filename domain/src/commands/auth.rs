//! Passwords, login throttling and refresh tokens (opaque, stored hashed, rotated, with
//! reuse detection). Access tokens (JWT) are minted by the API from what these return.

use base64::Engine;
use chrono::Duration;
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::FromRow;
use uuid::Uuid;

use super::users::{find_by_email, load};
use super::write_audit;
use crate::error::{DomainError, DomainResult};
use crate::policy::Role;
use crate::rows::User;
use crate::store::Db;
use crate::{Actor, Ctx, new_id, now, q_exec, q_opt};

/// Failed logins for one (account, address) within the window before that pair is locked.
pub const MAX_FAILURES: i64 = 5;
/// Failed logins from one address (over every account) within the window before it is locked.
pub const MAX_ADDRESS_FAILURES: i64 = 20;
pub const FAILURE_WINDOW_MINUTES: i64 = 15;
/// The first lock-out lasts this long; each further one doubles it, up to `LOCK_CAP_SECS`.
pub const LOCK_BASE_SECS: i64 = 60;
pub const LOCK_CAP_SECS: i64 = 15 * 60;
/// A key quiet for this long starts again from the first lock-out's length.
pub const LOCKOUT_MEMORY_HOURS: i64 = 24;
pub const REFRESH_TTL_DAYS: i64 = 30;

pub struct Session {
    pub user: User,
    pub refresh_token: String,
}

/// One throttle key: `a:{address}:{email}` (an account tried from one address) or
/// `ip:{address}` (every account tried from one address).
#[derive(FromRow, Clone, Debug)]
struct Throttle {
    key: String,
    failures: i64,
    pending: i64,
    window_start: chrono::DateTime<chrono::Utc>,
    lockouts: i64,
    locked_until: Option<chrono::DateTime<chrono::Utc>>,
    throttled: i64,
    updated_at: chrono::DateTime<chrono::Utc>,
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

/// The password hashing parameters, pinned rather than left to the crate's defaults:
/// argon2id, 19 MiB (19,456 KiB), 2 passes, 1 lane (OWASP's baseline). Hashes made with other
/// parameters still verify: a PHC string carries its own.
pub fn argon2() -> DomainResult<argon2::Argon2<'static>> {
    let params = argon2::Params::new(19_456, 2, 1, None)
        .map_err(|e| DomainError::Internal(format!("argon2 parameters: {e}")))?;
    Ok(argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params))
}

/// Hashes on the calling thread: for the seed and for code already off the async executor.
pub fn hash_password_blocking(password: &str) -> DomainResult<String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DomainError::Internal(format!("hashing failed: {e}")))
}

pub fn verify_password_blocking(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2().is_ok_and(|a| a.verify_password(password.as_bytes(), &parsed).is_ok()),
        Err(_) => false,
    }
}

/// About one permit per core: argon2 runs on tokio's blocking pool, never on the executor's
/// threads (60 parallel logins would otherwise stall every other request), and at most this
/// many at once, which also bounds its memory (19 MiB each).
fn hashing_permits() -> &'static tokio::sync::Semaphore {
    static S: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        tokio::sync::Semaphore::new(n.max(1))
    })
}

async fn off_executor<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> DomainResult<T> {
    let _permit = hashing_permits()
        .acquire()
        .await
        .map_err(|_| DomainError::Internal("the hashing semaphore is closed".into()))?;
    tokio::task::spawn_blocking(f).await.map_err(|e| DomainError::Internal(format!("hashing task failed: {e}")))
}

/// Hashes a password on the blocking pool, behind the hashing semaphore.
pub async fn hash_password(password: &str) -> DomainResult<String> {
    let password = password.to_string();
    off_executor(move || hash_password_blocking(&password)).await?
}

/// Verifies a password on the blocking pool, behind the hashing semaphore.
pub async fn verify_password(password: &str, hash: &str) -> DomainResult<bool> {
    let (password, hash) = (password.to_string(), hash.to_string());
    off_executor(move || verify_password_blocking(&password, &hash)).await
}

/// A hash that a missing user is checked against, so a login for an unknown email costs the
/// same time as one with a wrong password.
async fn dummy_hash() -> DomainResult<&'static str> {
    static H: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    H.get_or_try_init(|| hash_password("not a password")).await.map(String::as_str)
}

/// Reads one throttle key with its row locked until the transaction ends: the upsert takes
/// PostgreSQL's row lock (so concurrent logins, in any process, queue on it), and SQLite's
/// `BEGIN IMMEDIATE` already holds the database write lock.
async fn lock_throttle(
    conn: &mut crate::store::Conn<'_>,
    key: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> DomainResult<Throttle> {
    q_opt!(
        conn,
        Throttle,
        "INSERT INTO login_throttle (key, failures, pending, window_start, lockouts, locked_until, throttled, updated_at)
         VALUES ($1, 0, 0, $2, 0, NULL, 0, $2)
         ON CONFLICT (key) DO UPDATE SET updated_at = login_throttle.updated_at
         RETURNING key, failures, pending, window_start, lockouts, locked_until, throttled, updated_at",
        key,
        at
    )?
    .ok_or_else(|| DomainError::Internal("login_throttle upsert returned no row".into()))
}

async fn save_throttle(
    conn: &mut crate::store::Conn<'_>,
    t: &Throttle,
    at: chrono::DateTime<chrono::Utc>,
) -> DomainResult<()> {
    q_exec!(
        conn,
        "UPDATE login_throttle SET failures = $1, pending = $8, window_start = $2, lockouts = $3, locked_until = $4,
             throttled = $5, updated_at = $6 WHERE key = $7",
        t.failures,
        t.window_start,
        t.lockouts,
        t.locked_until,
        t.throttled,
        at,
        &t.key,
        t.pending
    )?;
    Ok(())
}

impl Throttle {
    /// Forgets what is past remembering: failures outside the window, lock-outs after a quiet day.
    fn age(&mut self, at: chrono::DateTime<chrono::Utc>) {
        if self.updated_at < at - Duration::hours(LOCKOUT_MEMORY_HOURS) {
            self.lockouts = 0;
        }
        // A verification takes well under a second: reservations older than a quiet minute
        // belong to a process that died mid-login.
        if self.updated_at < at - Duration::minutes(1) {
            self.pending = 0;
        }
        if self.window_start < at - Duration::minutes(FAILURE_WINDOW_MINUTES) {
            self.failures = 0;
            self.window_start = at;
        }
    }

    fn locked(&self, at: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono::Utc>> {
        self.locked_until.filter(|u| *u > at)
    }

    /// Starts the next lock-out: 1 min, doubling each time, at most 15 min.
    fn lock(&mut self, at: chrono::DateTime<chrono::Utc>) -> i64 {
        self.lockouts += 1;
        let secs = LOCK_BASE_SECS.saturating_mul(1i64 << (self.lockouts - 1).clamp(0, 20)).min(LOCK_CAP_SECS);
        self.locked_until = Some(at + Duration::seconds(secs));
        self.failures = 0;
        self.window_start = at;
        self.throttled += 1;
        secs
    }
}

fn retry_after(until: chrono::DateTime<chrono::Utc>, at: chrono::DateTime<chrono::Utc>) -> u64 {
    let ms = (until - at).num_milliseconds().max(1000);
    (ms as u64).div_ceil(1000)
}

fn throttle_keys(ctx: &Ctx, email: &str) -> (String, String) {
    let ip = ctx.ip.as_deref().unwrap_or("unknown");
    let email: String = email.chars().take(320).collect();
    (format!("a:{ip}:{email}"), format!("ip:{ip}"))
}

/// Takes a login attempt's place in the throttle, before the password is looked at, in one
/// transaction holding both keys' row locks (always the account's first, then the address's,
/// so concurrent logins cannot deadlock):
/// - a key whose lock-out is running refuses (429 until it ends) and only bumps its
///   `throttled` counter: no audit row per refused request;
/// - a key with `MAX_FAILURES` (per address: `MAX_ADDRESS_FAILURES`) failures in the window
///   starts a lock-out (1 min, doubling, at most 15 min), audited once as `auth.login_locked`;
/// - failures plus attempts still being verified (`pending`) never pass that limit: of 30
///   simultaneous guesses only as many as the limit leaves get to the password check, the
///   others are refused (429, retry in a second) without starting a lock-out.
///
/// Then the attempt is pending; `settle_attempt` records how it ended.
async fn reserve_attempt(db: &Db, ctx: &Ctx, email: &str) -> DomainResult<()> {
    let (account_key, address_key) = throttle_keys(ctx, email);
    let at = now();
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let mut account = lock_throttle(&mut conn, &account_key, at).await?;
    let mut address = lock_throttle(&mut conn, &address_key, at).await?;
    let until = [account.locked(at), address.locked(at)].into_iter().flatten().max();
    if let Some(until) = until {
        for t in [&mut account, &mut address] {
            if t.locked(at).is_some() {
                t.throttled += 1;
                save_throttle(&mut conn, t, at).await?;
            }
        }
        tx.commit_quiet().await?;
        return Err(DomainError::TooManyRequests { retry_after_secs: retry_after(until, at) });
    }
    account.age(at);
    address.age(at);
    let over = if account.failures >= MAX_FAILURES {
        Some((&mut account, "account_address"))
    } else if address.failures >= MAX_ADDRESS_FAILURES {
        Some((&mut address, "address"))
    } else {
        None
    };
    if let Some((t, scope)) = over {
        let secs = t.lock(at);
        save_throttle(&mut conn, t, at).await?;
        let ip = ctx.ip.as_deref().unwrap_or("unknown");
        let details = json!({"scope": scope, "ip": ip, "lockouts": t.lockouts, "locked_for_secs": secs});
        let email: String = email.chars().take(320).collect();
        write_audit(&mut conn, ctx, "auth.login_locked", "user", Some(email), None, Some(details)).await?;
        tx.commit_quiet().await?;
        return Err(DomainError::TooManyRequests { retry_after_secs: secs as u64 });
    }
    if account.failures + account.pending >= MAX_FAILURES || address.failures + address.pending >= MAX_ADDRESS_FAILURES
    {
        for t in [&mut account, &mut address] {
            t.throttled += 1;
            save_throttle(&mut conn, t, at).await?;
        }
        tx.commit_quiet().await?;
        return Err(DomainError::TooManyRequests { retry_after_secs: 1 });
    }
    account.pending += 1;
    address.pending += 1;
    save_throttle(&mut conn, &account, at).await?;
    save_throttle(&mut conn, &address, at).await?;
    tx.commit_quiet().await
}

/// Ends a pending attempt, in the caller's transaction (the account's key first, as in
/// `reserve_attempt`). A failure counts on both keys; a success forgives the pair's history
/// (failures and lock-outs) and leaves the address's failures as they were.
async fn settle_attempt(conn: &mut crate::store::Conn<'_>, ctx: &Ctx, email: &str, ok: bool) -> DomainResult<()> {
    let (account_key, address_key) = throttle_keys(ctx, email);
    let at = now();
    let failed = if ok { 0i64 } else { 1i64 };
    if ok {
        q_exec!(
            conn,
            "UPDATE login_throttle SET failures = 0, lockouts = 0,
                 pending = CASE WHEN pending > 0 THEN pending - 1 ELSE 0 END, updated_at = $2 WHERE key = $1",
            &account_key,
            at
        )?;
    }
    for key in if ok { vec![&address_key] } else { vec![&account_key, &address_key] } {
        q_exec!(
            conn,
            "UPDATE login_throttle SET failures = failures + $3,
                 pending = CASE WHEN pending > 0 THEN pending - 1 ELSE 0 END, updated_at = $2 WHERE key = $1",
            key,
            at,
            failed
        )?;
    }
    Ok(())
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

/// Checks a password, throttled per (account, address) and per address (see
/// `reserve_attempt`): past the limit the caller is told to wait (429) before the password is
/// even looked at. A correct password from an address that has not failed is never held up by
/// failures elsewhere, so nobody can lock the real owner out from another address.
pub async fn login(db: &Db, ctx: &Ctx, email: &str, password: &str) -> DomainResult<Session> {
    let email = email.trim().to_lowercase();
    reserve_attempt(db, ctx, &email).await?;
    let user = find_by_email(&mut db.acquire().await?.conn(), &email).await?;
    let ok = match &user {
        Some(u) => verify_password(password, &u.password_hash).await? && u.active,
        None => {
            verify_password(password, dummy_hash().await?).await?;
            false
        }
    };
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let Some(user) = user.filter(|_| ok) else {
        settle_attempt(&mut conn, ctx, &email, false).await?;
        write_audit(&mut conn, ctx, "auth.login_failed", "user", Some(email.clone()), None, None).await?;
        tx.commit().await?;
        return Err(DomainError::Unauthorized("wrong email or password".into()));
    };
    settle_attempt(&mut conn, ctx, &email, true).await?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn parameters_are_pinned_and_old_hashes_still_verify() {
        let h = hash_password_blocking("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password_blocking("correct horse", &h));
        assert!(!verify_password_blocking("wrong horse", &h));
        // A hash made with other parameters (the crate's defaults, or weaker ones) verifies by
        // the parameters it carries.
        use argon2::password_hash::{PasswordHasher, SaltString};
        let weak = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(4096, 1, 1, None).unwrap(),
        );
        let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
        let old = weak.hash_password(b"old secret", &salt).unwrap().to_string();
        assert!(old.starts_with("$argon2id$v=19$m=4096,t=1,p=1$"), "{old}");
        assert!(verify_password_blocking("old secret", &old));
        assert!(!verify_password_blocking("other", &old));
    }

    /// On a one-thread runtime a verification that ran on the executor would stop every other
    /// task until it ends; on the blocking pool the executor keeps ticking.
    #[tokio::test(flavor = "current_thread")]
    async fn hashing_leaves_the_executor_free() {
        let h = hash_password("correct horse").await.unwrap();
        let ticks = Arc::new(AtomicUsize::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        tokio::task::yield_now().await;
        let started = std::time::Instant::now();
        for _ in 0..4 {
            assert!(verify_password("correct horse", &h).await.unwrap());
        }
        let elapsed = started.elapsed();
        ticker.abort();
        let n = ticks.load(Ordering::Relaxed);
        assert!(elapsed.as_millis() >= 10, "four verifications take a while: {elapsed:?}");
        assert!(n >= 5, "the executor ran other tasks during {elapsed:?} of hashing: {n} ticks");
    }
}
