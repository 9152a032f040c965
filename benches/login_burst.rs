//! Login burst benchmark: does password hashing stall the rest of the API?
//!
//! `cargo bench --bench login_burst` starts the real HTTP server in this process on the
//! embedded mode (a seeded SQLite database in a temporary folder, removed at the end), then
//! measures `GET /api/v1/health` latency:
//! - `idle`: `BENCH_PROBES` (300) sequential requests with nothing else running;
//! - `burst`: the same probes, one every 5 ms, while `BENCH_LOGINS` (60) logins with the right
//!   password run at once, `BENCH_ROUNDS` (3) times. Each login comes from its own loopback
//!   address (127.0.1.x), so the login limit, which is per (account, address), stays out of it.
//!
//! Prints one JSON line per phase: `{"phase", "n", "p50_ms", "p99_ms", "max_ms", ...}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use virel_domain::Db;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(phase: &str, mut ms: Vec<f64>, extra: serde_json::Value) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let mut line = json!({
        "phase": phase,
        "n": ms.len(),
        "p50_ms": (percentile(&ms, 0.50) * 100.0).round() / 100.0,
        "p99_ms": (percentile(&ms, 0.99) * 100.0).round() / 100.0,
        "max_ms": (ms.last().copied().unwrap_or(0.0) * 100.0).round() / 100.0,
    });
    if let (Some(l), Some(e)) = (line.as_object_mut(), extra.as_object()) {
        l.extend(e.clone());
    }
    println!("{line}");
}

async fn probe(http: &reqwest::Client, url: &str) -> f64 {
    let t = Instant::now();
    let r = http.get(url).send().await.expect("health");
    let _ = r.bytes().await;
    t.elapsed().as_secs_f64() * 1000.0
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    let probes: usize = env_or("BENCH_PROBES", 300);
    let logins: usize = env_or("BENCH_LOGINS", 60);
    let rounds: usize = env_or("BENCH_ROUNDS", 3);

    let dir = std::env::temp_dir().join(format!("virel-bench-login-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = Db::connect(&format!("sqlite://{}", dir.join("virel.db").display()), 8).await.unwrap();
    db.migrate().await.unwrap();
    virel_domain::seed::seed_demo(&db).await.unwrap();
    let state = virel_api::AppState::new(db.clone(), b"bench-secret-bench-secret-bench-secret").shared();
    let acceptor =
        poem::listener::Listener::into_acceptor(poem::listener::TcpListener::bind("127.0.0.1:0")).await.unwrap();
    let addr = poem::listener::Acceptor::local_addr(&acceptor)[0].as_socket_addr().cloned().unwrap();
    let app = virel_api::app(state);
    let server = tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
    });
    let base = format!("http://{addr}/api/v1");
    let health = format!("{base}/health");
    let http = reqwest::Client::new();
    for _ in 0..20 {
        probe(&http, &health).await;
    }

    let mut idle = Vec::with_capacity(probes);
    for _ in 0..probes {
        idle.push(probe(&http, &health).await);
    }
    report("idle", idle, json!({"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)}));

    let clients: Arc<Vec<reqwest::Client>> = Arc::new(
        (0..logins)
            .map(|i| {
                let ip: std::net::IpAddr = format!("127.0.1.{}", i % 250 + 1).parse().unwrap();
                reqwest::Client::builder().local_address(ip).build().unwrap()
            })
            .collect(),
    );
    let mut during = Vec::new();
    let (mut ok, mut other, mut login_ms) = (0usize, 0usize, Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        let burst = futures::future::join_all((0..logins).map(|i| {
            let (clients, url) = (clients.clone(), format!("{base}/auth/login"));
            async move {
                let t = Instant::now();
                let r = clients[i]
                    .post(url)
                    .json(&json!({"email": "admin@virel.com", "password": "password123"}))
                    .send()
                    .await
                    .expect("login");
                (r.status().as_u16(), t.elapsed().as_secs_f64() * 1000.0)
            }
        }));
        tokio::pin!(burst);
        let results = loop {
            tokio::select! {
                r = &mut burst => break r,
                ms = async {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    probe(&http, &health).await
                } => during.push(ms),
            }
        };
        for (status, ms) in results {
            if status == 200 {
                ok += 1;
            } else {
                other += 1;
            }
            login_ms.push(ms);
        }
        let _ = started;
    }
    login_ms.sort_by(|a, b| a.total_cmp(b));
    let login_p50 = (percentile(&login_ms, 0.5) * 100.0).round() / 100.0;
    let login_max = (login_ms.last().copied().unwrap_or(0.0) * 100.0).round() / 100.0;
    report(
        "burst",
        during,
        json!({"logins": logins, "rounds": rounds, "login_ok": ok, "login_other": other,
               "login_p50_ms": login_p50, "login_max_ms": login_max}),
    );

    server.abort();
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
