//! Prometheus metrics: the process-wide recorder (installed once by the binary, or by a test
//! harness), the names Virel records, and `route_template`, which keeps the HTTP labels
//! bounded. Every crate records through the `metrics` facade; the API renders the handle at
//! `GET /api/v1/system/metrics`.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `virel_http_requests_total` | counter | method, route, status |
//! | `virel_http_request_duration_seconds` | histogram | method, route |
//! | `virel_jobs_processed_total` / `_failed_total` / `_retried_total` / `_dead_total` | counter | queue, kind |
//! | `virel_job_wait_seconds` (enqueue → start) | histogram | queue, kind |
//! | `virel_job_run_seconds` (start → done) | histogram | queue, kind |
//! | `virel_outbox_backlog` (events not yet on a queue) | gauge, on scrape | |
//! | `virel_outbox_lag_seconds` (age of the oldest of them) | gauge, on scrape | |
//! | `virel_relay_batch_size` (events per relayed batch) | histogram | |
//! | `virel_relay_events_total` | counter | |
//! | `virel_websocket_connections` | gauge | |
//! | `virel_sla_warnings_total` / `virel_sla_breaches_total` | counter | |
//! | `virel_sla_escalations_total` | counter | level |
//! | `virel_notification_sends_total` (sent / retry / fallback / refused) | counter | channel, status |
//! | `virel_stripe_webhooks_total` (accepted / replay / rejected / disabled / error) | counter | outcome |

use std::sync::OnceLock;

pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Latency buckets (seconds) for every `*_seconds` histogram: 1 ms to 1 minute.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Buckets for the relay's batch sizes (events; a batch holds at most 200).
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0];

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the Prometheus recorder for this process, once; later calls return the same
/// handle. Histograms get real buckets (without them the exporter would write summaries).
/// Fails when another metrics recorder was installed first.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("virel_relay_batch_size".into()), BATCH_BUCKETS))
                .and_then(|b| b.install_recorder())
                .map_err(|e| format!("cannot install the Prometheus recorder: {e}"))?;
            describe();
            Ok(recorder)
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("virel_http_requests_total", "HTTP requests answered, by route template and status");
    describe_histogram!(
        "virel_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency, by route template"
    );
    describe_counter!("virel_jobs_processed_total", "Jobs run to completion");
    describe_counter!("virel_jobs_failed_total", "Failed job attempts (each then retried or dead)");
    describe_counter!("virel_jobs_retried_total", "Failed jobs pushed again after their backoff");
    describe_counter!("virel_jobs_dead_total", "Jobs whose attempts are spent (kept in dead_jobs)");
    describe_histogram!("virel_job_wait_seconds", metrics::Unit::Seconds, "From enqueue to the start of a run");
    describe_histogram!("virel_job_run_seconds", metrics::Unit::Seconds, "From the start of a run to its outcome");
    describe_gauge!("virel_outbox_backlog", "Committed events not yet on a queue");
    describe_gauge!("virel_outbox_lag_seconds", "Age of the oldest event not yet on a queue");
    describe_histogram!("virel_relay_batch_size", "Events moved to the queues per relay batch");
    describe_counter!("virel_relay_events_total", "Events moved to the queues by the relay");
    describe_gauge!("virel_websocket_connections", "Open live Action Center connections");
    describe_counter!("virel_sla_warnings_total", "Items warned as at risk by the SLA sweep");
    describe_counter!("virel_sla_breaches_total", "Items found breached (first escalation level)");
    describe_counter!("virel_sla_escalations_total", "SLA escalations, by level (1-3)");
    describe_counter!(
        "virel_notification_sends_total",
        "Attempts at a notification provider, by channel and status (sent, retry, fallback, refused)"
    );
    describe_counter!(
        "virel_stripe_webhooks_total",
        "Stripe webhook calls, by outcome (accepted, replay, rejected signature, disabled, error)"
    );
}

/// The metrics listener of a process without the API (`VIREL_METRICS_BIND`): `GET /metrics`
/// renders this process's recorder, with `Authorization: Bearer <token>`; anything else is
/// 404, a missing or wrong token 401. Without a token it answers only on loopback addresses
/// (`serve_metrics` refuses to bind elsewhere).
pub fn scrape_endpoint(handle: PrometheusHandle, token: Option<String>) -> impl poem::Endpoint {
    use poem::{EndpointExt, Response, handler, http::StatusCode, web::Data};
    #[handler]
    fn scrape(req: &poem::Request, handle: Data<&PrometheusHandle>, token: Data<&Option<String>>) -> Response {
        if let Some(expected) = token.0.as_deref()
            && !bearer_matches(req, expected)
        {
            return Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header("www-authenticate", "Bearer")
                .body("the scrape token (VIREL_METRICS_TOKEN) is required\n");
        }
        handle.run_upkeep();
        Response::builder().content_type("text/plain; version=0.0.4").body(handle.render())
    }
    poem::Route::new().at("/metrics", poem::get(scrape)).data(handle).data(token)
}

/// Whether the request's `Authorization: Bearer` token is `expected`, compared in constant
/// time (the scrape token, `VIREL_METRICS_TOKEN`).
pub(crate) fn bearer_matches(req: &poem::Request, expected: &str) -> bool {
    let Some(given) = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return false;
    };
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The path with its ids replaced by `{id}`: a segment that holds a digit, or is longer than
/// 24 characters, is an id (UUIDs, numbers, tokens). Route names never hold digits except the
/// version prefix, which is kept.
pub fn route_template(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let is_version = i == 2 && seg.len() == 2 && seg.starts_with('v');
        if !is_version && (seg.len() > 24 || seg.bytes().any(|b| b.is_ascii_digit())) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::route_template;

    #[test]
    fn ids_become_placeholders() {
        assert_eq!(
            route_template("/api/v1/inquiries/0190f1c2-3b4a-7c8d-9e0f-112233445566/transition"),
            "/api/v1/inquiries/{id}/transition"
        );
        assert_eq!(
            route_template("/api/v1/system/queue/ops/jobs/42/retry"),
            "/api/v1/system/queue/ops/jobs/{id}/retry"
        );
        assert_eq!(route_template("/api/v1/action-center"), "/api/v1/action-center");
        assert_eq!(route_template("/"), "/");
    }
}
