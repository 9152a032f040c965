//! Every request body is capped at `MAX_BODY_BYTES`, however it is framed: with a
//! `Content-Length`, chunked, or HTTP/2 DATA frames without any length.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use poem::http::StatusCode;
use poem::{Body, Endpoint, IntoResponse, Request, Response};

use crate::MAX_BODY_BYTES;
use crate::error::{ErrorBody, json_response, render_error};

/// A declared body up to this size is read and dropped before the 413, so that a client
/// still writing gets to read the answer instead of a reset connection.
const DRAIN_LIMIT_BYTES: u64 = 16 * 1024 * 1024;

pub fn too_large() -> Response {
    json_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorBody::new(
            "payload_too_large",
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
            serde_json::json!({"limit": MAX_BODY_BYTES}),
        ),
    )
}

/// Wraps `body` so that it yields at most `limit` bytes: the chunk that would cross the limit
/// becomes an error (and the stream ends there), and `exceeded` is set.
fn limited(body: Body, limit: usize, exceeded: Arc<AtomicBool>) -> Body {
    let stream = body.into_bytes_stream().scan((0usize, false), move |(seen, done), chunk| {
        let out = if *done {
            None
        } else {
            match chunk {
                Ok(bytes) => {
                    *seen = seen.saturating_add(bytes.len());
                    if *seen > limit {
                        *done = true;
                        exceeded.store(true, Ordering::SeqCst);
                        Some(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "request body too large")))
                    } else {
                        Some(Ok(bytes))
                    }
                }
                Err(e) => {
                    *done = true;
                    Some(Err(e))
                }
            }
        };
        futures_util::future::ready(out)
    });
    Body::from_bytes_stream(stream)
}

/// Refuses bodies over `MAX_BODY_BYTES` with 413 in the error shape. A declared length over
/// the cap is refused before anything runs; any other body is read through a limit, and a
/// request whose body crossed it is answered 413 whatever the handler made of the cut body.
pub async fn body_limit<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let declared =
        req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > MAX_BODY_BYTES as u64) {
        if n <= DRAIN_LIMIT_BYTES {
            let _ = req.take_body().into_bytes_limit(DRAIN_LIMIT_BYTES as usize).await;
        }
        return Ok(too_large());
    }
    let exceeded = Arc::new(AtomicBool::new(false));
    let body = req.take_body();
    req.set_body(limited(body, MAX_BODY_BYTES, exceeded.clone()));
    let resp = match next.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => render_error(e).await,
    };
    if exceeded.load(Ordering::SeqCst) {
        return Ok(too_large());
    }
    Ok(resp)
}
