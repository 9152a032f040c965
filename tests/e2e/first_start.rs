//! The first start of the `virel` binary (SPEC §15): the embedded demo data, with its known
//! passwords, is served on loopback only unless VIREL_BIND says otherwise; a deployment that
//! names its first OWNER (VIREL_ADMIN_EMAIL / VIREL_ADMIN_PASSWORD) gets that account and no
//! demo users.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

struct Started {
    child: Child,
    out: Arc<Mutex<String>>,
    dir: std::path::PathBuf,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `virel all` on a fresh data dir (embedded mode) with `env`, keeping its log lines.
fn start(env: &[(&str, String)]) -> Started {
    let dir = std::env::temp_dir().join(format!("virel-first-start-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_virel"));
    c.arg("all")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("VIREL_BIND")
        .env_remove("VIREL_CONFIG")
        .env("VIREL_DATA_DIR", &dir)
        .env("RUST_LOG", "info")
        .env("VIREL_LOG_FORMAT", "text")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("spawn virel");
    let out = Arc::new(Mutex::new(String::new()));
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let out = out.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stream).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                out.lock().unwrap().push_str(&l);
                out.lock().unwrap().push('\n');
            }
        });
    }
    Started { child, out, dir }
}

async fn wait_healthy(s: &mut Started, base: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/health")).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        if let Ok(Some(status)) = s.child.try_wait() {
            panic!("virel exited ({status}): {}", s.out.lock().unwrap());
        }
        assert!(Instant::now() < deadline, "virel came up: {}", s.out.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// This machine's first non-loopback IPv4 address (`hostname -I`), if it has one.
fn outside_address() -> Option<std::net::IpAddr> {
    let out = std::process::Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_demo_listens_on_loopback_only() {
    // The default port is the point here (no VIREL_BIND): skip when something else holds it.
    if std::net::TcpListener::bind("0.0.0.0:3000").is_err() {
        eprintln!("port 3000 is taken on this machine; skipping");
        return;
    }
    let mut s = start(&[]);
    let base = "http://127.0.0.1:3000/api/v1";
    wait_healthy(&mut s, base).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": "admin@virel.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the demo owner logs in from this machine");
    match outside_address() {
        Some(ip) => {
            let r = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect((ip, 3000))).await;
            assert!(!matches!(r, Ok(Ok(_))), "{ip}:3000 must refuse: the demo data is served on loopback only");
        }
        None => eprintln!("no non-loopback address (hostname -I): the outside half is skipped"),
    }
    let log = s.out.lock().unwrap().clone();
    assert!(log.contains("127.0.0.1:3000"), "{log}");
    assert!(log.contains("log in as admin@virel.com"), "the banner names the demo login: {log}");
    assert!(!log.contains("password123"), "but never logs a password: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_first_owner_replaces_the_demo_users() {
    let port = free_port();
    let password = "first-owner-pass-123".to_string();
    let mut s = start(&[
        ("VIREL_BIND", format!("127.0.0.1:{port}")),
        ("VIREL_ADMIN_EMAIL", "Owner@Agency.example".into()),
        ("VIREL_ADMIN_PASSWORD", password.clone()),
    ]);
    let base = format!("http://127.0.0.1:{port}/api/v1");
    wait_healthy(&mut s, &base).await;
    let http = reqwest::Client::new();
    let login = async |email: &str, password: &str| {
        http.post(format!("{base}/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
    };
    let r = login("owner@agency.example", &password).await;
    assert_eq!(r.status(), StatusCode::OK, "the configured owner logs in");
    let token = r.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    assert_eq!(login("admin@virel.com", "password123").await.status(), StatusCode::UNAUTHORIZED);
    let users: serde_json::Value =
        http.get(format!("{base}/users")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let items = users["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "only the owner, no demo users: {users}");
    assert_eq!(items[0]["role"], "OWNER");
    assert_eq!(items[0]["email"], "owner@agency.example");
    let clients: serde_json::Value =
        http.get(format!("{base}/clients")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(clients["items"].as_array().unwrap().len(), 0, "no demo data: {clients}");
    let log = s.out.lock().unwrap().clone();
    assert!(!log.contains("admin@virel.com"), "no demo banner: {log}");
    assert!(!log.contains(&password), "the password is never logged: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_first_owner_password_is_refused_at_start() {
    let s = start(&[
        ("VIREL_BIND", format!("127.0.0.1:{}", free_port())),
        ("VIREL_ADMIN_EMAIL", "owner@agency.example".into()),
        ("VIREL_ADMIN_PASSWORD", "short-pass1".into()),
    ]);
    let mut s = s;
    let status = tokio::time::timeout(Duration::from_secs(30), s.child.wait()).await.expect("exits").unwrap();
    assert!(!status.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = s.out.lock().unwrap().clone();
    assert!(log.contains("VIREL_ADMIN_PASSWORD") && log.contains("12"), "{log}");
    assert!(!log.contains("short-pass1"), "{log}");
}

/// A scaled process on a database `virel migrate` never ran on stops at once and says so
/// (it does not migrate by itself, and does not fail later with an internal error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaled_process_on_an_unmigrated_database_says_to_run_migrate() {
    let admin = crate::harness::pg_admin_url();
    let name = format!("virel_test_{}", uuid::Uuid::now_v7().simple());
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.expect("PostgreSQL for tests");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut c).await.unwrap();
    let mut s = start(&[
        ("DATABASE_URL", crate::harness::with_database(&admin, &name)),
        ("JWT_SECRET", "unmigrated-test-secret-unmigrated-test".into()),
        ("VIREL_BIND", format!("127.0.0.1:{}", free_port())),
        ("VIREL_ADMIN_EMAIL", "owner@agency.example".into()),
        ("VIREL_ADMIN_PASSWORD", "a long enough secret".into()),
    ]);
    let status = tokio::time::timeout(Duration::from_secs(30), s.child.wait()).await.expect("exits").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = s.out.lock().unwrap().clone();
    let migrated: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE tablename = 'users')")
            .fetch_one(
                &mut <sqlx::PgConnection as sqlx::Connection>::connect(&crate::harness::with_database(&admin, &name))
                    .await
                    .unwrap(),
            )
            .await
            .unwrap();
    let _ =
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut c).await;
    assert!(!status.success(), "it does not start: {log}");
    assert!(log.contains("virel migrate"), "the error says what to do: {log}");
    assert!(!log.contains("internal error"), "{log}");
    assert!(!migrated, "and it wrote no schema");
}
