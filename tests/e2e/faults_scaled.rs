//! Faults under load in the scaled deployment (`virel api` and `virel workers` as separate
//! processes on PostgreSQL + Redis), and retry timing on both engines.
//!
//! - A random `workers` process SIGKILLed at a fixed interval while events stream in: every
//!   action runs exactly once, and what a killed process held runs again within 60 s. The
//!   relay runs in the workers processes, so the kills also fall between commits and their
//!   enqueueing. Short by default (3,000 events, a kill every 3 s, at least 5 kills); the long
//!   run of the docs is `VIREL_FAULT_EVENTS=10000 VIREL_FAULT_KILL_SECS=10`.
//! - PostgreSQL cut under a steady write load (a TCP proxy in the test drops every connection
//!   and refuses new ones, as a restart does; the shared server is never stopped): the API
//!   answers 503 with `Retry-After`, never 401; the relay and the workers reconnect by
//!   themselves; every accepted inquiry gets its action once.
//! - Retries start inside their backoff window (±10%).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::faults::{Proxy, through_proxy};
use crate::harness::{Engine, TestApp, WorkerOptions};
use crate::scaled::{Deployment, deployment, phone_rule, wait_healthy};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A number that differs from run to run (which process to kill), without a random crate.
fn pick(n: usize) -> usize {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    (nanos as usize / 1000) % n
}

const FOLLOW_UPS: &str = "SELECT COUNT(*) AS n FROM tasks WHERE type = 'follow_up' AND created_by LIKE 'automation:%'";
const DISTINCT_FOLLOW_UPS: &str =
    "SELECT COUNT(DISTINCT subject_id) AS n FROM tasks WHERE type = 'follow_up' AND created_by LIKE 'automation:%'";

/// The longest time from an inquiry's commit to its follow-up task, in milliseconds.
async fn slowest_follow_up_ms(app: &TestApp) -> i64 {
    app.count(
        "SELECT CAST(COALESCE(MAX(EXTRACT(EPOCH FROM (t.created_at - i.created_at)) * 1000), 0) AS BIGINT) AS n
         FROM tasks t JOIN inquiries i ON i.id = t.subject_id
         WHERE t.type = 'follow_up' AND t.created_by LIKE 'automation:%'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_random_workers_process_killed_every_few_seconds_loses_nothing_and_doubles_nothing() {
    let events = env_or("VIREL_FAULT_EVENTS", 3000) as usize;
    let every = Duration::from_secs(env_or("VIREL_FAULT_KILL_SECS", 3));
    const MIN_KILLS: u32 = 5;
    // A phone inquiry with a new client commits three events: client.created,
    // inquiry.created and, from the rule, task.created.
    let n = events.div_ceil(3);
    let d = deployment().await;
    let Deployment { procs, base, app, .. } = &d;
    let _api = procs.spawn("api");
    let mut workers = [procs.spawn("workers"), procs.spawn("workers")];
    wait_healthy(base).await;
    let admin = app.login("admin@virel.com").await;
    app.settle(&admin).await;
    phone_rule(app, &admin).await;
    let events_before = app.count("SELECT COUNT(*) AS n FROM domain_events").await;

    // The writers spread the inquiries over the kills: at least MIN_KILLS + 1 intervals.
    let span = every * (MIN_KILLS + 1);
    let writing = Arc::new(AtomicBool::new(true));
    let writer = tokio::spawn({
        let (http, base, admin, writing) = (app.http.clone(), base.clone(), admin.clone(), writing.clone());
        async move {
            let start = tokio::time::Instant::now();
            let slots = Arc::new(tokio::sync::Semaphore::new(32));
            let mut sent = Vec::with_capacity(n);
            for i in 0..n {
                tokio::time::sleep_until(start + span.mul_f64(i as f64 / n as f64)).await;
                let permit = slots.clone().acquire_owned().await.unwrap();
                let (http, base, admin) = (http.clone(), base.clone(), admin.clone());
                sent.push(tokio::spawn(async move {
                    let _permit = permit;
                    let r = http
                        .post(format!("{base}/inquiries"))
                        .bearer_auth(&admin)
                        .json(&json!({"source": "phone",
                                      "client": {"name": format!("Kill caller {i}"), "phone": format!("+4479{i:08}")}}))
                        .send()
                        .await
                        .expect("an answer");
                    r.status()
                }));
            }
            let statuses = futures::future::join_all(sent).await;
            writing.store(false, Ordering::Relaxed);
            statuses.into_iter().map(Result::unwrap).collect::<Vec<_>>()
        }
    });

    let mut kills = Vec::new();
    while writing.load(Ordering::Relaxed) || kills.len() < MIN_KILLS as usize {
        tokio::time::sleep(every).await;
        let victim = pick(workers.len());
        workers[victim].kill().await.unwrap(); // SIGKILL
        kills.push(Instant::now());
        workers[victim] = procs.spawn("workers"); // as a supervisor would
    }
    let statuses = writer.await.unwrap();
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED), "every inquiry accepted while workers die");
    let last_kill = *kills.last().unwrap();

    let all = app.eventually(120, || async { (app.count(FOLLOW_UPS).await >= n as i64).then_some(()) }).await;
    assert!(all.is_some(), "every follow-up created; have {} of {n}", app.count(FOLLOW_UPS).await);
    let drained_after_last_kill = last_kill.elapsed();
    app.settle(&admin).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(app.count(FOLLOW_UPS).await, n as i64, "none lost, none doubled, after {} kills", kills.len());
    assert_eq!(app.count(DISTINCT_FOLLOW_UPS).await, n as i64, "one per inquiry");
    let committed = app.count("SELECT COUNT(*) AS n FROM domain_events").await - events_before;
    assert!(committed >= events as i64, "{committed} events committed (wanted {events})");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM domain_events WHERE dispatched_at IS NULL").await, 0);
    // What a killed process held (fetched, not acknowledged) ran again within 60 s.
    let slowest = slowest_follow_up_ms(app).await;
    assert!(slowest < 60_000, "the slowest inquiry → follow-up took {slowest} ms");
    eprintln!(
        "{{\"test\":\"workers_killed\",\"events\":{committed},\"inquiries\":{n},\"kills\":{},\"kill_every_s\":{},\
         \"slowest_follow_up_ms\":{slowest},\"drained_after_last_kill_ms\":{}}}",
        kills.len(),
        every.as_secs(),
        drained_after_last_kill.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_cut_under_load_is_503_and_every_process_reconnects_by_itself() {
    let mut d = deployment().await;
    let (upstream, url_for) = through_proxy(&d._db.1).await;
    let proxy = Proxy::start(upstream).await;
    d.procs.set("DATABASE_URL", url_for(proxy.port));
    let _api = d.procs.spawn("api");
    let _workers = d.procs.spawn("workers");
    wait_healthy(&d.base).await;
    let app = &d.app;
    let admin = app.login("admin@virel.com").await;
    app.settle(&admin).await;
    phone_rule(app, &admin).await;

    // A steady write load from four clients, across the cut and after it.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for w in 0..4 {
        let (http, base, token, stop) = (app.http.clone(), d.base.clone(), admin.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let r = http
                    .post(format!("{base}/inquiries"))
                    .bearer_auth(&token)
                    .json(&json!({"source": "phone",
                                  "client": {"name": format!("Cut caller {w}-{i}"), "phone": format!("+4478{w}{i:07}")}}))
                    .timeout(Duration::from_secs(15))
                    .send()
                    .await
                    .expect("an answer");
                seen.push((Instant::now(), r.status()));
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Down for five seconds: answers with a valid token are 503 + Retry-After, soon.
    proxy.down();
    let cut = Instant::now();
    let mut probes = 0;
    while cut.elapsed() < Duration::from_secs(5) {
        let t = Instant::now();
        let r =
            app.http.get(format!("{}/me", d.base)).bearer_auth(&admin).timeout(Duration::from_secs(10)).send().await;
        let r = r.expect("an answer while the database is down");
        let took = t.elapsed();
        assert_ne!(r.status(), StatusCode::UNAUTHORIZED, "never 401 for a valid token");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "GET /me while the database is down");
        assert!(r.headers().contains_key("retry-after"), "with Retry-After");
        assert!(took < Duration::from_millis(3000), "answered in {took:?}");
        probes += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(probes >= 3, "probed during the outage: {probes}");

    // Back: no process restarted.
    proxy.up().await;
    let restored = Instant::now();
    let restored_at = chrono::Utc::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for l in load {
        seen.extend(l.await.unwrap());
    }
    for (_, s) in &seen {
        assert!(matches!(*s, StatusCode::CREATED | StatusCode::SERVICE_UNAVAILABLE), "only 201 or 503, got {s}");
    }
    assert!(seen.iter().any(|(_, s)| *s == StatusCode::SERVICE_UNAVAILABLE), "the load saw the outage");
    let first_write = seen
        .iter()
        .filter(|(at, s)| *at > restored && *s == StatusCode::CREATED)
        .map(|(at, _)| *at - restored)
        .min()
        .expect("writes succeeded after the database came back");
    assert!(first_write < Duration::from_secs(10), "writes back {first_write:?} after the restore");

    // Every inquiry that was committed (201s, and any whose COMMIT reply was lost) gets one
    // follow-up: the relay and the workers came back by themselves.
    let inquiries = || {
        app.count(
            "SELECT COUNT(*) AS n FROM inquiries i JOIN clients c ON c.id = i.client_id WHERE c.name LIKE 'Cut caller %'",
        )
    };
    let all = app
        .eventually(60, || async {
            let want = inquiries().await;
            (app.count(FOLLOW_UPS).await == want).then_some(want)
        })
        .await;
    if all.is_none() {
        panic!(
            "follow-ups {} of {}; without one: {}",
            app.count(FOLLOW_UPS).await,
            inquiries().await,
            without_follow_up(app).await
        );
    }
    app.settle(&admin).await;
    assert_eq!(app.count(FOLLOW_UPS).await, inquiries().await, "none doubled");
    assert_eq!(app.count(DISTINCT_FOLLOW_UPS).await, inquiries().await, "one per inquiry");
    // Throughput back within 10 s: an inquiry written after the restore had its follow-up
    // within 10 s of the restore.
    #[derive(sqlx::FromRow)]
    struct At {
        at: Option<chrono::DateTime<chrono::Utc>>,
    }
    let mut h = app.db.acquire().await.unwrap();
    let first = virel_domain::q_opt!(
        &mut h.conn(),
        At,
        "SELECT MIN(t.created_at) AS at FROM tasks t JOIN inquiries i ON i.id = t.subject_id
         WHERE t.type = 'follow_up' AND i.created_at > $1",
        restored_at
    )
    .unwrap()
    .and_then(|r| r.at)
    .expect("a follow-up for an inquiry written after the restore");
    let back = first - restored_at;
    assert!(back < chrono::Duration::seconds(10), "actions resumed {back:?} after the restore");
}

/// The inquiries without a follow-up, with their events' dispatch and the rule's executions.
async fn without_follow_up(app: &TestApp) -> String {
    #[derive(sqlx::FromRow, Debug)]
    struct Missing {
        inquiry: uuid::Uuid,
        created_at: chrono::DateTime<chrono::Utc>,
        event: Option<uuid::Uuid>,
        dispatched_at: Option<chrono::DateTime<chrono::Utc>>,
        executions: Option<String>,
    }
    let mut h = app.db.acquire().await.unwrap();
    let rows = virel_domain::q_all!(
        &mut h.conn(),
        Missing,
        "SELECT i.id AS inquiry, i.created_at, e.id AS event, e.dispatched_at,
                (SELECT string_agg(x.action_index || ':' || x.status, ',') FROM automation_executions x
                 WHERE x.event_id = e.id) AS executions
         FROM inquiries i JOIN clients c ON c.id = i.client_id
         LEFT JOIN domain_events e ON e.subject_id = i.id AND e.type = 'inquiry.created'
         WHERE c.name LIKE 'Cut caller %'
           AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.subject_id = i.id AND t.type = 'follow_up')"
    )
    .unwrap();
    format!("{rows:?}")
}

async fn retries_start_inside_their_backoff_window(engine: Engine) {
    let runs: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let fails: virel_workers::CustomHandler = {
        let runs = runs.clone();
        Arc::new(move |_| {
            runs.lock().unwrap().push(Instant::now());
            Box::pin(async { Err("the provider is down".into()) })
        })
    };
    // Base 4 s: the first retry waits 2–4 s, the second 4–8 s.
    let base = Duration::from_secs(4);
    let opts = WorkerOptions {
        retry: virel_workers::RetrySettings { attempts_default: 3, base, ..Default::default() },
        handlers: vec![("always_fails".into(), fails)],
        scheduler: false,
        ..Default::default()
    };
    let app = TestApp::start_full(engine, opts).await;
    let q = app.queues.as_ref().unwrap();
    let job =
        virel_workers::Job::new(&virel_domain::jobs::kinds::Custom { name: "always_fails".into(), payload: json!({}) });
    q.push(job, None).await.unwrap();
    let three = app.eventually(30, || async { (runs.lock().unwrap().len() >= 3).then_some(()) }).await;
    assert!(three.is_some(), "three attempts: {:?}", runs.lock().unwrap());
    let runs = runs.lock().unwrap().clone();
    let policy = virel_workers::RetrySettings { attempts_default: 3, base, ..Default::default() }.standard();
    for (i, w) in runs.windows(2).enumerate() {
        let gap = w[1] - w[0];
        let (lo, hi) = policy.window(i as u32 + 1);
        assert!(
            gap >= lo.mul_f64(0.9) && gap <= hi.mul_f64(1.1),
            "retry {}: waited {gap:?}, window {lo:?}–{hi:?} (±10%)",
            i + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_start_inside_their_backoff_window_sqlite() {
    retries_start_inside_their_backoff_window(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_start_inside_their_backoff_window_postgres_redis() {
    retries_start_inside_their_backoff_window(Engine::Postgres).await;
}
