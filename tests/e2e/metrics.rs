//! `GET /api/v1/system/metrics`: Prometheus text that parses, with real histograms, whose
//! counters move as jobs run. The recorder is process-wide (tests run in parallel), so the
//! checks compare before and after and ask for at least this test's own share.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;
use virel_domain::jobs::kinds::Custom;

use crate::harness::{Engine, TestApp, WorkerOptions};

/// The value of one series (summed over the labels not named), as the app's metrics say now.
pub async fn series(app: &TestApp, token: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    sum(&scrape(app, token).await.1, name, want)
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A small parser of the Prometheus text exposition format: `# HELP` / `# TYPE` lines and
/// `name{label="value",...} number` samples. Panics on anything else.
pub fn parse(text: &str) -> (HashMap<String, String>, Vec<Sample>) {
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("# TYPE name type");
            assert!(matches!(ty, "counter" | "gauge" | "histogram" | "summary" | "untyped"), "type {ty}");
            types.insert(name.to_string(), ty.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("a number in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("closing brace: {line}"));
                let mut labels = BTreeMap::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert_eq!(chars.next(), Some('"'), "a quoted label value: {line}");
                    let mut v = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => v.push(chars.next().expect("escape")),
                            '"' => break,
                            c => v.push(c),
                        }
                    }
                    assert!(
                        !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "label name {key:?}"
                    );
                    labels.insert(key, v);
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                }
                (name.to_string(), labels)
            }
        };
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "metric name {name:?}");
        samples.push(Sample { name, labels, value });
    }
    (types, samples)
}

pub fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

pub async fn scrape(app: &TestApp, token: &str) -> (HashMap<String, String>, Vec<Sample>) {
    let r = app.http.get(format!("{}/system/metrics", app.base)).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    parse(&r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_parse_as_prometheus_text_and_move_as_jobs_run() {
    let ok: virel_workers::CustomHandler = Arc::new(|_| Box::pin(async { Ok(()) }));
    let fails: virel_workers::CustomHandler = Arc::new(|_| Box::pin(async { Err("the provider said no".into()) }));
    let opts = WorkerOptions {
        retry: virel_workers::RetrySettings {
            attempts_default: 2,
            base: std::time::Duration::from_millis(50),
            ..Default::default()
        },
        handlers: vec![("metrics_ok".into(), ok), ("metrics_fails".into(), fails)],
        scheduler: false,
        ..Default::default()
    };
    let app = TestApp::start_full(Engine::Sqlite, opts).await;
    let admin = app.login("admin@virel.com").await;
    app.settle(&admin).await;

    // Not without a credential, not without system:read.
    let r = app.http.get(format!("{}/system/metrics", app.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let operator = app.login("lukas@virel.com").await;
    let r = app.http.get(format!("{}/system/metrics", app.base)).bearer_auth(&operator).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let (_, before) = scrape(&app, &admin).await;
    let processed = |s: &[Sample]| sum(s, "virel_jobs_processed_total", &[("queue", "ops"), ("kind", "custom")]);
    let q = app.queues.as_ref().unwrap();
    for i in 0..5 {
        q.push(virel_workers::Job::new(&Custom { name: "metrics_ok".into(), payload: json!({"i": i}) }), None)
            .await
            .unwrap();
    }
    q.push(virel_workers::Job::new(&Custom { name: "metrics_fails".into(), payload: json!({}) }), None).await.unwrap();
    // An inquiry: its events go through the relay and the event jobs; one id in a path.
    let inquiry = app
        .ok(
            &admin,
            "/inquiries",
            json!({"source": "web", "client": {"name": "Metrics", "phone": "+447700900555"}}),
            201,
        )
        .await;
    let (s, _) = app.get(&admin, &format!("/inquiries/{}", inquiry["id"].as_str().unwrap())).await;
    assert_eq!(s, StatusCode::OK);

    let moved = app
        .eventually(20, || async {
            let (_, now) = scrape(&app, &admin).await;
            let dead = |s: &[Sample]| sum(s, "virel_jobs_dead_total", &[("queue", "ops"), ("kind", "custom")]);
            let events = |s: &[Sample]| sum(s, "virel_jobs_processed_total", &[("queue", "ops"), ("kind", "event")]);
            let ok = processed(&now) - processed(&before) >= 5.0
                && dead(&now) - dead(&before) >= 1.0
                && events(&now) > events(&before);
            ok.then_some(now)
        })
        .await;
    let (types, now) = scrape(&app, &admin).await;
    assert!(moved.is_some(), "job counters moved: processed custom {} → {}", processed(&before), processed(&now));
    let failed = |s: &[Sample]| sum(s, "virel_jobs_failed_total", &[("queue", "ops"), ("kind", "custom")]);
    let retried = |s: &[Sample]| sum(s, "virel_jobs_retried_total", &[("queue", "ops"), ("kind", "custom")]);
    assert!(failed(&now) - failed(&before) >= 2.0, "both attempts of the failing job counted");
    assert!(retried(&now) - retried(&before) >= 1.0, "its retry counted");

    // Real histograms, not summaries, with buckets up to +Inf.
    for h in [
        "virel_http_request_duration_seconds",
        "virel_job_wait_seconds",
        "virel_job_run_seconds",
        "virel_relay_batch_size",
    ] {
        assert_eq!(types.get(h).map(String::as_str), Some("histogram"), "{h} is a histogram");
        let buckets: Vec<&Sample> = now.iter().filter(|s| s.name == format!("{h}_bucket")).collect();
        assert!(buckets.iter().any(|s| s.labels.get("le").map(String::as_str) == Some("+Inf")), "{h} has +Inf");
        assert!(buckets.len() > 5, "{h} has buckets");
        assert!(sum(&now, &format!("{h}_count"), &[]) > 0.0, "{h} observed something");
    }
    assert!(!types.values().any(|t| t == "summary"), "no summaries");
    // HTTP by route template and status: ids replaced, not one series per inquiry.
    let routes: Vec<&str> = now
        .iter()
        .filter(|s| s.name == "virel_http_requests_total")
        .filter_map(|s| s.labels.get("route").map(String::as_str))
        .collect();
    assert!(routes.contains(&"/api/v1/inquiries/{id}"), "route template: {routes:?}");
    assert!(!routes.iter().any(|r| r.contains(inquiry["id"].as_str().unwrap())), "no raw ids in labels");
    assert!(
        sum(&now, "virel_http_requests_total", &[("route", "/api/v1/system/metrics"), ("status", "403")]) >= 1.0,
        "statuses are labels"
    );
    assert!(sum(&now, "virel_relay_events_total", &[]) >= 1.0, "the relay counts what it moves");
    assert!(now.iter().any(|s| s.name == "virel_outbox_backlog"), "outbox backlog gauge");
    assert!(now.iter().any(|s| s.name == "virel_outbox_lag_seconds"), "outbox lag gauge");
}

/// The scrape token alone reads the metrics (and nothing else).
#[tokio::test]
async fn the_scrape_token_reads_the_metrics() {
    let db = virel_domain::Db::connect("sqlite::memory:", 1).await.unwrap();
    let mut state = virel_api::AppState::new(db, b"metrics-token-test-secret-metrics-token");
    state.metrics = Some(virel_api::metrics::install_recorder().expect("the metrics recorder"));
    state.metrics_token = Some("scrape-me-0123456789".into());
    let cli = poem::test::TestClient::new(virel_api::app(state.shared()));
    let r = cli.get("/api/v1/system/metrics").header("authorization", "Bearer scrape-me-0123456789").send().await;
    r.assert_status_is_ok();
    let text = r.0.into_body().into_string().await.unwrap();
    parse(&text);
    let r = cli.get("/api/v1/system/metrics").header("authorization", "Bearer scrape-me-0123456788").send().await;
    r.assert_status(poem::http::StatusCode::UNAUTHORIZED);
    let r = cli.get("/api/v1/me").header("authorization", "Bearer scrape-me-0123456789").send().await;
    r.assert_status(poem::http::StatusCode::UNAUTHORIZED);
}
