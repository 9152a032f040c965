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
    _guard: Guard,
    server: tokio::task::JoinHandle<()>,
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

pub fn pg_admin_url() -> String {
    std::env::var("DATABASE_TEST_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, name: &str) -> String {
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
            (db, GuardHandle(Guard::Dir(dir)))
        }
        Engine::Postgres => {
            let admin = pg_admin_url();
            let name = format!("virel_test_{tag}");
            let mut c = sqlx::PgConnection::connect(&admin).await.expect("PostgreSQL for tests (DATABASE_TEST_URL)");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut c).await.unwrap();
            let guard = GuardHandle(Guard::PgDatabase { admin_url: admin.clone(), name: name.clone() });
            let db = Db::connect(&with_database(&admin, &name), 16).await.unwrap();
            db.migrate().await.unwrap();
            virel_domain::seed::seed_demo(&db).await.unwrap();
            (db, guard)
        }
    }
}

pub struct GuardHandle(Guard);

impl TestApp {
    pub async fn start(engine: Engine) -> TestApp {
        let (db, guard) = fresh_db(engine).await;
        let state = virel_api::AppState::new(db.clone(), b"test-secret-test-secret-test-secret!").shared();
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
            _guard: guard.0,
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

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
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
