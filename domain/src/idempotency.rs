//! Idempotency keys: the same key and body within 24 hours get the first answer again, without
//! doing the work twice; the same key with another body is refused.

use chrono::Duration;
use sqlx::FromRow;

use crate::error::DomainResult;
use crate::store::Db;
use crate::{now, q_exec, q_opt};

pub const TTL_HOURS: i64 = 24;

#[derive(Debug, PartialEq)]
pub enum Begin {
    /// First use: do the work, then `finish` (or `abandon` on a server error).
    New,
    /// Seen before with the same request: answer this.
    Replay { status: u16, body: String },
    /// Seen before with another request.
    Mismatch,
    /// The first request with this key is still running.
    InProgress,
}

#[derive(FromRow)]
struct Row {
    request_hash: String,
    status: i64,
    body: String,
    created_at: chrono::DateTime<chrono::Utc>,
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
    let inserted = q_exec!(
        &mut conn,
        "INSERT INTO idempotency_keys (key, actor, request_hash, status, body, created_at) VALUES ($1, $2, $3, 0, '', $4)
         ON CONFLICT (actor, key) DO NOTHING",
        key,
        actor,
        request_hash,
        now()
    )?;
    let out = if inserted == 1 {
        Begin::New
    } else {
        let row = q_opt!(
            &mut conn,
            Row,
            "SELECT request_hash, status, body, created_at FROM idempotency_keys WHERE actor = $1 AND key = $2",
            actor,
            key
        )?;
        match row {
            Some(r) if r.request_hash != request_hash => Begin::Mismatch,
            Some(r) if r.status == 0 => {
                let _ = r.created_at;
                Begin::InProgress
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
        "UPDATE idempotency_keys SET status = $1, body = $2 WHERE actor = $3 AND key = $4",
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
