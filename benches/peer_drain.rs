//! The queue layer's drain rate, for `benches/peers/run`: N no-op jobs through Virel's own
//! queue layer and worker pools, against the storage's raw limit measured in the same run.
//!
//! `BENCH_MODE=redis` (apalis-redis on `REDIS_TEST_URL`, under a random key prefix) or
//! `sqlite` (apalis-sqlite, the embedded mode's queue file in a temporary folder). Each run
//! pushes `BENCH_N` (100,000) `Custom` jobs with a registered no-op handler onto the ops
//! queue, then starts the pools of one `virel workers` process with the default configuration
//! (`WorkerConfig::default()`: critical 8 / ops 16 / heavy 2, poll 25 ms, plus the relay) and
//! times from their start to the N-th completed handler. One uncounted warm-up run of
//! `BENCH_WARMUP` jobs (N/10, at least 1,000) comes first, then `BENCH_RUNS` (5) runs; the
//! median is printed as one JSON line `{"system": ..., "jobs_per_s": ...}`.
//! In `sqlite` mode it also prints the SQLite commit limit: single-row INSERT commits in a
//! loop on one connection, WAL, with the queue file's own `synchronous` (OFF) and with NORMAL.
//! The state database (which no-op jobs never touch) is a SQLite file in the temporary folder.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Notify;
use virel_domain::Db;
use virel_domain::jobs::{Queue, kinds::Custom};
use virel_workers::{CustomHandler, Job, Queues, Runtime, WorkerConfig};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn redis_url() -> String {
    std::env::var("REDIS_TEST_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn delete_redis_keys(prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url())?;
    let mut c = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut c).await?;
    for k in &keys {
        let _: i64 = redis::cmd("DEL").arg(k).query_async(&mut c).await?;
        let _: i64 = redis::cmd("ZREM").arg("core:apalis:queues:list").arg(k).query_async(&mut c).await?;
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// One drain of `n` no-op jobs: jobs per second from the pools' start to the n-th handler.
async fn drain(redis: bool, n: usize) -> anyhow::Result<f64> {
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let dir = std::env::temp_dir().join(format!("virel-peer-{tag}"));
    std::fs::create_dir_all(&dir)?;
    let prefix = format!("virel-peer-{tag}");
    let res = async {
        let cfg = WorkerConfig::default();
        let queues = if redis {
            Queues::redis(&redis_url(), &prefix, &cfg.liveness).await.context("Redis (REDIS_TEST_URL)")?
        } else {
            Queues::sqlite(&dir.join("queue.db"), &cfg.liveness).await?
        };
        let db = Db::connect(&format!("sqlite://{}", dir.join("virel.db").display()), 4).await?;
        db.migrate().await?;
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let jobs: Vec<Job> =
                chunk.iter().map(|i| Job::new(&Custom { name: "noop".into(), payload: json!({ "i": i }) })).collect();
            queues.push_many(Queue::Ops, jobs).await?;
        }
        let done = Arc::new(AtomicUsize::new(0));
        let all = Arc::new(Notify::new());
        let handler: CustomHandler = {
            let (done, all) = (done.clone(), all.clone());
            Arc::new(move |_| {
                if done.fetch_add(1, Ordering::Relaxed) + 1 == n {
                    all.notify_one();
                }
                Box::pin(async { Ok(()) })
            })
        };
        let rt = Arc::new(Runtime::new(db.clone(), queues.clone(), cfg.retry.clone()).with_handler("noop", handler));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let started = Instant::now();
        let workers = tokio::spawn(virel_workers::run(rt, cfg, stop_rx));
        let finished = tokio::time::timeout(Duration::from_secs(1800), all.notified()).await;
        let elapsed = started.elapsed();
        let _ = stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(40), workers).await;
        db.close().await;
        finished
            .map_err(|_| anyhow::anyhow!("only {} of {n} jobs done in 30 minutes", done.load(Ordering::Relaxed)))?;
        Ok(n as f64 / elapsed.as_secs_f64())
    }
    .await;
    if redis && let Err(e) = delete_redis_keys(&prefix).await {
        eprintln!("warning: cannot delete Redis keys {prefix}:*: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    res
}

/// Single-row INSERT commits per second on one connection, WAL, `synchronous` as given.
async fn sqlite_commits(n: usize, synchronous: sqlx::sqlite::SqliteSynchronous) -> anyhow::Result<f64> {
    let dir = std::env::temp_dir().join(format!("virel-peer-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let res = async {
        let mut c = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.join("limit.db"))
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .connect()
            .await?;
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)").execute(&mut c).await?;
        let started = Instant::now();
        for i in 0..n as i64 {
            let mut tx = c.begin().await?;
            sqlx::query("INSERT INTO t (id, v) VALUES ($1, $2)").bind(i).bind("x").execute(&mut *tx).await?;
            tx.commit().await?;
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        c.close().await?;
        Ok(rate)
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    res
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mode = std::env::var("BENCH_MODE").unwrap_or_else(|_| "redis".into());
    let redis = match mode.as_str() {
        "redis" => true,
        "sqlite" => false,
        other => anyhow::bail!("BENCH_MODE must be redis or sqlite (got {other:?})"),
    };
    let n: usize = env_or("BENCH_N", 100_000);
    let runs: usize = env_or::<usize>("BENCH_RUNS", 5).max(1);
    let warmup: usize = env_or("BENCH_WARMUP", (n / 10).max(1000));
    let w = drain(redis, warmup).await?;
    eprintln!("virel {mode}: warm-up of {warmup} jobs at {w:.0} jobs/s");
    let mut rates = Vec::new();
    for r in 0..runs {
        let rate = drain(redis, n).await?;
        eprintln!("virel {mode}: run {} of {runs}: {n} jobs at {rate:.0} jobs/s", r + 1);
        rates.push(rate);
    }
    let system = if redis { "virel (apalis-redis)" } else { "virel (apalis-sqlite)" };
    let all: Vec<i64> = rates.iter().map(|r| r.round() as i64).collect();
    println!("{}", json!({"system": system, "jobs_per_s": median(&mut rates).round(), "n": n, "runs": all}));
    if !redis {
        for (name, sync) in [
            ("sqlite commit limit (WAL, synchronous=OFF as the queue file)", sqlx::sqlite::SqliteSynchronous::Off),
            ("sqlite commit limit (WAL, synchronous=NORMAL)", sqlx::sqlite::SqliteSynchronous::Normal),
        ] {
            let _ = sqlite_commits(n.min(20_000) / 4, sync).await?;
            let mut rates = Vec::new();
            for _ in 0..runs {
                rates.push(sqlite_commits(n.min(50_000), sync).await?);
            }
            let all: Vec<i64> = rates.iter().map(|r| r.round() as i64).collect();
            println!(
                "{}",
                json!({"system": name, "jobs_per_s": median(&mut rates).round(), "unit": "commits/s", "runs": all})
            );
        }
    }
    Ok(())
}
