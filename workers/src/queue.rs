//! The three queues on their backend: Redis (apalis-redis) when `REDIS_URL` is set, else a
//! SQLite file of their own beside the state database (apalis-sqlite). Producing, and reading
//! the live numbers the queue dashboard shows.

use std::collections::HashMap;
use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_core::backend::Vacuum;
use apalis_redis::RedisStorage;
use apalis_sqlite::SqliteStorage;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use sqlx::SqlitePool;
use virel_domain::jobs::{BoxFut, Job, LiveQueue, Queue, QueueBackend};
use virel_domain::{DomainError, DomainResult};

/// Liveness settings shared by producers and workers: a worker that misses
/// `missed_heartbeats` beats is dead, and its jobs in hand go back to the queue.
#[derive(Clone, Debug)]
pub struct Liveness {
    pub heartbeat: Duration,
    pub missed_heartbeats: usize,
    pub poll: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness { heartbeat: Duration::from_secs(2), missed_heartbeats: 3, poll: Duration::from_millis(25) }
    }
}

/// A job the queue backend gave up on by itself.
#[derive(Clone, Debug)]
pub struct BackendDead {
    pub queue: Queue,
    /// The backend's id for it.
    pub id: String,
    /// The job as stored (Virel's `Job` JSON, or whatever the backend held).
    pub raw: serde_json::Value,
    /// The backend's last recorded result (the error).
    pub error: String,
    pub attempts: i64,
}

#[derive(Clone)]
pub enum Queues {
    Redis { conn: ConnectionManager, url: String, prefix: String, storages: HashMap<Queue, RedisStorage<Job>> },
    Sqlite { pool: SqlitePool, storages: HashMap<Queue, SqliteStorage<Job>> },
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> DomainError {
    DomainError::Unavailable(format!("{what}: {e}"))
}

/// How many jobs one fetch takes from a queue (apalis's default is 10). Each fetch and each
/// batch of acknowledgements is a script call to Redis (a transaction on SQLite), so bigger
/// batches move jobs faster (`benches/peers/run`, no-op jobs on Redis: 19,000 jobs/s at 10,
/// 29,000 at 32, 34,000 at 64, 35,000 at 128). A process holds what it fetched until it runs
/// it (a killed one's are run again after its missed heartbeats), so the urgent queue keeps
/// smaller batches, and the heavy queue's long jobs are fetched two at a time so that one
/// process does not sit on them while another is idle. A fetch takes what there is: at low
/// load the batches are small whatever the limit.
pub fn fetch_batch(queue: &str) -> usize {
    match queue {
        "ops" => 128,
        "critical" => 32,
        _ => 2,
    }
}

pub fn redis_config(prefix: &str, queue: &str, l: &Liveness) -> apalis_redis::Config {
    apalis_redis::Config::default()
        .queue(format!("{prefix}:{queue}"))
        .heartbeat_interval(l.heartbeat)
        .missed_heartbeats(l.missed_heartbeats)
        .batch_size(fetch_batch(queue))
        // Task events on Redis pub/sub: nothing in Virel subscribes to them (its live feed has
        // its own channel), so each acknowledgement's PUBLISH is left out.
        .emit_events(false)
}

pub fn sqlite_config(queue: &str, l: &Liveness) -> apalis_sqlite::Config {
    apalis_sqlite::Config::default()
        .queue(queue)
        .heartbeat_interval(l.heartbeat)
        .missed_heartbeats(l.missed_heartbeats)
        .batch_size(fetch_batch(queue))
}

/// Fixed planner statistics for apalis-sqlite's `Jobs` table. Without them (the queue database
/// is never analysed while it holds a backlog) SQLite runs the per-batch lock
/// (`id IN json_each(..) AND status IN (..)`) through the status index and the ack
/// (`lock_by = ? AND id = ..`) through the worker index: each batch scans every pending job, or
/// every job the worker ever finished, and a 50,000-job backlog drains at ~100 jobs/s, slower as
/// it grows. With them both look jobs up by id. The numbers only describe shapes: `id` is
/// unique, a status or a worker matches many rows. (SQLite documents writing `sqlite_stat1`
/// by hand to steer the planner.)
async fn pin_sqlite_plans(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Creates `sqlite_stat1` when missing; the Workers table is small.
    sqlx::query("ANALYZE Workers").execute(&mut *tx).await?;
    sqlx::query("DELETE FROM sqlite_stat1 WHERE tbl = 'Jobs'").execute(&mut *tx).await?;
    for (idx, stat) in [
        ("sqlite_autoindex_Jobs_1", "1000000 1"),
        ("idx_jobs_status_run_at", "1000000 200000 2"),
        ("idx_jobs_job_type_status_run_at", "1000000 300000 100000 2"),
        ("idx_jobs_claimable", "1000000 300000 100000"),
        ("LIdx", "1000000 100000"),
    ] {
        sqlx::query("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('Jobs', $1, $2)")
            .bind(idx)
            .bind(stat)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

impl Queues {
    /// Redis queues under `prefix` (several deployments or test runs can share one Redis).
    pub async fn redis(url: &str, prefix: &str, l: &Liveness) -> DomainResult<Queues> {
        let conn =
            apalis_redis::connect(url).await.map_err(|e| unavailable("cannot connect to Redis (REDIS_URL)", e))?;
        let storages = Queue::ALL
            .into_iter()
            .map(|q| (q, RedisStorage::new(conn.clone()).with_config(redis_config(prefix, q.as_str(), l))))
            .collect();
        Ok(Queues::Redis { conn, url: url.to_string(), prefix: prefix.to_string(), storages })
    }

    /// SQLite queues in their own file (apalis sets its own pragmas on the pool it is given).
    pub async fn sqlite(path: &std::path::Path, l: &Liveness) -> DomainResult<Queues> {
        // WAL with synchronous=NORMAL on every connection (apalis' `setup` sets its pragmas on
        // whichever pooled connection runs them, so only on one of them).
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30));
        let open = || async {
            sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts.clone())
                .await
                .map_err(|e| unavailable("cannot open the queue database", e))
        };
        let pool = open().await?;
        SqliteStorage::setup(&pool).await.map_err(|e| unavailable("cannot prepare the queue database", e))?;
        pin_sqlite_plans(&pool).await.map_err(|e| unavailable("cannot prepare the queue database", e))?;
        // Connections read the planner statistics when they open: start afresh.
        pool.close().await;
        let pool = open().await?;
        let storages = Queue::ALL
            .into_iter()
            .map(|q| (q, SqliteStorage::new(&pool).with_config(sqlite_config(q.as_str(), l))))
            .collect();
        Ok(Queues::Sqlite { pool, storages })
    }

    /// Pushes a job on its queue, to run now or after `delay` (never earlier).
    pub async fn push(&self, job: Job, delay: Option<Duration>) -> DomainResult<()> {
        match delay {
            None => self.push_task(job.queue, TaskBuilder::new(job)).await,
            Some(d) => self.push_between(job, d, d).await,
        }
    }

    /// Pushes a job to run after a wait between `lo` and `hi` (a retry's backoff window),
    /// at an instant drawn uniformly from the window (`run_at_in`).
    pub async fn push_between(&self, job: Job, lo: Duration, hi: Duration) -> DomainResult<()> {
        let at = run_at_in(std::time::SystemTime::now(), lo, hi, &mut rand::thread_rng());
        self.push_task(job.queue, TaskBuilder::new(job).run_at_timestamp(at)).await
    }

    async fn push_task(&self, queue: Queue, task: TaskBuilder<Job>) -> DomainResult<()> {
        let task = task.build();
        match self {
            Queues::Redis { storages, .. } => {
                let mut s = storages.get(&queue).cloned().ok_or(DomainError::NotFound { entity: "queue" })?;
                s.push_task(task).await.map_err(|e| unavailable("cannot push to Redis", e))
            }
            Queues::Sqlite { storages, .. } => {
                let mut s = storages.get(&queue).cloned().ok_or(DomainError::NotFound { entity: "queue" })?;
                s.push_task(task).await.map_err(|e| unavailable("cannot push to the queue database", e))
            }
        }
    }

    /// Pushes several jobs onto one queue at once (one round trip on Redis), to run now.
    pub async fn push_many(&self, queue: Queue, jobs: Vec<Job>) -> DomainResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        match self {
            Queues::Redis { storages, .. } => {
                let mut s = storages.get(&queue).cloned().ok_or(DomainError::NotFound { entity: "queue" })?;
                // A bounded script call each: one carrying tens of thousands of jobs can outlast
                // the client's response timeout.
                let mut jobs = jobs;
                while !jobs.is_empty() {
                    let rest = jobs.split_off(jobs.len().min(1000));
                    s.push_bulk(std::mem::replace(&mut jobs, rest))
                        .await
                        .map_err(|e| unavailable("cannot push to Redis", e))?;
                }
                Ok(())
            }
            Queues::Sqlite { storages, .. } => {
                let mut s = storages.get(&queue).cloned().ok_or(DomainError::NotFound { entity: "queue" })?;
                s.push_bulk(jobs).await.map_err(|e| unavailable("cannot push to the queue database", e))
            }
        }
    }

    /// The Redis channel that carries live changes between processes, and its URL.
    pub fn live_channel(&self) -> Option<(String, String)> {
        match self {
            Queues::Redis { url, prefix, .. } => Some((url.clone(), format!("{prefix}:live"))),
            Queues::Sqlite { .. } => None,
        }
    }

    /// Publishes relayed changes to the other processes (Redis); in-process views already have them.
    pub async fn publish_live(&self, changes: &[virel_domain::outbox::Change]) -> DomainResult<()> {
        if let (Queues::Redis { conn, .. }, Some((_, channel))) = (self, self.live_channel())
            && !changes.is_empty()
        {
            let msg = serde_json::to_string(changes).map_err(|e| DomainError::Internal(e.to_string()))?;
            let _: i64 = conn.clone().publish(channel, msg).await.map_err(|e| unavailable("Redis publish", e))?;
        }
        Ok(())
    }

    /// Forgets finished jobs older than `age` (their payloads, results and ids): the queue keeps
    /// what is pending, running or scheduled; outcomes live in the database's counters.
    pub async fn vacuum(&self, age: Duration) -> DomainResult<u64> {
        match self {
            Queues::Redis { conn, storages, .. } => {
                let mut n = 0u64;
                for s in storages.values() {
                    let mut s = s.clone();
                    n += s.vacuum_before(age).await.map_err(|e| unavailable("Redis vacuum", e))? as u64;
                    let done = s.get_config().done_jobs_set();
                    let _: i64 = conn.clone().del(done).await.map_err(|e| unavailable("Redis vacuum", e))?;
                }
                Ok(n)
            }
            Queues::Sqlite { pool, .. } => {
                let before = chrono::Utc::now().timestamp() - age.as_secs() as i64;
                let r = sqlx::query("DELETE FROM Jobs WHERE status IN ('Done', 'Killed', 'Failed') AND done_at < $1")
                    .bind(before)
                    .execute(pool)
                    .await
                    .map_err(|e| unavailable("queue database vacuum", e))?;
                Ok(r.rows_affected())
            }
        }
    }

    /// Claims up to `limit` jobs the backend itself gave up on (apalis-redis' `{queue}:dead`
    /// set, apalis-sqlite's killed rows and failed rows out of attempts), removing them from
    /// the backend. This happens when Virel could not record an outcome (its database was down
    /// while the backend retried), so the caller records each in `dead_jobs`, and gives it
    /// back with `unclaim_backend_dead` if it cannot.
    pub async fn claim_backend_dead(&self, limit: usize) -> DomainResult<Vec<BackendDead>> {
        let mut out = Vec::new();
        match self {
            Queues::Redis { conn, storages, .. } => {
                let mut c = conn.clone();
                let err = |e: redis::RedisError| unavailable("Redis", e);
                for (q, s) in storages {
                    let cfg = s.get_config();
                    let ids: Vec<String> = redis::cmd("SRANDMEMBER")
                        .arg(cfg.dead_jobs_set())
                        .arg(limit)
                        .query_async(&mut c)
                        .await
                        .map_err(err)?;
                    for id in ids {
                        // SREM is the claim: of two sweeping processes, one gets 1.
                        let claimed: i64 = c.srem(cfg.dead_jobs_set(), &id).await.map_err(err)?;
                        if claimed == 0 {
                            continue;
                        }
                        let data: Option<Vec<u8>> = c.hget(cfg.job_data_hash(), &id).await.map_err(err)?;
                        let meta_key = format!("{}:{id}", cfg.job_meta_hash());
                        let (result, attempts): (Option<String>, Option<i64>) = redis::cmd("HMGET")
                            .arg(&meta_key)
                            .arg("result")
                            .arg("attempts")
                            .query_async(&mut c)
                            .await
                            .map_err(err)?;
                        let _: i64 = c.hdel(cfg.job_data_hash(), &id).await.map_err(err)?;
                        let _: i64 = c.del(&meta_key).await.map_err(err)?;
                        out.push(BackendDead {
                            queue: *q,
                            id,
                            raw: data
                                .as_deref()
                                .and_then(|d| serde_json::from_slice(d).ok())
                                .unwrap_or(serde_json::Value::Null),
                            error: result.unwrap_or_default(),
                            attempts: attempts.unwrap_or(0),
                        });
                    }
                }
            }
            Queues::Sqlite { pool, .. } => {
                #[derive(sqlx::FromRow)]
                struct Row {
                    id: String,
                    job_type: String,
                    job: Vec<u8>,
                    last_result: Option<String>,
                    attempts: i64,
                }
                let rows: Vec<Row> = sqlx::query_as(
                    "DELETE FROM Jobs WHERE id IN (SELECT id FROM Jobs WHERE status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts) LIMIT $1)
                     RETURNING id, job_type, job, last_result, attempts",
                )
                .bind(limit as i64)
                .fetch_all(pool)
                .await
                .map_err(|e| unavailable("queue database", e))?;
                for r in rows {
                    out.push(BackendDead {
                        queue: Queue::parse(&r.job_type).unwrap_or(Queue::Ops),
                        id: r.id,
                        raw: serde_json::from_slice(&r.job).unwrap_or(serde_json::Value::Null),
                        error: r.last_result.unwrap_or_default(),
                        attempts: r.attempts,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Puts a claimed job back where `claim_backend_dead` found it (its recording failed).
    pub async fn unclaim_backend_dead(&self, d: &BackendDead) -> DomainResult<()> {
        let bytes = serde_json::to_vec(&d.raw).map_err(|e| DomainError::Internal(e.to_string()))?;
        match self {
            Queues::Redis { conn, storages, .. } => {
                let cfg = storages.get(&d.queue).ok_or(DomainError::NotFound { entity: "queue" })?.get_config();
                let mut c = conn.clone();
                let err = |e: redis::RedisError| unavailable("Redis", e);
                let _: i64 = c.hset(cfg.job_data_hash(), &d.id, bytes).await.map_err(err)?;
                let _: i64 = c.sadd(cfg.dead_jobs_set(), &d.id).await.map_err(err)?;
            }
            Queues::Sqlite { pool, .. } => {
                sqlx::query("INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, last_result) VALUES ($1, $2, $3, 'Killed', $4, $4, $5)")
                    .bind(bytes)
                    .bind(&d.id)
                    .bind(d.queue.as_str())
                    .bind(d.attempts)
                    .bind(&d.error)
                    .execute(pool)
                    .await
                    .map_err(|e| unavailable("queue database", e))?;
            }
        }
        Ok(())
    }

    async fn live_numbers(&self, queue: Queue) -> DomainResult<LiveQueue> {
        match self {
            Queues::Redis { conn, storages, .. } => {
                let cfg = storages.get(&queue).ok_or(DomainError::NotFound { entity: "queue" })?.get_config().clone();
                let mut c = conn.clone();
                let err = |e: redis::RedisError| unavailable("Redis", e);
                // Pushed jobs wait in the scheduled set until a fetch promotes them: those due
                // already are pending too.
                let now = chrono::Utc::now().timestamp();
                let active: i64 = c.llen(cfg.active_jobs_list()).await.map_err(err)?;
                let due: i64 = c.zcount(cfg.scheduled_jobs_set(), "-inf", now).await.map_err(err)?;
                let scheduled: i64 =
                    c.zcount(cfg.scheduled_jobs_set(), format!("({now}"), "+inf").await.map_err(err)?;
                let pending = active + due;
                let alive_since = now - cfg.orphaned_duration().as_secs() as i64;
                let workers: Vec<String> =
                    c.zrangebyscore(cfg.workers_set(), alive_since, "+inf").await.map_err(err)?;
                let mut running = 0i64;
                for w in &workers {
                    let n: i64 = c.scard(format!("{}:{w}", cfg.inflight_jobs_set())).await.map_err(err)?;
                    running += n;
                }
                // The oldest pending job is at the tail of the active list.
                let oldest_id: Option<String> = c.lindex(cfg.active_jobs_list(), -1).await.map_err(err)?;
                let oldest_pending_age_secs = match oldest_id {
                    Some(id) => {
                        let data: Option<Vec<u8>> = c.hget(cfg.job_data_hash(), id).await.map_err(err)?;
                        data.and_then(|d| serde_json::from_slice::<Job>(&d).ok())
                            .map(|j| (chrono::Utc::now() - j.enqueued_at).num_seconds().max(0))
                    }
                    None => None,
                };
                Ok(LiveQueue {
                    pending,
                    scheduled,
                    running,
                    live_workers: workers.len() as i64,
                    oldest_pending_age_secs,
                })
            }
            Queues::Sqlite { pool, .. } => {
                #[derive(sqlx::FromRow)]
                struct Row {
                    pending: Option<i64>,
                    scheduled: Option<i64>,
                    running: Option<i64>,
                    oldest: Option<i64>,
                }
                let now = chrono::Utc::now().timestamp();
                let r: Row = sqlx::query_as(
                    "SELECT SUM(status = 'Pending' AND run_at <= $2) AS pending, SUM(status = 'Pending' AND run_at > $2) AS scheduled,
                            SUM(status IN ('Queued', 'Running')) AS running, MIN(CASE WHEN status = 'Pending' AND run_at <= $2 THEN run_at END) AS oldest
                     FROM Jobs WHERE job_type = $1",
                )
                .bind(queue.as_str())
                .bind(now)
                .fetch_one(pool)
                .await
                .map_err(|e| unavailable("queue database", e))?;
                #[derive(sqlx::FromRow)]
                struct W {
                    n: i64,
                }
                let w: W =
                    sqlx::query_as("SELECT COUNT(*) AS n FROM Workers WHERE worker_type = $1 AND last_seen > $2")
                        .bind(queue.as_str())
                        .bind(now - 30)
                        .fetch_one(pool)
                        .await
                        .map_err(|e| unavailable("queue database", e))?;
                Ok(LiveQueue {
                    pending: r.pending.unwrap_or(0),
                    scheduled: r.scheduled.unwrap_or(0),
                    running: r.running.unwrap_or(0),
                    live_workers: w.n,
                    oldest_pending_age_secs: r.oldest.map(|t| (now - t).max(0)),
                })
            }
        }
    }
}

impl QueueBackend for Queues {
    fn name(&self) -> &'static str {
        match self {
            Queues::Redis { .. } => "redis",
            Queues::Sqlite { .. } => "sqlite",
        }
    }

    fn push(&self, job: Job, delay: Option<Duration>) -> BoxFut<'_, DomainResult<()>> {
        Box::pin(Queues::push(self, job, delay))
    }

    fn push_many(&self, queue: Queue, jobs: Vec<Job>) -> BoxFut<'_, DomainResult<()>> {
        Box::pin(Queues::push_many(self, queue, jobs))
    }

    fn live(&self, queue: Queue) -> BoxFut<'_, DomainResult<LiveQueue>> {
        Box::pin(self.live_numbers(queue))
    }

    fn vacuum(&self, age: Duration) -> BoxFut<'_, DomainResult<u64>> {
        Box::pin(Queues::vacuum(self, age))
    }
}

/// The Unix second a job waiting between `lo` and `hi` from `now` is scheduled at. The
/// backends schedule in whole seconds, so it is a whole second drawn uniformly from those
/// inside the window: the job then starts within the window (plus the pools' poll), where
/// rounding a drawn instant up would make a 1–2 s wait up to 3 s. A window without a whole
/// second in it rounds its start up: never early.
pub fn run_at_in(now: std::time::SystemTime, lo: Duration, hi: Duration, rng: &mut impl rand::Rng) -> u64 {
    let secs = |d: Duration| (now + d).duration_since(std::time::UNIX_EPOCH).map(|t| t.as_secs_f64()).unwrap_or(0.0);
    let (first, last) = (secs(lo).ceil() as u64, secs(hi.max(lo)).floor() as u64);
    if last <= first { first } else { rng.gen_range(first..=last) }
}

#[cfg(test)]
mod tests {
    use super::run_at_in;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn a_retry_is_scheduled_at_a_whole_second_inside_its_window() {
        let now = UNIX_EPOCH + Duration::from_millis(1_000_300); // 1000.3 s
        let mut rng = rand::thread_rng();
        for _ in 0..200 {
            // 1–2 s: only 1002 (1.7 s) lies inside; rounding a drawn 1.8 s up would give 1003.
            assert_eq!(run_at_in(now, Duration::from_secs(1), Duration::from_secs(2), &mut rng), 1002);
            let at = run_at_in(now, Duration::from_secs(4), Duration::from_secs(8), &mut rng);
            assert!((1005..=1008).contains(&at), "4–8 s from 1000.3: {at}");
        }
        // A window with no whole second in it is never early.
        assert_eq!(run_at_in(now, Duration::from_millis(200), Duration::from_millis(500), &mut rng), 1001);
        assert_eq!(run_at_in(now, Duration::ZERO, Duration::ZERO, &mut rng), 1001);
        let drawn: std::collections::HashSet<u64> = (0..200)
            .map(|_| run_at_in(SystemTime::UNIX_EPOCH, Duration::from_secs(10), Duration::from_secs(20), &mut rng))
            .collect();
        assert!(drawn.len() > 5, "spread over the window: {drawn:?}");
    }
}
