//! The scaled deployment as separate processes (`virel api`, `virel workers`) on PostgreSQL +
//! Redis, with the workers process killed with SIGKILL mid-stream.

use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::harness::{Engine, RedisGuard, TestApp, fresh_db, redis_url};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Procs {
    pub env: Vec<(String, String)>,
}

impl Procs {
    /// Sets (or replaces) one variable of the processes' environment.
    pub fn set(&mut self, key: &str, value: String) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value));
    }

    pub fn spawn(&self, role: &str) -> Child {
        let mut c = Command::new(env!("CARGO_BIN_EXE_virel"));
        let (out, err) = crate::harness::child_log(role);
        c.arg(role).envs(self.env.iter().cloned()).stdin(Stdio::null()).stdout(out).stderr(err).kill_on_drop(true);
        c.spawn().expect("spawn virel")
    }
}

pub async fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().expect("running").to_string();
    let _ = Command::new("kill").arg("-TERM").arg(&pid).status().await;
    tokio::time::timeout(Duration::from_secs(40), child.wait()).await.expect("exits after SIGTERM").unwrap()
}

/// A scaled deployment on a fresh PostgreSQL database and Redis prefix: the environment of
/// its processes, the API's base URL, and a client attached to it.
pub struct Deployment {
    pub procs: Procs,
    pub base: String,
    pub app: TestApp,
    _redis: RedisGuard,
    pub _db: crate::harness::GuardHandle,
}

pub async fn deployment() -> Deployment {
    crate::harness::init_tracing();
    let (db, guard) = fresh_db(Engine::Postgres).await;
    let prefix = format!("virel-test-{}", uuid::Uuid::now_v7().simple());
    let redis = RedisGuard { url: redis_url(), prefix: prefix.clone() };
    let port = free_port();
    let procs = Procs {
        env: vec![
            ("DATABASE_URL".into(), guard.1.clone()),
            ("REDIS_URL".into(), redis_url()),
            ("VIREL_QUEUE_PREFIX".into(), prefix.clone()),
            ("JWT_SECRET".into(), "scaled-test-secret-scaled-test-secret".into()),
            ("VIREL_BIND".into(), format!("127.0.0.1:{port}")),
            ("VIREL_HEARTBEAT_MS".into(), "1000".into()),
            ("VIREL_MISSED_HEARTBEATS".into(), "3".into()),
            ("VIREL_SLA_SWEEP_SECS".into(), "1".into()),
            ("RUST_LOG".into(), std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into())),
            ("VIREL_LOG_FORMAT".into(), "text".into()),
        ],
    };
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let app = TestApp::attach(base.clone(), db, Engine::Postgres);
    Deployment { procs, base, app, _redis: redis, _db: guard }
}

/// The rule the scaled tests count: a follow-up task for every phone inquiry.
pub async fn phone_rule(app: &TestApp, admin: &str) {
    app.ok(
        admin,
        "/automation/rules",
        json!({
            "name": "Follow up phone inquiries",
            "trigger": "inquiry.created",
            "conditions": [{"field": "source", "operator": "equals", "value": "phone"}],
            "actions": [{"type": "create_task", "params": {"type": "follow_up"}}]
        }),
        201,
    )
    .await;
}

pub async fn wait_healthy(base: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/health")).send().await.map(|r| r.status() != StatusCode::OK).unwrap_or(true) {
        assert!(Instant::now() < deadline, "the api process came up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_from_the_api_and_from_a_worker_process_reach_a_websocket_within_a_second() {
    let d = deployment().await;
    let _api = d.procs.spawn("api");
    let _workers = d.procs.spawn("workers");
    wait_healthy(&d.base).await;
    let app = &d.app;
    let admin = app.login("admin@virel.com").await;
    app.settle(&admin).await;
    let lukas = app.login("lukas@virel.com").await;
    let (mut ws, _) = crate::action_center::connect(&d.base, &lukas).await;
    // 1. A change through the API by another user.
    let sent = Instant::now();
    let t = app.ok(&admin, "/tasks", json!({"type": "follow_up", "title": "Made through the API"}), 201).await;
    let id = t["id"].as_str().unwrap().to_string();
    let (m, at) = crate::action_center::wait_for_item(&mut ws, &id, Duration::from_secs(3)).await.expect("pushed");
    assert_eq!(m["type"], "item.upserted");
    assert!(at - sent < Duration::from_secs(1), "API change pushed within a second: {:?}", at - sent);
    // 2. A change made by a worker in another process: a rule's action creates the task.
    app.ok(
        &admin,
        "/automation/rules",
        json!({
            "name": "Follow up phone inquiries",
            "trigger": "inquiry.created",
            "conditions": [{"field": "source", "operator": "equals", "value": "phone"}],
            "actions": [{"type": "create_task", "params": {"type": "follow_up", "title": "Made by a worker"}}]
        }),
        201,
    )
    .await;
    app.ok(
        &admin,
        "/inquiries",
        json!({"source": "phone", "client": {"name": "Caller", "phone": "+447900000001"}}),
        201,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let (msg, arrived) = loop {
        let m = crate::action_center::next_json(&mut ws, deadline - Instant::now())
            .await
            .expect("the worker's task is pushed");
        if m["item"]["title"] == "Made by a worker" {
            break (m, Utc::now());
        }
    };
    assert_eq!(msg["type"], "item.upserted");
    let created: chrono::DateTime<Utc> = msg["item"]["created_at"].as_str().unwrap().parse().unwrap();
    let lag = arrived - created;
    assert!(lag < chrono::Duration::seconds(1), "worker change pushed within a second of its commit: {lag:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_inquiries_survive_two_worker_kills() {
    let d = deployment().await;
    let procs = &d.procs;
    let _api = procs.spawn("api");
    let mut workers = procs.spawn("workers");
    wait_healthy(&d.base).await;
    let http = reqwest::Client::new();
    let base = d.base.clone();
    let app = &d.app;
    let admin = app.login("admin@virel.com").await;
    app.settle(&admin).await;
    phone_rule(app, &admin).await;

    const N: usize = 2000;
    let started = Instant::now();
    let mut created = 0usize;
    for chunk in 0..(N / 50) {
        let batch = (0..50).map(|i| {
            let n = chunk * 50 + i;
            let (http, base, admin) = (http.clone(), base.clone(), admin.clone());
            tokio::spawn(async move {
                let r = http
                    .post(format!("{base}/inquiries"))
                    .bearer_auth(&admin)
                    .json(&json!({"source": "phone", "client": {"name": format!("Caller {n}"), "phone": format!("+4479{n:08}")}}))
                    .send()
                    .await
                    .unwrap();
                r.status()
            })
        });
        for s in futures::future::join_all(batch).await {
            assert_eq!(s.unwrap(), StatusCode::CREATED);
            created += 1;
        }
        if chunk == 10 {
            workers.kill().await.unwrap(); // SIGKILL, mid-stream
            workers = procs.spawn("workers");
        }
        if chunk == 25 {
            workers.kill().await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            workers = procs.spawn("workers");
        }
    }
    assert_eq!(created, N);
    let tasks =
        || app.count("SELECT COUNT(*) AS n FROM tasks WHERE type = 'follow_up' AND created_by LIKE 'automation:%'");
    let done = app.eventually(180, || async { (tasks().await >= N as i64).then_some(()) }).await;
    assert!(done.is_some(), "all follow-ups created; have {} after {:?}", tasks().await, started.elapsed());
    // Let redeliveries of jobs the killed workers held finish, then count again.
    app.settle(&admin).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(tasks().await, N as i64, "none lost, none doubled");
    assert_eq!(
        app.count("SELECT COUNT(DISTINCT subject_id) AS n FROM tasks WHERE type = 'follow_up' AND created_by LIKE 'automation:%'").await,
        N as i64,
        "one per inquiry"
    );
    // Graceful shutdown: SIGTERM lets the workers finish and exit cleanly.
    let status = sigterm(&mut workers).await;
    assert!(status.success(), "workers exit cleanly on SIGTERM: {status:?}");
}

/// A Redis of this test's own, on a free port, that the test can stop and start again.
struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let mut r = OwnRedis { port, child: None };
        r.restart();
        r
    }

    fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (installed by deploy/dev-services.sh)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "own redis came up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_succeed_while_redis_is_down_and_events_are_delivered_when_it_is_back() {
    let mut d = deployment().await;
    let port = free_port();
    let mut redis = OwnRedis::start(port);
    d.procs.set("REDIS_URL", format!("redis://127.0.0.1:{port}"));
    let _api = d.procs.spawn("api");
    let _workers = d.procs.spawn("workers");
    wait_healthy(&d.base).await;
    let app = &d.app;
    let admin = app.login("admin@virel.com").await;
    app.settle(&admin).await;
    phone_rule(app, &admin).await;
    let tasks =
        || app.count("SELECT COUNT(*) AS n FROM tasks WHERE type = 'follow_up' AND created_by LIKE 'automation:%'");
    let inquiry = async |n: u32| {
        app.ok(
            &admin,
            "/inquiries",
            json!({"source": "phone", "client": {"name": format!("Caller {n}"), "phone": format!("+4479100{n:05}")}}),
            201,
        )
        .await;
    };
    for n in 0..3 {
        inquiry(n).await;
    }
    assert!(app.eventually(10, || async { (tasks().await == 3).then_some(()) }).await.is_some());

    redis.stop();
    for n in 3..8 {
        inquiry(n).await; // the write succeeds: its events wait in the outbox
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        app.count("SELECT COUNT(*) AS n FROM domain_events WHERE dispatched_at IS NULL").await > 0,
        "events wait in the outbox"
    );
    assert_eq!(tasks().await, 3, "nothing runs while the queue is down");
    let (s, health) = app.send(reqwest::Method::GET, None, "/health", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(health["checks"]["queue"]["status"], "down", "{health}");

    redis.restart();
    let delivered = app.eventually(60, || async { (tasks().await == 8).then_some(()) }).await;
    assert!(delivered.is_some(), "delivered when Redis is back; have {}", tasks().await);
    app.settle(&admin).await;
    assert_eq!(tasks().await, 8, "and none doubled");
}

/// A `workers` process serves its own metrics (`VIREL_METRICS_BIND`, with the scrape token):
/// the jobs it ran and the events its relay moved, which the API process never sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_workers_process_serves_the_metrics_of_the_jobs_it_runs() {
    let mut d = deployment().await;
    let port = free_port();
    d.procs.set("VIREL_METRICS_BIND", format!("127.0.0.1:{port}"));
    d.procs.set("VIREL_METRICS_TOKEN", "workers-scrape-token-0123".into());
    let _api = d.procs.spawn("api");
    let _workers = d.procs.spawn("workers");
    wait_healthy(&d.base).await;
    let app = &d.app;
    let admin = app.login("admin@virel.com").await;
    app.settle(&admin).await;
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let scrape = async |token: Option<&str>| {
        let mut r = http.get(&url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.expect("the workers' metrics listener answers");
        (r.status(), r.text().await.unwrap_or_default())
    };
    assert_eq!(scrape(None).await.0, StatusCode::UNAUTHORIZED, "not without the token");
    assert_eq!(scrape(Some("workers-scrape-token-0124")).await.0, StatusCode::UNAUTHORIZED, "nor a wrong one");
    let events = |text: &str| {
        let (_, samples) = crate::metrics::parse(text);
        crate::metrics::sum(&samples, "virel_jobs_processed_total", &[("kind", "event")])
    };
    let relayed = |text: &str| crate::metrics::sum(&crate::metrics::parse(text).1, "virel_relay_events_total", &[]);
    let (s, before) = scrape(Some("workers-scrape-token-0123")).await;
    assert_eq!(s, StatusCode::OK);
    app.ok(
        &admin,
        "/inquiries",
        json!({"source": "web", "client": {"name": "Scraped", "phone": "+447700900321"}}),
        201,
    )
    .await;
    let moved = app
        .eventually(20, || async {
            let (_, now) = scrape(Some("workers-scrape-token-0123")).await;
            (events(&now) > events(&before) && relayed(&now) > relayed(&before)).then_some(())
        })
        .await;
    assert!(moved.is_some(), "the workers' job and relay counters moved");
}
