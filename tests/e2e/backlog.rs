//! Backlogs drain (issue 8, item 17): jobs that piled up while the workers were stopped, or
//! that all come due in the same second, run once each through Virel's real worker pools, on
//! Redis (with PostgreSQL) and on SQLite.
//!
//! apalis-redis 1.0.0 promoted every due job in one Lua `unpack`, which Redis refuses past
//! about 8,000 elements ("too many results to unpack"): every fetch failed and no job on that
//! queue ever ran again. The vendored copy (vendor/apalis-redis) promotes in bounded batches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apalis::prelude::{TaskBuilder, TaskSink};
use redis::AsyncCommands;
use serde_json::json;
use virel_domain::jobs::{Queue, kinds::Custom};
use virel_workers::{Job, Liveness, Queues, RetrySettings, Runtime, WorkerConfig};

use crate::harness::{Engine, GuardHandle, RedisGuard, fresh_db, init_tracing, redis_url};

const HANDLER: &str = "backlog_noop";

/// Which backlog jobs ran, and how often.
struct Seen {
    runs: AtomicUsize,
    by_index: Mutex<Vec<u8>>,
}

impl Seen {
    fn new(n: usize) -> Arc<Seen> {
        Arc::new(Seen { runs: AtomicUsize::new(0), by_index: Mutex::new(vec![0; n]) })
    }

    fn handler(self: &Arc<Seen>) -> virel_workers::CustomHandler {
        let seen = self.clone();
        Arc::new(move |payload| {
            let seen = seen.clone();
            Box::pin(async move {
                let i = payload["i"].as_u64().ok_or("no index")? as usize;
                if let Some(n) = seen.by_index.lock().unwrap().get_mut(i) {
                    *n = n.saturating_add(1);
                }
                seen.runs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
        })
    }

    /// Every job ran exactly once.
    fn assert_each_once(&self) {
        let by_index = self.by_index.lock().unwrap();
        let missing = by_index.iter().filter(|n| **n == 0).count();
        let twice = by_index.iter().filter(|n| **n > 1).count();
        assert_eq!((missing, twice), (0, 0), "jobs never run, jobs run more than once");
    }
}

fn job(i: usize) -> Job {
    Job::new(&Custom { name: HANDLER.into(), payload: json!({ "i": i }) })
}

/// A database and queues on `engine`, with no worker running yet.
struct Setup {
    queues: Queues,
    db: virel_domain::Db,
    liveness: Liveness,
    _db_guard: GuardHandle,
    _redis: Option<RedisGuard>,
    _dir: Option<TempDir>,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn setup(engine: Engine) -> Setup {
    init_tracing();
    let (db, db_guard) = fresh_db(engine).await;
    let liveness = Liveness { heartbeat: Duration::from_secs(1), ..Default::default() };
    match engine {
        Engine::Sqlite => {
            let dir = std::env::temp_dir().join(format!("virel-backlog-{}", uuid::Uuid::now_v7().simple()));
            std::fs::create_dir_all(&dir).unwrap();
            let queues = Queues::sqlite(&dir.join("queue.db"), &liveness).await.unwrap();
            Setup { queues, db, liveness, _db_guard: db_guard, _redis: None, _dir: Some(TempDir(dir)) }
        }
        Engine::Postgres => {
            let prefix = format!("virel-test-backlog-{}", uuid::Uuid::now_v7().simple());
            let queues = Queues::redis(&redis_url(), &prefix, &liveness).await.unwrap();
            let guard = RedisGuard { url: redis_url(), prefix };
            Setup { queues, db, liveness, _db_guard: db_guard, _redis: Some(guard), _dir: None }
        }
    }
}

/// Starts the worker pools for every queue (as `TestApp::start_full` and `virel worker` do),
/// with the counting handler registered; returns the stop switch and the pools' task.
fn start_workers(s: &Setup, seen: &Arc<Seen>) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let rt =
        Runtime::new(s.db.clone(), s.queues.clone(), RetrySettings::default()).with_handler(HANDLER, seen.handler());
    let cfg = WorkerConfig { liveness: s.liveness.clone(), ..Default::default() };
    let (tx, rx) = tokio::sync::watch::channel(false);
    let h = tokio::spawn(async move {
        let _ = virel_workers::run(Arc::new(rt), cfg, rx).await;
    });
    (tx, h)
}

/// Waits until `n` jobs ran; fails after `limit`, or sooner when nothing runs for 30 s (the
/// wedged queue of item 17 never runs another job). Returns the drain time.
async fn drained(seen: &Seen, n: usize, since: Instant, limit: Duration) -> Duration {
    let (mut last, mut last_change) = (0, Instant::now());
    loop {
        let runs = seen.runs.load(Ordering::Relaxed);
        if runs >= n {
            return since.elapsed();
        }
        if runs != last {
            (last, last_change) = (runs, Instant::now());
        }
        assert!(
            last_change.elapsed() < Duration::from_secs(30),
            "the queue is wedged: {runs} of {n} jobs ran, none in the last 30 s"
        );
        assert!(since.elapsed() < limit, "only {runs} of {n} jobs ran in {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What is left on the ops queue: pending or scheduled jobs (Redis keys, or SQLite rows).
async fn left_on_ops(q: &Queues) -> i64 {
    match q {
        Queues::Redis { conn, storages, .. } => {
            let cfg = storages[&Queue::Ops].get_config();
            let mut c = conn.clone();
            let active: i64 = c.llen(cfg.active_jobs_list()).await.unwrap();
            let scheduled: i64 = c.zcard(cfg.scheduled_jobs_set()).await.unwrap();
            active + scheduled
        }
        Queues::Sqlite { pool, .. } => {
            sqlx::query_scalar("SELECT COUNT(*) FROM Jobs WHERE job_type = 'ops' AND status <> 'Done'")
                .fetch_one(pool)
                .await
                .unwrap()
        }
    }
}

async fn due_on_ops_now(q: &Queues) -> i64 {
    match q {
        Queues::Redis { conn, storages, .. } => {
            let cfg = storages[&Queue::Ops].get_config();
            let now = chrono::Utc::now().timestamp();
            conn.clone().zcount(cfg.scheduled_jobs_set(), 0, now).await.unwrap()
        }
        Queues::Sqlite { pool, .. } => sqlx::query_scalar(
            "SELECT COUNT(*) FROM Jobs WHERE job_type = 'ops' AND status = 'Pending' AND run_at <= strftime('%s', 'now')",
        )
        .fetch_one(pool)
        .await
        .unwrap(),
    }
}

/// Pushes `jobs`, all to run at the Unix second `at`, straight onto the ops queue in bulk
/// (2,000 per call: one script call with all 20,000 can outlast the client's response timeout).
async fn push_all_at(q: &Queues, jobs: Vec<Job>, at: u64) {
    for chunk in jobs.chunks(2_000) {
        let tasks = chunk.iter().cloned().map(|j| TaskBuilder::new(j).run_at_timestamp(at).build());
        match q {
            Queues::Redis { storages, .. } => {
                let mut s = storages[&Queue::Ops].clone();
                s.push_all(futures::stream::iter(tasks)).await.unwrap();
            }
            Queues::Sqlite { storages, .. } => {
                let mut s = storages[&Queue::Ops].clone();
                s.push_all(futures::stream::iter(tasks)).await.unwrap();
            }
        }
    }
}

const BACKLOG: usize = 50_000;

/// 50,000 jobs pile up while no worker runs (a deploy, a crash); when the pools start, the
/// whole backlog runs, each job once.
async fn backlog_of_50k_due_jobs_drains(engine: Engine) {
    let s = setup(engine).await;
    let seen = Seen::new(BACKLOG);
    let pushing = Instant::now();
    for chunk in (0..BACKLOG).collect::<Vec<_>>().chunks(2_000) {
        s.queues.push_many(Queue::Ops, chunk.iter().map(|i| job(*i)).collect()).await.unwrap();
    }
    let pushed_in = pushing.elapsed();
    assert!(due_on_ops_now(&s.queues).await >= BACKLOG as i64 - 10, "the backlog is due before the workers start");

    let started = Instant::now();
    let (stop, pools) = start_workers(&s, &seen);
    let took = drained(&seen, BACKLOG, started, Duration::from_secs(60)).await;
    eprintln!("{engine:?}: {BACKLOG} due jobs pushed in {pushed_in:?}, drained in {took:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    seen.assert_each_once();
    assert_eq!(left_on_ops(&s.queues).await, 0, "nothing left on the ops queue");
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(40), pools).await;
}

const SAME_SECOND: usize = 20_000;

/// 20,000 delayed jobs (reminders, follow-ups) all come due in the same second while the
/// workers are idle; all of them run.
async fn delayed_20k_due_in_the_same_second_drain(engine: Engine) {
    let s = setup(engine).await;
    let seen = Seen::new(SAME_SECOND);
    let (stop, pools) = start_workers(&s, &seen);
    let pushing = Instant::now();
    let at = chrono::Utc::now().timestamp() as u64 + 4;
    push_all_at(&s.queues, (0..SAME_SECOND).map(job).collect(), at).await;
    let pushed_in = pushing.elapsed();
    assert!(chrono::Utc::now().timestamp() < at as i64, "pushed in {pushed_in:?}: too slow to test a future second");
    assert_eq!(seen.runs.load(Ordering::Relaxed), 0, "nothing runs early");

    let due = std::time::UNIX_EPOCH + Duration::from_secs(at);
    tokio::time::sleep(due.duration_since(std::time::SystemTime::now()).unwrap_or_default()).await;
    let since = Instant::now();
    let took = drained(&seen, SAME_SECOND, since, Duration::from_secs(60)).await;
    eprintln!("{engine:?}: {SAME_SECOND} jobs due in one second pushed in {pushed_in:?}, drained in {took:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    seen.assert_each_once();
    assert_eq!(left_on_ops(&s.queues).await, 0, "nothing left on the ops queue");
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(40), pools).await;
}

mod backlog_of_50k_due_jobs_drains {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        backlog_of_50k_due_jobs_drains(Engine::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_redis() {
        backlog_of_50k_due_jobs_drains(Engine::Postgres).await;
    }
}

mod delayed_20k_due_in_the_same_second_drain {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        delayed_20k_due_in_the_same_second_drain(Engine::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_redis() {
        delayed_20k_due_in_the_same_second_drain(Engine::Postgres).await;
    }
}
