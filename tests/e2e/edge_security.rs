//! The HTTP edge: request ids on every log line, no secrets in the logs, no panics under
//! concurrent connections, body caps however a body is framed, cookies only from the same
//! origin, auth answers never stored, notes only on visible subjects, a terse health check.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `virel` binary in its embedded mode (SQLite, demo data) in a temporary directory, its
/// stdout and stderr written to one log file.
struct Spawned {
    child: Child,
    base: String,
    log: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Spawned {
    async fn start() -> Spawned {
        let dir = std::env::temp_dir().join(format!("virel-edge-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("virel.log");
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_virel"))
            .arg("all")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env("VIREL_DATA_DIR", dir.join("data"))
            .env("VIREL_BIND", format!("127.0.0.1:{port}"))
            .env("JWT_SECRET", "edge-test-secret-edge-test-secret-edge")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn virel");
        let base = format!("http://127.0.0.1:{port}/api/v1");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while http.get(format!("{base}/health")).send().await.map(|r| r.status() != StatusCode::OK).unwrap_or(true) {
            assert!(Instant::now() < deadline, "virel came up: {}", std::fs::read_to_string(&log).unwrap_or_default());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Spawned { child, base, log, dir }
    }

    /// The log so far, without terminal colour codes.
    fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    async fn login(&self, http: &reqwest::Client, email: &str) -> String {
        let r = http
            .post(format!("{}/auth/login", self.base))
            .json(&json!({"email": email, "password": "password123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_log_line_of_a_request_carries_its_id_and_no_secret() {
    let app = Spawned::start().await;
    let http = reqwest::Client::new();
    let token = app.login(&http, "admin@virel.com").await;
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let id = |n: &str| format!("abc-{n}-{tag}");

    // A few kinds of request, each with its own id.
    let r = http.get(format!("{}/health", app.base)).header("x-request-id", id("health")).send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], id("health").as_str(), "the caller's id is echoed");
    let r = http
        .post(format!("{}/auth/login", app.base))
        .header("x-request-id", id("login"))
        .json(&json!({"email": "admin@virel.com", "password": "wrong-password-for-the-log"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .get(format!("{}/action-center?mine=true", app.base))
        .header("x-request-id", id("list"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http.get(format!("{}/no-such-route", app.base)).header("x-request-id", id("404")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The live feed with its token in the query string.
    {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/ws?token={token}", app.base.replacen("http://", "ws://", 1));
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert("x-request-id", id("ws").parse().unwrap());
        let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.expect("websocket connects");
        assert_eq!(resp.headers()["x-request-id"], id("ws").as_str());
        let _ = crate::action_center::next_json(&mut ws, Duration::from_secs(5)).await;
        let _ = ws.close(None).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = app.log();
    app.stop().await;

    for n in ["health", "login", "list", "404", "ws"] {
        let want = id(n);
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(&want)).collect();
        assert!(
            lines.iter().any(|l| l.contains("status=") && l.contains("path=/api/v1/")),
            "the response line of {n} carries its id {want}:\n{log}"
        );
    }
    // Every access-log line is inside a request's span.
    for l in log.lines().filter(|l| l.contains("status=") && l.contains("path=")) {
        assert!(l.contains("request_id="), "an access-log line without a request id: {l}");
    }
    // Nothing secret, and no query strings.
    for secret in [token.as_str(), "wrong-password-for-the-log", "token=", "Bearer ", "mine=true"] {
        assert!(!log.contains(secret), "the log holds {secret:?}:\n{log}");
    }
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_busy_connections_raise_no_panic() {
    let app = Spawned::start().await;
    let token = app.login(&reqwest::Client::new(), "admin@virel.com").await;
    let until = Instant::now() + Duration::from_secs(6);
    let mut tasks = Vec::new();
    for n in 0..20 {
        let (base, token) = (app.base.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            // One client per task: its own connection.
            let http = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
            let mut done = 0u32;
            while Instant::now() < until {
                let r = match done % 4 {
                    0 => http.get(format!("{base}/health")).send().await,
                    1 => http.get(format!("{base}/me")).bearer_auth(&token).send().await,
                    2 => http.get(format!("{base}/action-center")).bearer_auth(&token).send().await,
                    _ => http.get(format!("{base}/inquiries?limit=5")).bearer_auth(&token).send().await,
                };
                let r = r.unwrap_or_else(|e| panic!("task {n}: request failed: {e}"));
                assert!(!r.status().is_server_error(), "task {n}: {}", r.status());
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("a load task");
    }
    let log = app.log();
    app.stop().await;
    assert!(total > 100, "the load ran ({total} requests)");
    assert!(!log.contains("panicked"), "a panic under load:\n{}", &log[log.find("panicked").unwrap_or(0)..]);
}
