//! The HTTP API (poem + poem-openapi): one module per resource, authentication, error mapping,
//! masking on the way out. The OpenAPI document is generated from these handlers.

pub mod admin;
pub mod auth;
pub mod dto;
pub mod error;
pub mod realtime;
mod resources;

use std::sync::Arc;
use std::time::Instant;

use poem::endpoint::make_sync;
use poem::http::{HeaderValue, StatusCode, header::AUTHORIZATION};
use poem::middleware::Tracing;
use poem::{Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Request, Response, Route, get, post};
use poem_openapi::{OpenApiService, Tags};
use virel_domain::Db;
use virel_domain::jobs::QueueBackend;

pub use auth::JwtKeys;
use error::{ErrorBody, json_response, render_error};

/// Request bodies above this are refused with 413 before any handler runs.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
const DRAIN_LIMIT_BYTES: u64 = 16 * 1024 * 1024;

pub struct AppState {
    pub db: Db,
    pub jwt: JwtKeys,
    pub started: Instant,
    /// The queues, to show and retry their jobs; None where the API runs without them.
    pub queues: Option<Arc<dyn QueueBackend>>,
    /// Live Action Center connections.
    pub hub: Arc<realtime::Hub>,
    /// The Redis URL and channel on which other processes announce changes (scaled mode).
    pub live_redis: Option<(String, String)>,
}

impl AppState {
    pub fn new(db: Db, jwt_secret: &[u8]) -> AppState {
        AppState {
            db,
            jwt: JwtKeys::new(jwt_secret),
            started: Instant::now(),
            queues: None,
            hub: Arc::new(realtime::Hub::default()),
            live_redis: None,
        }
    }

    pub fn with_queues(mut self, q: Arc<dyn QueueBackend>) -> Arc<AppState> {
        self.queues = Some(q);
        Arc::new(self)
    }

    pub fn shared(self) -> Arc<AppState> {
        Arc::new(self)
    }
}

#[derive(Tags)]
pub enum ApiTags {
    /// Login, token refresh, logout and the caller's account.
    Auth,
    /// Client inquiries and their qualification.
    Inquiries,
    /// Bookings and their lifecycle.
    Bookings,
    /// Tasks for operators.
    Tasks,
    /// Exceptions that need a human.
    Exceptions,
    /// Notes on any subject.
    Notes,
    /// The agency's clients (contact details masked without `clients:pii`).
    Clients,
    /// The agency's models.
    Models,
    /// Staff accounts (OWNER).
    Users,
    /// The append-only audit log.
    Audit,
    /// Automation rules, dry runs and executions.
    Automation,
    /// The operator's single screen: open items, quick actions, live updates, SLA policies.
    ActionCenter,
    /// Health and monitoring.
    System,
}

pub fn api_service(state: Arc<AppState>) -> OpenApiService<impl poem_openapi::OpenApi, ()> {
    OpenApiService::new(resources::apis(state), "Virel", env!("CARGO_PKG_VERSION"))
        .description("The operations platform of a booking agency.")
        .server("/api/v1")
}

/// The OpenAPI document as JSON (`virel openapi`).
pub fn openapi_json(state: Arc<AppState>) -> String {
    api_service(state).spec()
}

/// The whole HTTP application: `/api/v1/...`, the OpenAPI document, `/docs` and the operator
/// pages under `/admin`.
pub fn app(state: Arc<AppState>) -> impl Endpoint<Output = Response> {
    state.hub.start(state.db.clone(), state.live_redis.clone());
    let service = api_service(state.clone());
    let spec = service.spec();

    let docs = service.swagger_ui();
    Route::new()
        .at(
            "/api/v1/openapi.json",
            make_sync(move |_| Response::builder().content_type("application/json").body(spec.clone())),
        )
        .at("/api/v1/ws", get(resources::action_center::ws))
        .nest("/api/v1", service)
        .nest("/docs", docs)
        .at("/", make_sync(|_| Response::builder().status(StatusCode::FOUND).header("location", "/docs").finish()))
        .at("/admin", get(admin::index))
        .at("/admin/", get(admin::index))
        .at("/admin/login", get(admin::session::login_form).post(admin::session::login_submit))
        .at("/admin/logout", post(admin::session::logout))
        .at("/admin/queues", get(admin::queues::page).around(admin::page_guard))
        .at("/admin/action-center", get(admin::action_center::page).around(admin::page_guard))
        .at("/admin/queues/:queue/jobs/:id/retry", post(admin::queues::retry).around(admin::page_guard))
        .around(idempotency)
        .data(state)
        .around(session_cookie_auth)
        .around(body_limit)
        .catch_all_error(render_error)
        .around(request_id)
        .with(Tracing)
        .into_endpoint()
        .map_to_response()
}

/// The caller's address and the request id, for audit entries.
/// `X-Forwarded-For` is believed only with `VIREL_TRUST_PROXY=1` (Virel behind a proxy that
/// sets it); otherwise any caller could claim any address and dodge the login limit.
pub fn request_meta(req: &Request) -> (Option<String>, Option<String>) {
    static TRUST_PROXY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let trust = *TRUST_PROXY.get_or_init(|| matches!(std::env::var("VIREL_TRUST_PROXY").as_deref(), Ok("1" | "true")));
    let forwarded = || {
        // The proxy appends the address it saw: the last entry is the one it vouches for.
        req.headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(|s| s.trim().to_string())
            .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
    };
    let ip = trust.then(forwarded).flatten().or_else(|| req.remote_addr().as_socket_addr().map(|a| a.ip().to_string()));
    let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(String::from);
    (ip, request_id)
}

/// Every response carries `x-request-id` (the caller's, when it sent a sane one), and every
/// log line of the request carries it too.
async fn request_id<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let value = HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("invalid"));
    req.headers_mut().insert("x-request-id", value.clone());
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let _enter = span.enter();
    let mut resp = match next.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => render_error(e).await,
    };
    resp.headers_mut().insert("x-request-id", value);
    Ok(resp)
}

/// Same-origin pages call the API with the operator's session cookie (`virel_session`, the
/// access token, HttpOnly) instead of holding a token in JavaScript: a request to `/api/v1/`
/// without an `Authorization` header but with that cookie gets `Authorization: Bearer
/// <cookie>`. This is not a CSRF hole because the cookie is `SameSite=Strict`: browsers do not
/// send it on requests another site starts (forms, images, fetches). An explicit
/// `Authorization` header always wins.
async fn session_cookie_auth<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    if req.uri().path().starts_with("/api/v1/") && !req.headers().contains_key(AUTHORIZATION) {
        let bearer =
            admin::cookie(&req, admin::SESSION_COOKIE).and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok());
        if let Some(v) = bearer {
            req.headers_mut().insert(AUTHORIZATION, v);
        }
    }
    Ok(next.call(req).await?.into_response())
}

/// Writes with an `Idempotency-Key` header: the same key and body (for the same caller, within
/// 24 hours) get the first response again, marked `idempotent-replayed: true`, without doing the
/// work twice; the same key with another body is 422; while the first is still running, 409.
/// A server error (5xx) forgets the key so the request can be tried again.
async fn idempotency<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    use poem::http::Method;
    use sha2::{Digest, Sha256};
    use virel_domain::idempotency::{self, Begin};
    let Some(key) = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string) else {
        return Ok(next.call(req).await?.into_response());
    };
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || !req.uri().path().starts_with("/api/v1/")
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
    let actor = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| state.jwt.verify(t))
        .map(|c| c.sub.to_string())
        .unwrap_or_else(|| format!("anonymous:{}", request_meta(&req).0.unwrap_or_default()));
    let body = req.take_body().into_bytes_limit(MAX_BODY_BYTES).await.unwrap_or_default();
    let mut h = Sha256::new();
    h.update(req.method().as_str().as_bytes());
    h.update(b" ");
    h.update(req.uri().to_string().as_bytes());
    h.update(b"\n");
    h.update(&body);
    let hash = hex::encode(h.finalize());
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
            let resp = match next.call(req).await {
                Ok(r) => r.into_response(),
                Err(e) => {
                    // Not stored: errors raised before a handler answered (bad JSON, no token)
                    // leave the key free, and are rendered by the error middleware.
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
        }
    }
}

/// Refuses bodies over `MAX_BODY_BYTES` (413), whether or not they declare their length.
async fn body_limit<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let declared =
        req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorBody::new(
                "payload_too_large",
                format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
                serde_json::json!({"limit": MAX_BODY_BYTES}),
            ),
        )
    };
    if let Some(n) = declared.filter(|n| *n > MAX_BODY_BYTES as u64) {
        // Read (and drop) a moderately oversized body so the client, still writing, gets to
        // read the 413 instead of a reset connection; past that, just answer and close.
        if n <= DRAIN_LIMIT_BYTES {
            let _ = req.take_body().into_bytes_limit(DRAIN_LIMIT_BYTES as usize).await;
        }
        return Ok(too_large());
    }
    if declared.is_none() && req.headers().contains_key("transfer-encoding") {
        let body = req.take_body();
        match body.into_bytes_limit(MAX_BODY_BYTES).await {
            Ok(bytes) => req.set_body(bytes),
            Err(_) => return Ok(too_large()),
        }
    }
    Ok(next.call(req).await?.into_response())
}
