//! `x-request-id` on every request and response, and a tracing span around the request.

use poem::http::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;

use crate::error::render_error;

pub const HEADER: &str = "x-request-id";

/// The caller's id when it is sane (1 to 128 visible ASCII characters), else a fresh one.
fn sane(req: &Request) -> Option<String> {
    req.headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(String::from)
}

/// Every response carries `x-request-id` (the caller's, when it sent a sane one), and every
/// log line of the request carries it too: the inner endpoint's future is instrumented with
/// the request's span (never `span.enter()` across an `.await`).
pub async fn request_id<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let id = sane(&req).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let value = HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("invalid"));
    req.headers_mut().insert(HEADER, value.clone());
    let span = tracing::info_span!("request", request_id = %id);
    let mut resp = async move {
        match next.call(req).await {
            Ok(r) => r.into_response(),
            Err(e) => render_error(e).await,
        }
    }
    .instrument(span)
    .await;
    resp.headers_mut().insert(HEADER, value);
    Ok(resp)
}
