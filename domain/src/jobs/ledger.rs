//! What the queues leave in the database: dead jobs (kept with their error, retryable),
//! per-minute outcome counters and the outbox's lag.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::FromRow;
use sqlx::types::Json;
use uuid::Uuid;

use crate::commands::exceptions::{self, NewException};
use crate::commands::{authorize, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::policy::Permission;
use crate::store::Db;
use crate::{Ctx, new_id, now, q_all, q_exec, q_opt};

use super::kind::{Queue, QueueBackend};

pub const QUEUES: [&str; 3] = ["critical", "ops", "heavy"];

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct DeadJob {
    pub id: Uuid,
    pub queue: String,
    pub kind: String,
    pub job: Json<Value>,
    pub attempts: i64,
    pub error: String,
    pub died_at: DateTime<Utc>,
    pub retried_at: Option<DateTime<Utc>>,
}

/// Live numbers a backend knows about one queue.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LiveQueue {
    pub pending: i64,
    pub scheduled: i64,
    pub running: i64,
    pub live_workers: i64,
    pub oldest_pending_age_secs: Option<i64>,
}

pub fn queue_name(q: &str) -> DomainResult<Queue> {
    Queue::parse(q).ok_or(DomainError::NotFound { entity: "queue" })
}

/// Keeps a job that exhausted its attempts and tells an operator: a job_failed exception
/// (notifications raise their own notification_failed instead).
pub async fn record_dead(
    db: &Db,
    queue: &str,
    kind: &str,
    job: Value,
    attempts: i64,
    error: &str,
    raise: bool,
) -> DomainResult<Uuid> {
    let id = new_id();
    let ctx = Ctx::system();
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    q_exec!(
        &mut conn,
        "INSERT INTO dead_jobs (id, queue, kind, job, attempts, error, died_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        id,
        queue,
        kind,
        Json(job),
        attempts,
        error,
        now()
    )?;
    if raise {
        exceptions::insert(
            &mut conn,
            &ctx,
            NewException {
                kind: "job_failed".into(),
                title: Some(format!("{kind} job on the {queue} queue failed after {attempts} attempts: {error}")),
                severity: "high".into(),
                subject_type: None,
                subject_id: None,
                assignee_id: None,
            },
        )
        .await?;
    }
    write_audit(
        &mut conn,
        &ctx,
        "job.dead",
        "job",
        Some(id.to_string()),
        None,
        Some(json!({"queue": queue, "kind": kind, "attempts": attempts, "error": error})),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

pub async fn last_dead(db: &Db, limit: i64) -> DomainResult<Vec<DeadJob>> {
    q_all!(&mut db.acquire().await?.conn(), DeadJob, "SELECT * FROM dead_jobs ORDER BY id DESC LIMIT $1", limit)
}

/// Marks a dead job retried and hands its JSON back to be pushed again. A job already retried
/// is refused (409), so two clicks do not run it twice.
pub async fn retry_dead(
    db: &Db,
    ctx: &Ctx,
    backend: &dyn QueueBackend,
    queue: &str,
    id: Uuid,
) -> DomainResult<DeadJob> {
    authorize(db, ctx, Permission::SystemManage, "job").await?;
    let queue = queue_name(queue)?;
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let dead = q_opt!(&mut conn, DeadJob, "SELECT * FROM dead_jobs WHERE id = $1 AND queue = $2", id, queue.as_str())?
        .ok_or(DomainError::NotFound { entity: "dead job" })?;
    if dead.retried_at.is_some() {
        return Err(DomainError::Duplicate("this dead job was already retried".into()));
    }
    q_exec!(&mut conn, "UPDATE dead_jobs SET retried_at = $1 WHERE id = $2 AND retried_at IS NULL", now(), id)?;
    write_audit(
        &mut conn,
        ctx,
        "job.retried",
        "job",
        Some(id.to_string()),
        None,
        Some(json!({"queue": queue.as_str(), "kind": dead.kind})),
    )
    .await?;
    // Pushed before the commit: if the push fails the job stays dead and retryable.
    backend.requeue(queue, dead.job.0.clone()).await?;
    tx.commit().await?;
    Ok(dead)
}

/// Outcomes counted in memory by a worker process, added to the per-minute rows.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub done: i64,
    pub failed: i64,
    pub retried: i64,
    pub dead: i64,
}

pub fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::minutes(1)).unwrap_or(t)
}

pub async fn add_counts(db: &Db, queue: &str, minute: DateTime<Utc>, c: &Counts) -> DomainResult<()> {
    let mut tx = db.begin().await?;
    q_exec!(
        &mut tx.conn(),
        "INSERT INTO job_stats (queue, minute, done, failed, retried, dead) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (queue, minute) DO UPDATE SET done = job_stats.done + excluded.done, failed = job_stats.failed + excluded.failed,
             retried = job_stats.retried + excluded.retried, dead = job_stats.dead + excluded.dead",
        queue,
        minute,
        c.done,
        c.failed,
        c.retried,
        c.dead
    )?;
    tx.commit().await
}

#[derive(FromRow)]
struct Sums {
    done: Option<i64>,
    failed: Option<i64>,
    retried: Option<i64>,
    dead: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct QueueStats {
    pub done_60m: i64,
    pub failed_60m: i64,
    pub retried_60m: i64,
    pub dead_60m: i64,
    pub per_min_5m: f64,
    pub per_min_60m: f64,
    pub dead_total: i64,
}

#[derive(FromRow)]
struct N {
    n: i64,
}

pub async fn stats(db: &Db, queue: &str) -> DomainResult<QueueStats> {
    let mut h = db.acquire().await?;
    let mut conn = h.conn();
    let t = now();
    let sum = async |conn: &mut crate::store::Conn<'_>, minutes: i64| -> DomainResult<Sums> {
        crate::q_one!(
            conn,
            Sums,
            "SELECT CAST(SUM(done) AS BIGINT) AS done, CAST(SUM(failed) AS BIGINT) AS failed, CAST(SUM(retried) AS BIGINT) AS retried,
                    CAST(SUM(dead) AS BIGINT) AS dead FROM job_stats
             WHERE queue = $1 AND minute > $2",
            queue,
            minute_of(t) - Duration::minutes(minutes)
        )
    };
    let h60 = sum(&mut conn, 60).await?;
    let h5 = sum(&mut conn, 5).await?;
    let dead_total = crate::q_one!(
        &mut conn,
        N,
        "SELECT COUNT(*) AS n FROM dead_jobs WHERE queue = $1 AND retried_at IS NULL",
        queue
    )?
    .n;
    Ok(QueueStats {
        done_60m: h60.done.unwrap_or(0),
        failed_60m: h60.failed.unwrap_or(0),
        retried_60m: h60.retried.unwrap_or(0),
        dead_60m: h60.dead.unwrap_or(0),
        per_min_5m: h5.done.unwrap_or(0) as f64 / 5.0,
        per_min_60m: h60.done.unwrap_or(0) as f64 / 60.0,
        dead_total,
    })
}

/// The outbox's backlog: events not yet dispatched and the age of the oldest.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OutboxLag {
    pub undispatched: i64,
    pub oldest_age_secs: Option<i64>,
}

#[derive(FromRow)]
struct Oldest {
    occurred_at: DateTime<Utc>,
}

pub async fn outbox_lag(db: &Db) -> DomainResult<OutboxLag> {
    let mut h = db.acquire().await?;
    let mut conn = h.conn();
    let n = crate::q_one!(&mut conn, N, "SELECT COUNT(*) AS n FROM domain_events WHERE dispatched_at IS NULL")?.n;
    let oldest = q_opt!(
        &mut conn,
        Oldest,
        "SELECT occurred_at FROM domain_events WHERE dispatched_at IS NULL ORDER BY id LIMIT 1"
    )?;
    Ok(OutboxLag { undispatched: n, oldest_age_secs: oldest.map(|o| (now() - o.occurred_at).num_seconds().max(0)) })
}
