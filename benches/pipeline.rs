//! End-to-end pipeline benchmark: from the commit of a domain command to the completed
//! automation action, through the outbox relay, the queues and the default worker pools.
//!
//! `cargo bench --bench pipeline` runs it for each mode in `BENCH_MODES` (default
//! `scaled,redis,sqlite`):
//! - `scaled`: state on PostgreSQL (a fresh database from `DATABASE_TEST_URL`), queues on
//!   Redis (`REDIS_TEST_URL`) under a random key prefix, the pools and the relay in a separate
//!   `virel workers` process (this process commits, as the API would);
//! - `redis`: the same with the pools in this process;
//! - `sqlite`: the embedded mode, state and queues in two SQLite files in a temporary folder.
//!
//! Each mode seeds the demo data, starts the worker pools in this process with the default
//! configuration, adds the rule "inquiry.created, source = phone → create_task follow_up",
//! then creates `BENCH_N` (2000) phone inquiries through the domain command from
//! `BENCH_CONCURRENCY` (16) tasks, as fast as they go or at `BENCH_RATE` per second.
//! Latency is the follow-up task's `created_at` (written by the worker in the action's
//! transaction) minus the instant the inquiry's create call returned (its commit).
//! Throughput is N over the time from the first commit to the last task. A warm-up of
//! `BENCH_WARMUP` (100) inquiries runs first and is not counted. On PostgreSQL the baseline of
//! the same run follows: `pgbench` running one action's SQL (`benches/pgbench/action.sql`).
//! The report goes to stdout and to `target/bench-pipeline.json`. Everything the benchmark
//! creates (database, temporary folder, Redis keys under its prefix) is removed at the end,
//! on failure and Ctrl-C too.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::Connection;
use uuid::Uuid;
use virel_domain::automation::{Action, Condition, RuleInput};
use virel_domain::commands::clients::NewClient;
use virel_domain::commands::inquiries::NewInquiry;
use virel_domain::jobs::{Queue, QueueBackend};
use virel_domain::{Ctx, Db};
use virel_workers::{Queues, Runtime, WorkerConfig};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Redis,
    /// PostgreSQL + Redis with the pools in a separate `virel workers` process.
    Scaled,
    Sqlite,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Redis => "redis",
            Mode::Scaled => "scaled",
            Mode::Sqlite => "sqlite",
        }
    }

    fn on_postgres(self) -> bool {
        matches!(self, Mode::Redis | Mode::Scaled)
    }
}

struct Params {
    n: usize,
    concurrency: usize,
    warmup: usize,
    /// Inquiries per second to offer, spread evenly; 0 is as fast as the writers go.
    rate: f64,
    timeout: Duration,
    db_connections: u32,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| anyhow::anyhow!("{name} must be a number (got {v:?})")),
    }
}

fn pg_admin_url() -> String {
    std::env::var("DATABASE_TEST_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn redis_url() -> String {
    std::env::var("REDIS_TEST_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn with_database(url: &str, name: &str) -> String {
    match url.rfind('/') {
        Some(i) if url[..i].contains('@') || url[..i].matches('/').count() >= 2 => {
            format!("{}/{}", &url[..i], name)
        }
        _ => format!("{url}/{name}"),
    }
}

/// What one mode created outside this process, to remove at the end. `Drop` is the fallback
/// (a panic); the normal path calls `remove` and awaits it.
#[derive(Default)]
struct Leftovers {
    pg_database: Option<(String, String)>,
    redis_prefix: Option<String>,
    dir: Option<PathBuf>,
}

impl Leftovers {
    async fn remove(&mut self) {
        if let Some((admin, name)) = self.pg_database.take() {
            match sqlx::PgConnection::connect(&admin).await {
                Ok(mut c) => {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await {
                        eprintln!("warning: cannot drop database {name}: {e}");
                    }
                }
                Err(e) => eprintln!("warning: cannot connect to drop database {name}: {e}"),
            }
        }
        if let Some(prefix) = self.redis_prefix.take()
            && let Err(e) = delete_redis_keys(&prefix).await
        {
            eprintln!("warning: cannot delete Redis keys {prefix}:*: {e}");
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if self.pg_database.is_none() && self.redis_prefix.is_none() && self.dir.is_none() {
            return;
        }
        let mut rest = std::mem::take(self);
        // Drop may run inside the benchmark's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(rest.remove());
            }
        })
        .join();
    }
}

/// Deletes the keys of this run's queues (`prefix:*`) and their entries in apalis's list of
/// queues; nothing else.
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

/// One mode's system, running in this process.
struct System {
    db: Db,
    /// A small pool of its own for the benchmark's reads, so they take no connection from the
    /// workers or the commands.
    observer: Db,
    queues: Queues,
    cfg: WorkerConfig,
    stop: tokio::sync::watch::Sender<bool>,
    workers: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The `virel workers` process of the scaled mode.
    child: Option<tokio::process::Child>,
    url: String,
    versions: Value,
}

async fn start(mode: Mode, p: &Params, left: &mut Leftovers) -> anyhow::Result<System> {
    let tag = Uuid::now_v7().simple().to_string();
    let cfg = WorkerConfig::default();
    let mut prefix_used = None;
    let (url, queues) = match mode {
        Mode::Redis | Mode::Scaled => {
            let admin = pg_admin_url();
            let name = format!("virel_bench_{tag}");
            let mut c = sqlx::PgConnection::connect(&admin)
                .await
                .context("PostgreSQL for the benchmark (DATABASE_TEST_URL)")?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut c).await?;
            left.pg_database = Some((admin.clone(), name.clone()));
            let prefix = format!("virel-bench-{tag}");
            left.redis_prefix = Some(prefix.clone());
            prefix_used = Some(prefix.clone());
            let queues = Queues::redis(&redis_url(), &prefix, &cfg.liveness)
                .await
                .context("Redis for the benchmark (REDIS_TEST_URL)")?;
            (with_database(&admin, &name), queues)
        }
        Mode::Sqlite => {
            let dir = std::env::temp_dir().join(format!("virel-bench-{tag}"));
            std::fs::create_dir_all(&dir)?;
            left.dir = Some(dir.clone());
            let queues = Queues::sqlite(&dir.join("queue.db"), &cfg.liveness).await?;
            (format!("sqlite://{}", dir.join("virel.db").display()), queues)
        }
    };
    let db = Db::connect(&url, p.db_connections).await?;
    db.migrate().await?;
    virel_domain::seed::seed_demo(&db).await?;
    virel_domain::automation::seed_defaults(&db).await?;
    let observer = Db::connect(&url, 2).await?;
    let versions = versions(&observer, &queues).await;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (workers, child) = match (mode, prefix_used) {
        (Mode::Scaled, Some(prefix)) => {
            // The benchmark's process plays the API (its commands commit); the pools, the
            // relay and the live feed run in `virel workers` with the defaults of its settings.
            let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_virel"))
                .arg("workers")
                .env("DATABASE_URL", &url)
                .env("REDIS_URL", redis_url())
                .env("VIREL_QUEUE_PREFIX", prefix)
                .env("VIREL_DEMO_DATA", "0")
                .env("JWT_SECRET", "pipeline-bench-secret-pipeline-bench-secret")
                .env("RUST_LOG", std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into()))
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("spawning `virel workers`")?;
            (None, Some(child))
        }
        _ => {
            let rt = Arc::new(Runtime::new(db.clone(), queues.clone(), cfg.retry.clone()));
            (Some(tokio::spawn(virel_workers::run(rt, cfg.clone(), stop_rx))), None)
        }
    };
    Ok(System { db, observer, queues, cfg, stop, workers, child, url, versions })
}

impl System {
    /// Stops the pools gracefully (jobs in hand finish) and closes the pools.
    async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = self.workers.take() {
            match tokio::time::timeout(Duration::from_secs(40), h).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => eprintln!("warning: worker pools ended with an error: {e}"),
                Ok(Err(e)) => eprintln!("warning: worker pools panicked: {e}"),
                Err(_) => eprintln!("warning: worker pools did not stop within 40 s"),
            }
        }
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = tokio::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
            }
            match tokio::time::timeout(Duration::from_secs(40), child.wait()).await {
                Ok(Ok(s)) if s.success() => {}
                Ok(r) => eprintln!("warning: `virel workers` ended with {r:?}"),
                Err(_) => {
                    eprintln!("warning: `virel workers` did not stop within 40 s; killing it");
                    let _ = child.kill().await;
                }
            }
        }
        self.observer.close().await;
        self.db.close().await;
    }
}

#[derive(sqlx::FromRow)]
struct Count {
    n: i64,
}

async fn count(db: &Db, sql: &'static str) -> anyhow::Result<i64> {
    let mut h = db.acquire().await?;
    Ok(virel_domain::q_one!(&mut h.conn(), Count, sql)?.n)
}

async fn follow_ups(db: &Db) -> anyhow::Result<i64> {
    count(db, "SELECT COUNT(*) AS n FROM tasks WHERE type = 'follow_up' AND created_by LIKE 'automation:%'").await
}

/// Waits until every committed event is on a queue and no job is pending or running (twice in
/// a row, 100 ms apart).
async fn settle(sys: &System, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    let mut idle_checks = 0;
    while idle_checks < 2 {
        if Instant::now() > deadline {
            bail!("the outbox and the queues did not settle within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let undispatched =
            count(&sys.observer, "SELECT COUNT(*) AS n FROM domain_events WHERE dispatched_at IS NULL").await?;
        let mut busy = undispatched > 0;
        for q in Queue::ALL {
            let live = sys.queues.live(q).await?;
            busy |= live.pending > 0 || live.running > 0;
        }
        idle_checks = if busy { 0 } else { idle_checks + 1 };
    }
    Ok(())
}

/// An inquiry as the load saw it: the instant its create call returned (committed).
struct Committed {
    id: Uuid,
    at: DateTime<Utc>,
}

/// Creates `n` phone inquiries from `concurrency` tasks; returns them with the load's wall time.
async fn load(
    db: &Db,
    ctx: &Ctx,
    n: usize,
    concurrency: usize,
    phone_block: u32,
    rate: f64,
) -> anyhow::Result<(Vec<Committed>, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (db, ctx, next) = (db.clone(), ctx.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                if rate > 0.0 {
                    tokio::time::sleep_until(started + Duration::from_secs_f64(i as f64 / rate)).await;
                }
                let input = NewInquiry {
                    source: "phone".into(),
                    client: Some(NewClient {
                        name: format!("Bench caller {phone_block}-{i}"),
                        phone: Some(format!("+4479{phone_block:02}{i:07}")),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let row = virel_domain::commands::inquiries::create(&db, &ctx, input).await?;
                done.push(Committed { id: row.id, at: Utc::now() });
            }
            Ok::<_, virel_domain::DomainError>(done)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in futures::future::join_all(tasks).await {
        all.extend(t.context("a load task panicked")?.context("creating an inquiry")?);
    }
    Ok((all, started.elapsed()))
}

/// Waits until `target` follow-up tasks exist, polling every 10 ms.
async fn wait_for_follow_ups(sys: &System, target: i64, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let have = follow_ups(&sys.observer).await?;
        if have >= target {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {have} of {target} follow-up tasks after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One inquiry's way through the pipeline, from the database.
#[derive(sqlx::FromRow)]
struct Trace {
    inquiry_id: Uuid,
    dispatched_at: Option<DateTime<Utc>>,
    evaluated_at: DateTime<Utc>,
    task_at: DateTime<Utc>,
}

fn ms(d: chrono::TimeDelta) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn owner_ctx(db: &Db) -> anyhow::Result<Ctx> {
    let mut h = db.acquire().await?;
    let admin = virel_domain::q_opt!(
        &mut h.conn(),
        virel_domain::rows::User,
        "SELECT * FROM users WHERE email = $1",
        "admin@virel.com"
    )?;
    Ok(match admin.and_then(|u| virel_domain::policy::Role::parse(&u.role).map(|r| (u.id, r))) {
        Some((id, role)) => Ctx::user(id, role),
        None => Ctx::system(),
    })
}

async fn measure(sys: &System, mode: Mode, p: &Params) -> anyhow::Result<Value> {
    let ctx = owner_ctx(&sys.db).await?;
    // The seed's events first, so that the rule below meets none of them.
    settle(sys, Duration::from_secs(60)).await.context("draining the seed's events")?;
    let rule = virel_domain::automation::create_rule(
        &sys.db,
        &ctx,
        RuleInput {
            name: "Follow up phone inquiries".into(),
            enabled: Some(true),
            trigger: "inquiry.created".into(),
            conditions: vec![Condition { field: "source".into(), operator: "equals".into(), value: json!("phone") }],
            actions: vec![Action {
                kind: "create_task".into(),
                params: serde_json::from_value(json!({"type": "follow_up", "title": "Call the client back"}))?,
                delay_minutes: None,
            }],
            version: None,
        },
    )
    .await?;
    settle(sys, Duration::from_secs(60)).await?;

    if p.warmup > 0 {
        let before = follow_ups(&sys.observer).await?;
        load(&sys.db, &ctx, p.warmup, p.concurrency, 1, p.rate).await.context("warm-up")?;
        wait_for_follow_ups(sys, before + p.warmup as i64, p.timeout).await.context("warm-up")?;
        settle(sys, Duration::from_secs(60)).await.context("after the warm-up")?;
    }

    let before = follow_ups(&sys.observer).await?;
    // The system under test is idle now: CPU time used meanwhile is someone else's.
    let idle_before = cpu_idle_pct(Duration::from_secs(2)).await;
    if idle_before < 85.0 {
        eprintln!(
            "[{}] warning: the CPUs were only {idle_before:.0}% idle just before the load: other work competes with it",
            mode.name()
        );
    }
    eprintln!("[{}] load: {} inquiries from {} tasks", mode.name(), p.n, p.concurrency);
    let load_started = Utc::now();
    let (committed, load_wall) = load(&sys.db, &ctx, p.n, p.concurrency, 2, p.rate).await?;
    eprintln!("[{}] load done in {:.2} s; waiting for the follow-ups", mode.name(), load_wall.as_secs_f64());
    wait_for_follow_ups(sys, before + p.n as i64, p.timeout).await?;

    let created_by = format!("automation:{}", rule.id);
    let traces = {
        let mut h = sys.observer.acquire().await?;
        virel_domain::q_all!(
            &mut h.conn(),
            Trace,
            "SELECT e.subject_id AS inquiry_id, e.dispatched_at, x.created_at AS evaluated_at, t.created_at AS task_at
             FROM domain_events e
             JOIN automation_executions x ON x.event_id = e.id AND x.rule_id = $1 AND x.action_index = -1
             JOIN tasks t ON t.subject_type = 'inquiry' AND t.subject_id = e.subject_id AND t.type = 'follow_up' AND t.created_by = $2
             WHERE e.type = 'inquiry.created'",
            rule.id,
            created_by
        )?
    };
    let commits: HashMap<Uuid, DateTime<Utc>> = committed.iter().map(|c| (c.id, c.at)).collect();
    let traces: Vec<&Trace> = traces.iter().filter(|t| commits.contains_key(&t.inquiry_id)).collect();
    if traces.len() != p.n {
        bail!("{} follow-up tasks traced for {} inquiries", traces.len(), p.n);
    }
    let first_commit = committed.iter().map(|c| c.at).min().context("no inquiry")?;
    let last_task = traces.iter().map(|t| t.task_at).max().context("no task")?;
    let e2e = ms(last_task - first_commit) / 1000.0;
    let latency = sorted(traces.iter().map(|t| ms(t.task_at - commits[&t.inquiry_id])).collect());
    let relayed =
        sorted(traces.iter().filter_map(|t| t.dispatched_at.map(|d| ms(d - commits[&t.inquiry_id]))).collect());
    let evaluated = sorted(traces.iter().map(|t| ms(t.evaluated_at - commits[&t.inquiry_id])).collect());
    let acted = sorted(traces.iter().map(|t| ms(t.task_at - t.evaluated_at)).collect());
    // Every domain event is one job: the inquiry's and client's, then the task's own.
    let events = {
        let mut h = sys.observer.acquire().await?;
        virel_domain::q_one!(
            &mut h.conn(),
            Count,
            "SELECT COUNT(*) AS n FROM domain_events WHERE occurred_at >= $1 AND occurred_at <= $2",
            load_started,
            last_task
        )?
        .n
    };
    let baseline = if mode.on_postgres() {
        settle(sys, Duration::from_secs(60)).await?;
        let clients = sys.cfg.concurrency.get(&Queue::Ops).copied().unwrap_or(16);
        eprintln!("[{}] baseline: pgbench, one action's SQL, {clients} clients", mode.name());
        pgbench_action(&sys.url, clients).await
    } else {
        Value::Null
    };
    let stage = |v: &[f64]| json!({"p50": round(pct(v, 50.0)), "p99": round(pct(v, 99.0))});
    Ok(json!({
        "mode": mode.name(),
        "backend": match mode {
            Mode::Redis => "postgres + redis, one process",
            Mode::Scaled => "postgres + redis, workers in a separate process",
            Mode::Sqlite => "sqlite + sqlite queues",
        },
        "n": p.n,
        "concurrency": p.concurrency,
        "warmup": p.warmup,
        "rate_per_s": if p.rate > 0.0 { json!(p.rate) } else { json!("unlimited") },
        "cpu_idle_before_pct": round(idle_before),
        "db_max_connections": p.db_connections,
        "worker_concurrency": {
            "critical": sys.cfg.concurrency.get(&Queue::Critical),
            "ops": sys.cfg.concurrency.get(&Queue::Ops),
            "heavy": sys.cfg.concurrency.get(&Queue::Heavy),
        },
        "queue_poll_ms": sys.cfg.liveness.poll.as_millis() as u64,
        "load_wall_s": round3(load_wall.as_secs_f64()),
        "commits_per_s": round(p.n as f64 / load_wall.as_secs_f64()),
        "end_to_end_s": round3(e2e),
        "events_per_s": round(p.n as f64 / e2e),
        "domain_events": events,
        "domain_events_per_s": round(events as f64 / e2e),
        "latency_ms": {
            "p50": round(pct(&latency, 50.0)),
            "p90": round(pct(&latency, 90.0)),
            "p99": round(pct(&latency, 99.0)),
            "max": round(pct(&latency, 100.0)),
            "min": round(pct(&latency, 0.0)),
        },
        "stages_ms": {
            "commit_to_relayed": stage(&relayed),
            "commit_to_evaluated": stage(&evaluated),
            "evaluated_to_action": stage(&acted),
        },
        "versions": sys.versions,
        "pgbench_action": baseline,
        "actions_vs_pgbench_pct": baseline["tps"].as_f64().map(|tps| round(100.0 * (p.n as f64 / e2e) / tps)),
    }))
}

/// The baseline of the same run: `pgbench` running one action's SQL
/// (`benches/pgbench/action.sql`) with as many clients as the ops pool has workers, for
/// `BENCH_PGBENCH_SECS` (10), on this mode's database. Null when pgbench is missing.
async fn pgbench_action(url: &str, clients: usize) -> Value {
    let secs: u64 = env_or("BENCH_PGBENCH_SECS", 10u64).unwrap_or(10);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/pgbench/action.sql");
    let out = tokio::process::Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-j", "2", "-c", &clients.to_string(), "-T", &secs.to_string(), "-f"])
        .arg(&script)
        .arg(url)
        .output()
        .await;
    let out = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).to_string(),
        Ok(o) => {
            eprintln!("warning: pgbench failed: {}", String::from_utf8_lossy(&o.stderr).trim());
            return Value::Null;
        }
        Err(e) => {
            eprintln!("warning: cannot run pgbench ({e}); no baseline");
            return Value::Null;
        }
    };
    let field = |prefix: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
    };
    json!({
        "clients": clients,
        "seconds": secs,
        "tps": field("tps =").map(round),
        "latency_avg_ms": field("latency average =").map(round3),
    })
}

async fn versions(db: &Db, queues: &Queues) -> Value {
    #[derive(sqlx::FromRow)]
    struct V {
        v: String,
    }
    let engine = match db.pool() {
        virel_domain::store::Pool::Pg(_) => "SELECT version() AS v",
        virel_domain::store::Pool::Lite(_) => "SELECT 'SQLite ' || sqlite_version() AS v",
    };
    let state = match db.acquire().await {
        Ok(mut h) => virel_domain::q_one!(&mut h.conn(), V, engine).map(|r| r.v).unwrap_or_default(),
        Err(_) => String::new(),
    };
    let state = state.split(" on ").next().unwrap_or_default().to_string();
    let queue = match queues {
        Queues::Redis { .. } => async {
            let client = redis::Client::open(redis_url()).ok()?;
            let mut c = client.get_multiplexed_async_connection().await.ok()?;
            let info: String = redis::cmd("INFO").arg("server").query_async(&mut c).await.ok()?;
            info.lines().find_map(|l| l.strip_prefix("redis_version:")).map(|v| format!("Redis {}", v.trim()))
        }
        .await
        .unwrap_or_default(),
        Queues::Sqlite { .. } => "SQLite (apalis-sqlite)".into(),
    };
    json!({"state": state, "queues": queue})
}

/// Runs one mode from start to clean-up; the clean-up happens whatever the outcome.
async fn run_mode(mode: Mode, p: Arc<Params>) -> anyhow::Result<Value> {
    let mut left = Leftovers::default();
    let sys = match start(mode, &p, &mut left).await {
        Ok(s) => Arc::new(tokio::sync::Mutex::new(s)),
        Err(e) => {
            left.remove().await;
            return Err(e);
        }
    };
    let run = {
        let (sys, p) = (sys.clone(), p.clone());
        tokio::spawn(async move {
            let sys = sys.lock().await;
            measure(&sys, mode, &p).await
        })
    };
    let abort = run.abort_handle();
    let res = tokio::select! {
        r = run => r.map_err(|e| anyhow::anyhow!("the measurement panicked: {e}")).and_then(|r| r),
        _ = tokio::signal::ctrl_c() => {
            abort.abort();
            Err(anyhow::anyhow!("interrupted"))
        }
    };
    eprintln!("[{}] stopping the workers and cleaning up", mode.name());
    sys.lock().await.stop().await;
    left.remove().await;
    res
}

/// Busy and idle jiffies of all CPUs, from /proc/stat.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((v.iter().take(8).sum::<u64>() - idle, idle))
}

/// How idle the CPUs were over `window` (100 when it cannot be read): other work on the
/// machine skews the figures.
async fn cpu_idle_pct(window: Duration) -> f64 {
    let a = cpu_times();
    tokio::time::sleep(window).await;
    match (a, cpu_times()) {
        (Some((b0, i0)), Some((b1, i1))) if b1 + i1 > b0 + i0 => {
            100.0 * (i1 - i0) as f64 / ((b1 + i1 - b0 - i0) as f64)
        }
        _ => 100.0,
    }
}

fn machine() -> Value {
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| round(kb / 1024.0 / 1024.0))
        .unwrap_or(0.0);
    json!({"nproc": nproc, "kernel": kernel, "mem_gib": mem_gib})
}

fn print_report(machine: &Value, r: &Value) {
    let l = &r["latency_ms"];
    let s = &r["stages_ms"];
    let w = &r["worker_concurrency"];
    println!();
    println!(
        "== Virel pipeline: commit -> completed action, mode {} ({}) ==",
        r["mode"].as_str().unwrap_or(""),
        r["backend"].as_str().unwrap_or("")
    );
    println!(
        "machine        {} CPUs, {} GiB, Linux {}; {}, {}",
        machine["nproc"],
        machine["mem_gib"],
        machine["kernel"].as_str().unwrap_or(""),
        r["versions"]["state"].as_str().unwrap_or(""),
        r["versions"]["queues"].as_str().unwrap_or("")
    );
    println!(
        "workers        critical {} / ops {} / heavy {}, queue poll {} ms, DB pool {}",
        w["critical"], w["ops"], w["heavy"], r["queue_poll_ms"], r["db_max_connections"]
    );
    println!(
        "inquiries      N = {}, concurrency {}, offered rate {} /s (after {} warm-up)",
        r["n"], r["concurrency"], r["rate_per_s"], r["warmup"]
    );
    println!("machine load   CPUs {}% idle just before the load", r["cpu_idle_before_pct"]);
    println!("load           {} s wall, {} commits/s", r["load_wall_s"], r["commits_per_s"]);
    println!(
        "end to end     {} s first commit -> last action: {} events/s ({} domain events, {} /s)",
        r["end_to_end_s"], r["events_per_s"], r["domain_events"], r["domain_events_per_s"]
    );
    println!(
        "latency ms     p50 {}  p90 {}  p99 {}  max {}  (min {})",
        l["p50"], l["p90"], l["p99"], l["max"], l["min"]
    );
    if !r["pgbench_action"].is_null() {
        println!(
            "baseline       pgbench, one action's SQL, {} clients: {} tps (Virel's actions at {}% of it)",
            r["pgbench_action"]["clients"], r["pgbench_action"]["tps"], r["actions_vs_pgbench_pct"]
        );
    }
    println!(
        "stages ms      commit->relayed p50 {} p99 {} | commit->rule evaluated p50 {} p99 {} | evaluated->task p50 {} p99 {}",
        s["commit_to_relayed"]["p50"],
        s["commit_to_relayed"]["p99"],
        s["commit_to_evaluated"]["p50"],
        s["commit_to_evaluated"]["p99"],
        s["evaluated_to_action"]["p50"],
        s["evaluated_to_action"]["p99"]
    );
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; a plain run (`cargo test --benches`) only checks it builds.
    if !std::env::args().any(|a| a == "--bench") {
        println!("pipeline: run with `cargo bench --bench pipeline`");
        return Ok(());
    }
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).try_init();
    }
    let p = Arc::new(Params {
        n: env_or("BENCH_N", 2000usize)?.max(1),
        concurrency: env_or("BENCH_CONCURRENCY", 16usize)?.max(1),
        warmup: env_or("BENCH_WARMUP", 100usize)?,
        rate: env_or("BENCH_RATE", 0f64)?.max(0.0),
        timeout: Duration::from_secs(env_or("BENCH_TIMEOUT_SECS", 600u64)?),
        db_connections: env_or("VIREL_DB_MAX_CONNECTIONS", 10u32)?,
    });
    let modes = std::env::var("BENCH_MODES").unwrap_or_else(|_| "scaled,redis,sqlite".into());
    let modes = modes
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| match m {
            "redis" => Ok(Mode::Redis),
            "scaled" => Ok(Mode::Scaled),
            "sqlite" => Ok(Mode::Sqlite),
            other => Err(anyhow::anyhow!("BENCH_MODES: unknown mode {other:?} (redis, scaled, sqlite)")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let machine = machine();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for mode in modes {
        match runtime.block_on(run_mode(mode, p.clone())) {
            Ok(r) => {
                print_report(&machine, &r);
                results.push(r);
            }
            Err(e) => {
                eprintln!("[{}] failed: {e:#}", mode.name());
                failed.push(json!({"mode": mode.name(), "error": format!("{e:#}")}));
            }
        }
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&target)?;
    let path = target.join("bench-pipeline.json");
    let report = json!({"machine": machine, "at": Utc::now(), "results": results, "failed": failed});
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("\nreport written to {}", path.display());
    if !failed.is_empty() {
        bail!("{} mode(s) failed", failed.len());
    }
    Ok(())
}
