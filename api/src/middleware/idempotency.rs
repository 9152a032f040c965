//! The `Idempotency-Key` store for writes.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::error::{self, ErrorBody, json_response};
use crate::{AppState, MAX_BODY_BYTES, request_meta};

/// What a key is bound to: the method, the URI (path and query) and the body.
pub fn request_hash(method: &str, uri: &str, body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b" ");
    h.update(uri.as_bytes());
    h.update(b"\n");
    h.update(body);
    hex::encode(h.finalize())
}

/// Writes with an `Idempotency-Key` header: the same key and body (for the same caller, within
/// 24 hours) get the first response again, marked `idempotent-replayed: true`, without doing the
/// work twice; the same key with another body is 422; while the first is still running (its
/// lease is live), 409. A server error (5xx) forgets the key so the request can be tried again;
/// a request that died mid-way frees its key when its lease lapses (seconds, not 24 hours).
/// A keyed request runs to its end on its own task, renewing its lease, so a client hanging up
/// cannot cut it between the work and the recording of its answer (see
/// `virel_domain::idempotency` for why the answer is recorded right after the work).
pub async fn idempotency<E: Endpoint + 'static>(next: E, mut req: Request) -> poem::Result<Response> {
    use poem::http::Method;
    use virel_domain::idempotency::{self, Begin};
    let Some(key) = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string) else {
        return Ok(next.call(req).await?.into_response());
    };
    // Auth answers hold live tokens, and a webhook subscription's creation its signing
    // secret (shown once): they are never stored (and a login is not a write one would
    // replay anyway).
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || !req.uri().path().starts_with("/api/v1/")
        || req.uri().path().starts_with("/api/v1/auth/")
        || req.uri().path().trim_end_matches('/') == "/api/v1/webhooks/subscriptions"
    {
        return Ok(next.call(req).await?.into_response());
    }
    let refuse = |status: StatusCode, code: &str, msg: &str| {
        json_response(status, ErrorBody::new(code, msg, serde_json::json!({})))
    };
    if key.is_empty() || key.len() > 255 {
        return Ok(refuse(StatusCode::BAD_REQUEST, "bad_request", "Idempotency-Key must be 1 to 255 characters"));
    }
    let Some(state) = req.data::<Arc<AppState>>().cloned() else {
        return Ok(next.call(req).await?.into_response());
    };
    let actor = crate::auth::ctx_from_request(&state, &req)
        .await
        .ok()
        .and_then(|c| c.actor.user_id())
        .map(|id| id.to_string())
        .unwrap_or_else(|| format!("anonymous:{}", request_meta(&req).0.unwrap_or_default()));
    // A body past the cap is an error here, answered 413 by `body_limit`.
    let body = req.take_body().into_bytes_limit(MAX_BODY_BYTES).await?;
    let hash = request_hash(req.method().as_str(), &req.uri().to_string(), &body);
    req.set_body(body);
    let begun = match idempotency::begin(&state.db, &actor, &key, &hash).await {
        Ok(b) => b,
        Err(e) => return Ok(poem::Error::from(error::ApiError::from(e)).into_response()),
    };
    match begun {
        Begin::Mismatch => Ok(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "this Idempotency-Key was used with a different request",
        )),
        Begin::InProgress => {
            Ok(refuse(StatusCode::CONFLICT, "duplicate", "a request with this Idempotency-Key is still in progress"))
        }
        Begin::Replay { status, body } => Ok(Response::builder()
            .status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
            .content_type("application/json; charset=utf-8")
            .header("idempotent-replayed", "true")
            .body(body)),
        Begin::New => {
            use tracing::Instrument;
            let run = async move {
                let call = next.call(req);
                tokio::pin!(call);
                let mut renew = tokio::time::interval(std::time::Duration::from_secs(idempotency::RENEW_SECS));
                renew.tick().await;
                let res = loop {
                    tokio::select! {
                        r = &mut call => break r,
                        _ = renew.tick() => {
                            if let Err(e) = idempotency::renew(&state.db, &actor, &key).await {
                                tracing::warn!(error = %e, "cannot renew an idempotency lease");
                            }
                        }
                    }
                };
                let resp = match res {
                    Ok(r) => r.into_response(),
                    Err(e) => {
                        // Not stored: errors raised before a handler answered (bad JSON, no
                        // token) leave the key free, and are rendered by the error middleware.
                        let _ = idempotency::abandon(&state.db, &actor, &key).await;
                        return Err(e);
                    }
                };
                let status = resp.status();
                if status.is_server_error() {
                    let _ = idempotency::abandon(&state.db, &actor, &key).await;
                    return Ok(resp);
                }
                let (parts, body) = resp.into_parts();
                let bytes = body.into_bytes().await.unwrap_or_default();
                let text = String::from_utf8_lossy(&bytes).into_owned();
                if let Err(e) = idempotency::finish(&state.db, &actor, &key, status.as_u16(), &text).await {
                    tracing::warn!(error = %e, "cannot store an idempotent response");
                }
                Ok(Response::from_parts(parts, poem::Body::from(bytes)))
            };
            match tokio::spawn(run.in_current_span()).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "an idempotent request's task failed");
                    Ok(refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error"))
                }
            }
        }
    }
}
