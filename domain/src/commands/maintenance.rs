//! Housekeeping the scheduler runs: leader leases, tick claims, retention.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::write_audit;
use crate::error::DomainResult;
use crate::store::Db;
use crate::{Ctx, now, q_exec};

/// Takes or renews the lease `name` for `holder` until `ttl` from now. True when `holder`
/// holds it: a second process gets false until the first stops renewing.
pub async fn acquire_lease(db: &Db, name: &str, holder: &str, ttl: Duration) -> DomainResult<bool> {
    let at = now();
    let mut tx = db.begin().await?;
    let n = q_exec!(
        &mut tx.conn(),
        "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
        name,
        holder,
        at + ttl,
        at
    )?;
    tx.commit().await?;
    Ok(n == 1)
}

/// Gives the lease up (on shutdown), so a standby takes over at once.
pub async fn release_lease(db: &Db, name: &str, holder: &str) -> DomainResult<()> {
    let mut tx = db.begin().await?;
    q_exec!(&mut tx.conn(), "DELETE FROM leases WHERE name = $1 AND holder = $2", name, holder)?;
    tx.commit().await
}

/// Claims one tick of a schedule. True for exactly one claimant of (schedule, tick), however
/// many schedulers race for it.
pub async fn claim_tick(db: &Db, schedule: &str, tick_at: DateTime<Utc>, holder: &str) -> DomainResult<bool> {
    let mut tx = db.begin().await?;
    let n = q_exec!(
        &mut tx.conn(),
        "INSERT INTO schedule_runs (schedule, tick_at, run_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        schedule,
        tick_at,
        holder
    )?;
    tx.commit().await?;
    Ok(n == 1)
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Purged {
    pub refresh_tokens: u64,
    pub idempotency_keys: u64,
    pub schedule_runs: u64,
    pub login_throttle: u64,
}

/// Deletes what is past keeping: refresh tokens expired for a day, idempotency keys older than
/// 24 hours, tick claims older than a week. The audit log and events are never purged here.
pub async fn purge_expired(db: &Db, ctx: &Ctx) -> DomainResult<Purged> {
    let at = now();
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let p = Purged {
        refresh_tokens: q_exec!(&mut conn, "DELETE FROM refresh_tokens WHERE expires_at < $1", at - Duration::days(1))?,
        idempotency_keys: q_exec!(
            &mut conn,
            "DELETE FROM idempotency_keys WHERE created_at < $1",
            at - Duration::hours(24)
        )?,
        schedule_runs: q_exec!(&mut conn, "DELETE FROM schedule_runs WHERE tick_at < $1", at - Duration::days(7))?,
        // A day without failures forgives an address; a running lock-out is kept.
        login_throttle: q_exec!(
            &mut conn,
            "DELETE FROM login_throttle WHERE updated_at < $1 AND pending = 0 AND (locked_until IS NULL OR locked_until < $2)",
            at - Duration::days(1),
            at
        )?,
    };
    if p.refresh_tokens + p.idempotency_keys + p.schedule_runs + p.login_throttle > 0 {
        write_audit(&mut conn, ctx, "retention.purged", "system", None, None, Some(json!(p))).await?;
    }
    tx.commit().await?;
    Ok(p)
}

#[derive(sqlx::FromRow)]
struct LeaseRow {
    holder: String,
    expires_at: DateTime<Utc>,
}

/// Who holds a lease and until when (None when nobody does).
pub async fn lease_holder(db: &Db, name: &str) -> DomainResult<Option<(String, DateTime<Utc>)>> {
    let row = crate::q_opt!(
        &mut db.acquire().await?.conn(),
        LeaseRow,
        "SELECT holder, expires_at FROM leases WHERE name = $1",
        name
    )?;
    Ok(row.filter(|r| r.expires_at > now()).map(|r| (r.holder, r.expires_at)))
}
