//! A running Virel for each test: its own database (a temporary SQLite file, or a fresh
//! PostgreSQL database with a random name, dropped afterwards), migrated and seeded, and the
//! real HTTP server on a random port. Tests speak HTTP to it like any client.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;
use virel_domain::Db;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub db: Db,
    pub http: reqwest::Client,
    pub engine: Engine,
    /// The queues, when the app runs with workers.
    pub queues: Option<virel_workers::Queues>,
    pub runtime: Option<std::sync::Arc<virel_workers::Runtime>>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    background: Vec<tokio::task::JoinHandle<()>>,
    _redis: Option<RedisGuard>,
    _guard: Guard,
    server: tokio::task::JoinHandle<()>,
}

/// Deletes the Redis keys of one test's queue prefix.
pub struct RedisGuard {
    pub url: String,
    pub prefix: String,
}

impl Drop for RedisGuard {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let Ok(client) = redis::Client::open(url) else { return };
                let Ok(mut c) = client.get_multiplexed_async_connection().await else { return };
                let keys: Vec<String> =
                    redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut c).await.unwrap_or_default();
                for k in &keys {
                    let _: Result<i64, _> = redis::cmd("DEL").arg(k).query_async(&mut c).await;
                    let _: Result<i64, _> =
                        redis::cmd("ZREM").arg("core:apalis:queues:list").arg(k).query_async(&mut c).await;
                }
            });
        })
        .join();
    }
}

pub fn redis_url() -> String {
    std::env::var("REDIS_TEST_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// How a test's workers are set up.
#[derive(Clone)]
pub struct WorkerOptions {
    pub retry: virel_workers::RetrySettings,
    pub handlers: Vec<(String, virel_workers::CustomHandler)>,
    pub scheduler: bool,
    /// Schedulers to run (two prove the lease); the SLA sweep interval in seconds.
    pub schedulers: usize,
    pub sweep_secs: u32,
    /// The payment provider and webhook secrets, for the API and the workers (disabled by
    /// default).
    pub payments: virel_domain::payments::Payments,
    /// `VIREL_WEBHOOK_ALLOW_PRIVATE`: outgoing webhooks may target loopback and private
    /// addresses (a subscriber on 127.0.0.1 in the test).
    pub webhook_allow_private: bool,
    /// `VIREL_AUTOMATION_CASCADE_BUDGET` (the default when None).
    pub cascade_budget: Option<i64>,
    /// The notification channels the workers send through (every one disabled when None);
    /// `/health` shows their state.
    pub channels: Option<virel_workers::notify::Channels>,
    /// Verifies Twilio's status callbacks at `/webhooks/twilio`.
    pub twilio: Option<virel_api::TwilioHook>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            retry: virel_workers::RetrySettings::default(),
            handlers: vec![],
            scheduler: true,
            schedulers: 1,
            sweep_secs: 30,
            payments: virel_domain::payments::Payments::disabled(),
            webhook_allow_private: false,
            cascade_budget: None,
            channels: None,
            twilio: None,
        }
    }
}

enum Guard {
    Dir(std::path::PathBuf),
    PgDatabase { admin_url: String, name: String },
}

impl Drop for Guard {
    fn drop(&mut self) {
        match self {
            Guard::Dir(p) => {
                let _ = std::fs::remove_dir_all(p);
            }
            Guard::PgDatabase { admin_url, name } => {
                let (url, name) = (admin_url.clone(), name.clone());
                // Drop runs inside the test's runtime: use a thread with its own.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(async move {
                        if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .execute(&mut c)
                            .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// Logs go nowhere unless `TEST_LOG` is set (then it is the filter, e.g. `TEST_LOG=info`).
/// `TEST_LOG=info` (any filter) turns the system's logs on: shown with the test's output, or,
/// with `VIREL_TEST_LOG_DIR` set, written without colours to `DIR/<test>.<pid>.log` (one
/// file per test process), which `deploy/scan-logs.sh` scans for secrets.
pub fn init_tracing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(filter) = std::env::var("TEST_LOG") else { return };
        let builder = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter));
        let file = std::env::var_os("VIREL_TEST_LOG_DIR").and_then(|dir| {
            // nextest runs each test in its own process, named by its `--exact` argument.
            let test = std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_else(|| "e2e".into());
            let name: String =
                test.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '.' }).collect();
            let dir = std::path::PathBuf::from(dir);
            let _ = std::fs::create_dir_all(&dir);
            std::fs::File::create(dir.join(format!("{name}.{}.log", std::process::id()))).ok()
        });
        let _ = match file {
            Some(f) => builder.with_ansi(false).with_writer(std::sync::Mutex::new(f)).try_init(),
            None => builder.with_test_writer().try_init(),
        };
    });
}

/// Where a child `virel` process's output goes: a log file in `VIREL_TEST_LOG_DIR` (scanned
/// for secrets after the suite) when logging is on, else nowhere.
pub fn child_log(role: &str) -> (std::process::Stdio, std::process::Stdio) {
    let file = std::env::var_os("TEST_LOG").and(std::env::var_os("VIREL_TEST_LOG_DIR")).and_then(|dir| {
        let dir = std::path::PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        let tag = uuid::Uuid::now_v7().simple().to_string();
        std::fs::File::create(dir.join(format!("child.{role}.{tag}.log"))).ok()
    });
    match file.and_then(|f| f.try_clone().ok().map(|g| (f, g))) {
        Some((out, err)) => (out.into(), err.into()),
        None => (std::process::Stdio::null(), std::process::Stdio::null()),
    }
}

pub fn pg_admin_url() -> String {
    std::env::var("DATABASE_TEST_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn with_database(url: &str, name: &str) -> String {
    match url.rfind('/') {
        Some(i) if url[..i].contains('@') || url[..i].matches('/').count() >= 2 => {
            format!("{}/{}", &url[..i], name)
        }
        _ => format!("{url}/{name}"),
    }
}

/// A fresh, migrated and seeded database on `engine`.
pub async fn fresh_db(engine: Engine) -> (Db, GuardHandle) {
    let tag = uuid::Uuid::now_v7().simple().to_string();
    match engine {
        Engine::Sqlite => {
            let dir = std::env::temp_dir().join(format!("virel-test-{tag}"));
            std::fs::create_dir_all(&dir).unwrap();
            let db = Db::connect(&format!("sqlite://{}", dir.join("virel.db").display()), 8).await.unwrap();
            db.migrate().await.unwrap();
            virel_domain::seed::seed_demo(&db).await.unwrap();
            let url = format!("sqlite://{}", dir.join("virel.db").display());
            (db, GuardHandle(Guard::Dir(dir), url))
        }
        Engine::Postgres => {
            let admin = pg_admin_url();
            let name = format!("virel_test_{tag}");
            let mut c = sqlx::PgConnection::connect(&admin).await.expect("PostgreSQL for tests (DATABASE_TEST_URL)");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut c).await.unwrap();
            let guard = GuardHandle(Guard::PgDatabase { admin_url: admin.clone(), name: name.clone() }, String::new());
            let url = with_database(&admin, &name);
            let db = Db::connect(&url, 16).await.unwrap();
            db.migrate().await.unwrap();
            virel_domain::seed::seed_demo(&db).await.unwrap();
            (db, GuardHandle(guard.0, url))
        }
    }
}

/// Drops the test database when dropped; `.1` is its URL.
pub struct GuardHandle(Guard, pub String);

impl TestApp {
    pub async fn start(engine: Engine) -> TestApp {
        init_tracing();
        let (db, guard) = fresh_db(engine).await;
        Self::serve(engine, db, guard.0, None, Default::default()).await
    }

    /// The whole system in this process: API, worker pools with the outbox relay, and the
    /// scheduler; queues on SQLite (embedded) or on Redis under a random prefix (PostgreSQL).
    pub async fn start_full(engine: Engine, opts: WorkerOptions) -> TestApp {
        init_tracing();
        let (db, guard) = fresh_db(engine).await;
        let db = {
            let mut settings = db.settings().clone();
            settings.webhook_allow_private = opts.webhook_allow_private;
            if let Some(b) = opts.cascade_budget {
                settings.cascade_budget_per_minute = b;
            }
            db.with_settings(settings)
        };
        virel_domain::automation::seed_defaults(&db).await.unwrap();
        let liveness = virel_workers::Liveness { heartbeat: std::time::Duration::from_secs(1), ..Default::default() };
        let (queues, redis_guard) = match (&guard.0, engine) {
            (Guard::Dir(dir), _) => {
                (virel_workers::Queues::sqlite(&dir.join("queue.db"), &liveness).await.unwrap(), None)
            }
            (_, _) => {
                let prefix = format!("virel-test-{}", uuid::Uuid::now_v7().simple());
                let q = virel_workers::Queues::redis(&redis_url(), &prefix, &liveness).await.unwrap();
                (q, Some(RedisGuard { url: redis_url(), prefix }))
            }
        };
        let mut rt = virel_workers::Runtime::new(db.clone(), queues.clone(), opts.retry.clone())
            .with_payments(opts.payments.clone());
        let channel_state = opts.channels.as_ref().map(|c| c.status());
        if let Some(c) = opts.channels.clone() {
            rt = rt.with_notifier(std::sync::Arc::new(c));
        }
        for (name, h) in opts.handlers {
            rt = rt.with_handler(&name, h);
        }
        let rt = std::sync::Arc::new(rt);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let cfg = virel_workers::WorkerConfig { retry: opts.retry, liveness, ..Default::default() };
        let mut background = Vec::new();
        {
            let (rt, stop) = (rt.clone(), stop_rx.clone());
            background.push(tokio::spawn(async move {
                let _ = virel_workers::run(rt, cfg, stop).await;
            }));
        }
        for _ in 0..if opts.scheduler { opts.schedulers.max(1) } else { 0 } {
            let (db, q, stop) = (db.clone(), std::sync::Arc::new(queues.clone()), stop_rx.clone());
            let scfg = virel_scheduler::SchedulerConfig { sweep_secs: opts.sweep_secs, ..Default::default() };
            background.push(tokio::spawn(async move {
                let _ = virel_scheduler::run(db, q, scfg, stop).await;
            }));
        }

        let mut app =
            Self::serve_with(engine, db, guard.0, Some(queues.clone()), opts.payments, channel_state, opts.twilio)
                .await;
        app.queues = Some(queues);
        app.runtime = Some(rt);
        app.stop = Some(stop_tx);
        app.background = background;
        app._redis = redis_guard;
        app
    }

    /// A client of a server running elsewhere (another process), on `db`.
    pub fn attach(base: String, db: Db, engine: Engine) -> TestApp {
        TestApp {
            base,
            db,
            http: reqwest::Client::new(),
            engine,
            queues: None,
            runtime: None,
            stop: None,
            background: Vec::new(),
            _redis: None,
            _guard: Guard::Dir(std::env::temp_dir().join("virel-nothing-to-remove")),
            server: tokio::spawn(async {}),
        }
    }

    async fn serve(
        engine: Engine,
        db: Db,
        guard: Guard,
        queues: Option<virel_workers::Queues>,
        payments: virel_domain::payments::Payments,
    ) -> TestApp {
        Self::serve_with(engine, db, guard, queues, payments, None, None).await
    }

    async fn serve_with(
        engine: Engine,
        db: Db,
        guard: Guard,
        queues: Option<virel_workers::Queues>,
        payments: virel_domain::payments::Payments,
        channels: Option<Vec<virel_domain::commands::notifications::ChannelState>>,
        twilio: Option<virel_api::TwilioHook>,
    ) -> TestApp {
        let mut state = virel_api::AppState::new(db.clone(), b"test-secret-test-secret-test-secret!");
        state.payments = payments;
        if let Some(c) = channels {
            state.channels = c;
        }
        state.twilio = twilio;
        // One recorder per test process (installed by the first app, behind a OnceLock).
        state.metrics = Some(virel_api::metrics::install_recorder().expect("the metrics recorder"));
        if let Some(q) = queues {
            state.live_redis = q.live_channel();
            state.queues = Some(std::sync::Arc::new(q));
        }

        let state = state.shared();
        let acceptor =
            poem::listener::Listener::into_acceptor(poem::listener::TcpListener::bind("127.0.0.1:0")).await.unwrap();
        let addr = poem::listener::Acceptor::local_addr(&acceptor)[0].as_socket_addr().cloned().unwrap();
        let app = virel_api::app(state);
        let server = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        TestApp {
            base: format!("http://{addr}/api/v1"),
            db,
            http: reqwest::Client::new(),
            engine,
            queues: None,
            runtime: None,
            stop: None,
            background: Vec::new(),
            _redis: None,
            _guard: guard,
            server,
        }
    }

    pub async fn login(&self, email: &str) -> String {
        let (s, body) = self.post(None, "/auth/login", json!({"email": email, "password": "password123"})).await;
        assert_eq!(s, StatusCode::OK, "login {email}: {body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        token: Option<&str>,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, value)
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, Some(token), path, None).await
    }

    pub async fn post(&self, token: Option<&str>, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, token, path, Some(body)).await
    }

    pub async fn patch(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PATCH, Some(token), path, Some(body)).await
    }

    /// Posts and insists on `expect`, returning the body.
    pub async fn ok(&self, token: &str, path: &str, body: Value, expect: u16) -> Value {
        let (s, b) = self.post(Some(token), path, body).await;
        assert_eq!(s.as_u16(), expect, "POST {path}: {b}");
        b
    }

    /// Rows in a table, straight from the database.
    pub async fn count(&self, sql: &'static str) -> i64 {
        #[derive(sqlx::FromRow)]
        struct N {
            n: i64,
        }
        let mut h = self.db.acquire().await.unwrap();
        virel_domain::q_one!(&mut h.conn(), N, sql).unwrap().n
    }

    pub async fn first_id(&self, token: &str, path: &str) -> String {
        let (s, b) = self.get(token, path).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["items"][0]["id"].as_str().unwrap().to_string()
    }

    pub async fn user_id(&self, email: &str) -> String {
        let admin = self.login("admin@virel.com").await;
        let (_, b) = self.get(&admin, "/users?limit=200").await;
        b["items"].as_array().unwrap().iter().find(|u| u["email"] == email).unwrap()["id"].as_str().unwrap().to_string()
    }
}

impl TestApp {
    /// Stops workers and scheduler gracefully and waits for them.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        for h in self.background.drain(..) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(40), h).await;
        }
    }

    /// Waits until every committed event is on a queue and no job is pending or running.
    pub async fn settle(&self, admin_token: &str) {
        // Idle (nothing undispatched, pending or running) twice in a row, 300 ms apart, with no
        // domain event written in between: a job between two of those states, or a rule's
        // effect still being committed, is not mistaken for quiet.
        let idle = || async {
            let (_, q) = self.get(admin_token, "/system/queue").await;
            let busy =
                q["queues"].as_array().is_none_or(|qs| qs.iter().any(|q| q["pending"] != 0 || q["running"] != 0));
            q["outbox"]["undispatched"] == 0 && !busy
        };
        let events = || self.count("SELECT COUNT(*) AS n FROM domain_events");
        let quiet = self
            .eventually(30, || async {
                if !idle().await {
                    return None;
                }
                let before = events().await;
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                (idle().await && events().await == before).then_some(())
            })
            .await;
        assert!(quiet.is_some(), "the queues did not settle");
    }

    /// Polls `f` until it returns Some or `secs` pass.
    pub async fn eventually<T, F, Fut>(&self, secs: u64, mut f: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if let Some(v) = f().await {
                return Some(v);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        for h in &self.background {
            h.abort();
        }
        self.server.abort();
    }
}

/// Like `both_engines!`, with the workers and scheduler running in the test process.
#[macro_export]
macro_rules! both_engines_full {
    ($name:ident, $opts:expr, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let app = $crate::harness::TestApp::start_full($crate::harness::Engine::Sqlite, $opts).await;
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres_redis() {
                let app = $crate::harness::TestApp::start_full($crate::harness::Engine::Postgres, $opts).await;
                ($body)(app).await;
            }
        }
    };
}

/// Defines one test per engine: `mod name { sqlite(); postgres(); }` running the same body.
#[macro_export]
macro_rules! both_engines {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let app = $crate::harness::TestApp::start($crate::harness::Engine::Sqlite).await;
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let app = $crate::harness::TestApp::start($crate::harness::Engine::Postgres).await;
                ($body)(app).await;
            }
        }
    };
}
