//! Idempotency keys: the same key and body within 24 hours get the first answer again, without
//! doing the work twice; the same key with another body is refused.
//!
//! A running key holds a short lease (`LEASE_SECS`, renewed while the request runs). A request
//! that died mid-way (a crash, a killed process) leaves its key unfinished; once the lease has
//! lapsed, a retry with the same key and body takes the key over and does the request again,
//! instead of being refused for 24 hours. While the lease is live a duplicate is refused (409).
//!
//! Where the answer is recorded: right after the work, not in the work's own transaction.
//! Recording it there would mean threading the key and the not-yet-rendered response through
//! every domain command's transaction (the response is only rendered by the API after the
//! commit). Instead:
//! - the API runs a keyed request to its end on its own task, so a client that hangs up cannot
//!   cancel it between the work's commit and the recording of its answer;
//! - a server error, or an error before the handler answered, forgets the key (`abandon`): the
//!   work did not happen, and the retry is a first attempt;
//! - what is left is a process dying in the instant between the work's commit and `finish`.
//!   A retry then redoes the request, and that redo meets the state the first one left: version
//!   and status guards refuse a repeated transition (409 `version_conflict` or
//!   `invalid_transition`, not a second transition), natural keys refuse a duplicate client; only
//!   a create without a natural key could be made twice, in that one window.

use chrono::Duration;
use sqlx::FromRow;

use crate::error::DomainResult;
use crate::store::Db;
use crate::{now, q_exec, q_opt};

pub const TTL_HOURS: i64 = 24;
/// How long a running request owns its key without renewing it.
pub const LEASE_SECS: i64 = 30;
/// How often a running request renews its lease.
pub const RENEW_SECS: u64 = 10;

#[derive(Debug, PartialEq)]
pub enum Begin {
    /// First use, or a retry of a request whose lease lapsed: do the work, `renew` the lease
    /// while it runs, then `finish` (or `abandon` on a server error).
    New,
    /// Seen before with the same request: answer this.
    Replay { status: u16, body: String },
    /// Seen before with another request.
    Mismatch,
    /// The first request with this key is still running (its lease is live).
    InProgress,
}

#[derive(FromRow)]
struct Row {
    request_hash: String,
    status: i64,
    body: String,
    lease_until: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn begin(db: &Db, actor: &str, key: &str, request_hash: &str) -> DomainResult<Begin> {
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    q_exec!(
        &mut conn,
        "DELETE FROM idempotency_keys WHERE actor = $1 AND key = $2 AND created_at < $3",
        actor,
        key,
        now() - Duration::hours(TTL_HOURS)
    )?;
    let at = now();
    let lease = at + Duration::seconds(LEASE_SECS);
    let inserted = q_exec!(
        &mut conn,
        "INSERT INTO idempotency_keys (key, actor, request_hash, status, body, created_at, lease_until)
         VALUES ($1, $2, $3, 0, '', $4, $5)
         ON CONFLICT (actor, key) DO NOTHING",
        key,
        actor,
        request_hash,
        at,
        lease
    )?;
    let out = if inserted == 1 {
        Begin::New
    } else {
        let row = q_opt!(
            &mut conn,
            Row,
            "SELECT request_hash, status, body, lease_until FROM idempotency_keys WHERE actor = $1 AND key = $2",
            actor,
            key
        )?;
        match row {
            Some(r) if r.request_hash != request_hash => Begin::Mismatch,
            Some(r) if r.status == 0 && r.lease_until.is_some_and(|l| l > at) => Begin::InProgress,
            Some(r) if r.status == 0 => {
                // The request that held it died: take the key over (one taker wins).
                let taken = q_exec!(
                    &mut conn,
                    "UPDATE idempotency_keys SET lease_until = $1
                     WHERE actor = $2 AND key = $3 AND status = 0 AND (lease_until IS NULL OR lease_until <= $4)",
                    lease,
                    actor,
                    key,
                    at
                )?;
                if taken == 1 { Begin::New } else { Begin::InProgress }
            }
            Some(r) => Begin::Replay { status: r.status as u16, body: r.body },
            None => Begin::InProgress,
        }
    };
    tx.commit_quiet().await?;
    Ok(out)
}

pub async fn finish(db: &Db, actor: &str, key: &str, status: u16, body: &str) -> DomainResult<()> {
    let mut tx = db.begin().await?;
    q_exec!(
        &mut tx.conn(),
        "UPDATE idempotency_keys SET status = $1, body = $2, lease_until = NULL WHERE actor = $3 AND key = $4",
        i64::from(status),
        body,
        actor,
        key
    )?;
    tx.commit_quiet().await
}

/// Forgets a key whose request failed on the server side, so the client may try again.
pub async fn abandon(db: &Db, actor: &str, key: &str) -> DomainResult<()> {
    let mut tx = db.begin().await?;
    q_exec!(&mut tx.conn(), "DELETE FROM idempotency_keys WHERE actor = $1 AND key = $2 AND status = 0", actor, key)?;
    tx.commit_quiet().await
}

/// Extends a running request's lease (it is still working on the key).
pub async fn renew(db: &Db, actor: &str, key: &str) -> DomainResult<()> {
    let mut tx = db.begin().await?;
    q_exec!(
        &mut tx.conn(),
        "UPDATE idempotency_keys SET lease_until = $1 WHERE actor = $2 AND key = $3 AND status = 0",
        now() + Duration::seconds(LEASE_SECS),
        actor,
        key
    )?;
    tx.commit_quiet().await
}
