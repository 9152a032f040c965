//! The access log: one line per answered request, inside the request's span.
//!
//! It prints the method, the path (never the query string, which may hold a token, e.g.
//! `/api/v1/ws?token=...`), the status and the duration; never a header or a body. It also
//! counts the request and its latency in the metrics, by route template (ids as `{id}`).

use std::time::Instant;

use poem::{Endpoint, IntoResponse, Request, Response};

use crate::metrics::route_template;

use crate::error::{UnmatchedRoute, render_error};

/// Longest path printed; the rest is cut (a path is caller-controlled).
const MAX_PATH_CHARS: usize = 200;

pub async fn access_log<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(MAX_PATH_CHARS).collect();
    let start = Instant::now();
    let resp = match next.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => render_error(e).await,
    };
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    let route =
        if resp.extensions().get::<UnmatchedRoute>().is_some() { "unmatched".into() } else { route_template(&path) };
    metrics::counter!("virel_http_requests_total", "method" => method.to_string(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("virel_http_request_duration_seconds", "method" => method.to_string(), "route" => route)
        .record(elapsed.as_secs_f64());
    let duration_ms = (elapsed.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    if resp.status().is_server_error() {
        tracing::warn!(%method, %path, status, duration_ms, "response");
    } else {
        tracing::info!(%method, %path, status, duration_ms, "response");
    }
    Ok(resp)
}
