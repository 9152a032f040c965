//! Outgoing webhooks end to end, with a local HTTP server as the subscriber: a signed
//! delivery that verifies with the README's algorithm; a subscriber answering 500 retried with
//! growing delays, dead, visible, retryable and raising `webhook_failed`; loopback, private
//! and metadata targets refused by default (422 at save, and a host name resolving to
//! 127.0.0.1 refused at delivery); the secret never in a later answer nor in a log line.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use poem::{Request, Response};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::fixtures;
use crate::harness::{Engine, TestApp, WorkerOptions};

/// A request the subscriber received.
#[derive(Clone, Debug)]
struct Received {
    at: Instant,
    signature: Option<String>,
    event_id: Option<String>,
    event_type: Option<String>,
    body: Vec<u8>,
}

/// The subscriber: records every request and answers `status`.
struct Subscriber {
    addr: std::net::SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<Mutex<u16>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Subscriber {
    async fn start(status: u16) -> Subscriber {
        let received = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(Mutex::new(status));
        let (rec, st) = (received.clone(), status.clone());
        let app = poem::endpoint::make(move |mut req: Request| {
            let (rec, st) = (rec.clone(), st.clone());
            async move {
                let h = |k: &str| req.headers().get(k).and_then(|v| v.to_str().ok()).map(String::from);
                let (signature, event_id, event_type) =
                    (h("virel-signature"), h("virel-event-id"), h("virel-event-type"));
                let body = req.take_body().into_vec().await.unwrap_or_default();
                rec.lock().unwrap().push(Received { at: Instant::now(), signature, event_id, event_type, body });
                let code = *st.lock().unwrap();
                Response::builder().status(poem::http::StatusCode::from_u16(code).unwrap()).body("ok")
            }
        });
        let acceptor =
            poem::listener::Listener::into_acceptor(poem::listener::TcpListener::bind("127.0.0.1:0")).await.unwrap();
        let addr = poem::listener::Acceptor::local_addr(&acceptor)[0].as_socket_addr().cloned().unwrap();
        let server = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        Subscriber { addr, received, status, server }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// The README's verification, step by step: split the header, recompute
/// HMAC-SHA256(secret, "<t>.<raw body>") in hex, compare in constant time, check the age.
fn verify(secret: &str, header: &str, body: &[u8], tolerance_secs: i64) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1.push(v.to_string()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (chrono::Utc::now().timestamp() - t).abs() > tolerance_secs {
        return false;
    }
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    v1.iter().any(|sig| {
        let Ok(sig) = hex::decode(sig) else { return false };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&signed);
        mac.verify_slice(&sig).is_ok()
    })
}

/// Log lines of the whole process, captured (when no other subscriber took the global slot:
/// nextest runs each test in its own process; with `TEST_LOG` set the harness owns it).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Option<Capture> {
    if std::env::var_os("TEST_LOG").is_some() {
        return None;
    }
    let cap = Capture::default();
    let c = cap.clone();
    let sub = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug,sqlx=debug,hyper=info,h2=info,rustls=info"))
        .with_ansi(false)
        .with_writer(move || c.clone())
        .finish();
    tracing::subscriber::set_global_default(sub).ok().map(|_| cap)
}

fn options(allow_private: bool) -> WorkerOptions {
    WorkerOptions {
        retry: virel_workers::RetrySettings { attempts_default: 4, base: Duration::from_secs(1), ..Default::default() },
        scheduler: false,
        webhook_allow_private: allow_private,
        ..Default::default()
    }
}

async fn subscribe(app: &TestApp, token: &str, url: &str, types: &[&str]) -> Value {
    app.ok(token, "/webhooks/subscriptions", json!({"url": url, "event_types": types}), 201).await
}

async fn deliveries(app: &TestApp, token: &str, sub: &str, status: &str) -> Vec<Value> {
    let (s, b) = app.get(token, &format!("/webhooks/deliveries?subscription_id={sub}&status={status}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["items"].as_array().unwrap().clone()
}

// ---------------------------------------------------------------------------------------

async fn signed_delivery_verifies(engine: Engine) {
    let logs = capture_logs();
    let app = TestApp::start_full(engine, options(true)).await;
    let owner = app.login("admin@virel.com").await;
    let hook = Subscriber::start(200).await;
    let created = subscribe(&app, &owner, &format!("http://{}/hook", hook.addr), &["inquiry.created"]).await;
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{created}");
    let sub = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["event_types"], json!(["inquiry.created"]));
    assert_eq!(created["enabled"], true);

    let inquiry = fixtures::inquiry(&app, &owner, "web").await;
    let got = app
        .eventually(20, || async { hook.received().first().cloned() })
        .await
        .expect("the subscriber receives the delivery");

    // The signature verifies with the documented algorithm, and only with the right secret
    // over the exact bytes.
    let header = got.signature.clone().expect("Virel-Signature");
    assert!(header.starts_with("t=") && header.contains(",v1="), "{header}");
    assert!(verify(&secret, &header, &got.body, 300), "the delivery verifies: {header}");
    assert!(!verify("whsec_wrong", &header, &got.body, 300));
    let mut tampered = got.body.clone();
    tampered.push(b' ');
    assert!(!verify(&secret, &header, &tampered, 300));

    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body["type"], "inquiry.created");
    assert_eq!(got.event_type.as_deref(), Some("inquiry.created"));
    assert_eq!(got.event_id.as_deref(), body["id"].as_str());
    assert_eq!(body["subject_id"], inquiry["id"], "{body}");

    // Recorded as delivered with the subscriber's answer.
    let done = app
        .eventually(10, || async { deliveries(&app, &owner, &sub, "delivered").await.first().cloned() })
        .await
        .expect("the delivery is recorded as delivered");
    assert_eq!(done["response_code"], 200, "{done}");
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["event_id"].as_str(), got.event_id.as_deref());

    // Events of other types are not sent; an update and a disable take effect.
    let (s, b) = app
        .send(
            reqwest::Method::PUT,
            Some(&owner),
            &format!("/webhooks/subscriptions/{sub}"),
            Some(json!({"url": format!("http://{}/hook", hook.addr), "event_types": ["inquiry.created"], "enabled": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["enabled"], false);
    fixtures::inquiry(&app, &owner, "web").await;
    app.settle(&owner).await;
    assert_eq!(hook.received().len(), 1, "a disabled subscription gets nothing");

    // Even with private targets allowed, the metadata address is refused.
    let (s, b) = app
        .post(
            Some(&owner),
            "/webhooks/subscriptions",
            json!({"url": "http://169.254.169.254/latest/meta-data/", "event_types": ["inquiry.created"]}),
        )
        .await;
    assert_eq!(s.as_u16(), 422, "{b}");

    // The secret is never shown again: get, list, deliveries, audit.
    for path in [
        format!("/webhooks/subscriptions/{sub}"),
        "/webhooks/subscriptions".to_string(),
        "/webhooks/deliveries".to_string(),
        "/audit?limit=200".to_string(),
    ] {
        let (s, b) = app.get(&owner, &path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
        assert!(!b.to_string().contains(&secret), "{path} shows the secret");
    }
    // Only the OWNER manages subscriptions.
    let ops = app.login("tommy@virel.com").await;
    let (s, _) = app.get(&ops, "/webhooks/subscriptions").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.get(&ops, "/webhooks/deliveries").await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    if let Some(logs) = logs {
        let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
        assert!(text.lines().count() > 10, "the log capture saw the run");
        assert!(!text.contains(&secret), "a log line holds the webhook secret");
        assert!(!text.contains(&secret["whsec_".len()..]), "a log line holds the webhook secret");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_delivery_verifies_sqlite() {
    signed_delivery_verifies(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_delivery_verifies_postgres() {
    signed_delivery_verifies(Engine::Postgres).await;
}

// ---------------------------------------------------------------------------------------

async fn failing_subscriber_is_retried_then_dead(engine: Engine) {
    let app = TestApp::start_full(engine, options(true)).await;
    let owner = app.login("admin@virel.com").await;
    let hook = Subscriber::start(500).await;
    let created = subscribe(&app, &owner, &format!("http://{}/hook", hook.addr), &["inquiry.created"]).await;
    let sub = created["id"].as_str().unwrap().to_string();
    fixtures::inquiry(&app, &owner, "web").await;

    // Four attempts, with growing delays (backoff 0.5–1 s, 1–2 s, 2–4 s, in whole seconds).
    let failed = app
        .eventually(30, || async { deliveries(&app, &owner, &sub, "failed").await.first().cloned() })
        .await
        .expect("the delivery ends failed");
    assert_eq!(failed["attempts"], 4, "{failed}");
    assert_eq!(failed["response_code"], 500);
    assert!(failed["last_error"].as_str().unwrap().contains("500"), "{failed}");
    let times: Vec<Instant> = hook.received().iter().map(|r| r.at).collect();
    assert_eq!(times.len(), 4, "one request per attempt");
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[2] > gaps[0], "delays grow: {gaps:?}");
    assert!(gaps[0] >= Duration::from_millis(400), "a retry waits: {gaps:?}");
    // Every attempt is signed, with the same event id.
    let ids: Vec<_> = hook.received().iter().map(|r| r.event_id.clone().unwrap()).collect();
    assert!(ids.iter().all(|i| *i == ids[0]));

    // Dead, visible, with its own exception instead of job_failed.
    let dead = app
        .eventually(10, || async {
            let (_, q) = app.get(&owner, "/system/queue").await;
            q["dead_jobs"].as_array()?.iter().find(|d| d["kind"] == "webhook_delivery").cloned()
        })
        .await
        .expect("the dead delivery shows among the dead jobs");
    assert_eq!(dead["queue"], "ops");
    let exc = app
        .eventually(10, || async {
            let (_, b) = app.get(&owner, "/exceptions?type=webhook_failed").await;
            b["items"].as_array()?.first().cloned()
        })
        .await
        .expect("a webhook_failed exception");
    assert!(exc["title"].as_str().unwrap().contains(&hook.addr.to_string()), "{exc}");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM exceptions WHERE type = 'job_failed'").await, 0);

    // Retried from the dead jobs once the subscriber is back: delivered.
    *hook.status.lock().unwrap() = 200;
    let (s, b) = app
        .post(Some(&owner), &format!("/system/queue/ops/jobs/{}/retry", dead["id"].as_str().unwrap()), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let done = app
        .eventually(20, || async { deliveries(&app, &owner, &sub, "delivered").await.first().cloned() })
        .await
        .expect("the retried delivery is delivered");
    assert_eq!(done["attempts"], 5, "{done}");
    assert_eq!(done["response_code"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_subscriber_is_retried_then_dead_sqlite() {
    failing_subscriber_is_retried_then_dead(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_subscriber_is_retried_then_dead_postgres() {
    failing_subscriber_is_retried_then_dead(Engine::Postgres).await;
}

// ---------------------------------------------------------------------------------------

async fn private_targets_are_refused_by_default(engine: Engine) {
    let app = TestApp::start_full(engine, options(false)).await;
    let owner = app.login("admin@virel.com").await;
    let hook = Subscriber::start(200).await;
    let port = hook.addr.port();

    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        "http://10.0.0.5/hook".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::1]/hook".to_string(),
        "http://100.64.0.1/hook".to_string(),
        "https://user:pw@hooks.example.com/".to_string(),
        "ftp://hooks.example.com/".to_string(),
    ] {
        let (s, b) = app
            .post(Some(&owner), "/webhooks/subscriptions", json!({"url": url, "event_types": ["inquiry.created"]}))
            .await;
        assert_eq!(s.as_u16(), 422, "{url}: {b}");
        assert!(b["error"]["message"].as_str().unwrap().starts_with("url"), "{url}: {b}");
    }
    let (s, b) = app
        .post(
            Some(&owner),
            "/webhooks/subscriptions",
            json!({"url": "https://hooks.example.com/", "event_types": ["no.such_event"]}),
        )
        .await;
    assert_eq!(s.as_u16(), 422, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("event_types"), "{b}");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM webhook_subscriptions").await, 0);

    // A host name that resolves to 127.0.0.1 passes the save and is refused at delivery.
    let created = subscribe(&app, &owner, &format!("http://localhost:{port}/hook"), &["inquiry.created"]).await;
    let sub = created["id"].as_str().unwrap().to_string();
    fixtures::inquiry(&app, &owner, "web").await;
    let failed = app
        .eventually(20, || async { deliveries(&app, &owner, &sub, "failed").await.first().cloned() })
        .await
        .expect("the delivery is recorded as failed");
    let err = failed["last_error"].as_str().unwrap();
    assert!(err.contains("refused") && err.contains("loopback"), "{failed}");
    assert_eq!(failed["response_code"], Value::Null);
    assert_eq!(failed["attempts"], 1, "a refused target is not retried");
    app.eventually(10, || async {
        let (_, b) = app.get(&owner, "/exceptions?type=webhook_failed").await;
        b["items"].as_array()?.first().cloned()
    })
    .await
    .expect("a webhook_failed exception");
    app.settle(&owner).await;
    assert!(hook.received().is_empty(), "nothing reached the loopback subscriber");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn private_targets_are_refused_by_default_sqlite() {
    private_targets_are_refused_by_default(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn private_targets_are_refused_by_default_postgres() {
    private_targets_are_refused_by_default(Engine::Postgres).await;
}
