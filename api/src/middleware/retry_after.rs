//! Every 503 says when to try again: `Retry-After: 2` (seconds) unless the answer set its own.
//! A 503 means a dependency (the database, the queues) is unreachable and nothing was written;
//! the pool gives up on the database within two seconds, so a client retrying after two
//! seconds neither hammers a recovering server nor waits longer than it must.

use poem::http::{HeaderValue, StatusCode, header::RETRY_AFTER};
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::error::render_error;

/// Seconds a client is asked to wait after a 503.
pub const RETRY_AFTER_SECS: u64 = 2;

pub async fn retry_after<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let mut resp = match next.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => render_error(e).await,
    };
    if resp.status() == StatusCode::SERVICE_UNAVAILABLE && !resp.headers().contains_key(RETRY_AFTER) {
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    Ok(resp)
}
