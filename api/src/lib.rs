//! The HTTP API (poem + poem-openapi): one module per resource, authentication, error mapping,
//! masking on the way out. The OpenAPI document is generated from these handlers.

pub mod admin;
pub mod auth;
pub mod dto;
pub mod error;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod permissions;
pub mod realtime;
mod resources;

use std::sync::Arc;
use std::time::Instant;

use poem::endpoint::make_sync;
use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, IntoEndpoint, Request, Response, Route, get, post};
use poem_openapi::{OpenApiService, Tags};
use virel_domain::Db;
use virel_domain::jobs::QueueBackend;

pub use auth::JwtKeys;
use error::render_error;

/// Request bodies above this are refused with 413, however they are framed.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The API's settings, set by the binary from its configuration.
#[derive(Clone, Debug, Default)]
pub struct ApiSettings {
    /// Believe `X-Forwarded-For` / `X-Forwarded-Proto` (Virel runs behind a proxy that sets
    /// them); otherwise any caller could claim any address and dodge the login limit.
    pub trust_proxy: bool,
    /// Mark the session cookies `Secure` (the public URL is https). A request that arrived
    /// over https gets `Secure` cookies anyway.
    pub secure_cookies: bool,
    /// The public origin (`https://ops.example.com`), also accepted as a same-origin `Origin`
    /// for cookie-authenticated writes, besides the request's own host.
    pub public_origin: Option<String>,
}

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
    pub settings: ApiSettings,
    /// The payment provider and webhook secrets (payments disabled without a provider).
    pub payments: virel_domain::payments::Payments,
    /// The notification channels as `/health` shows them (all disabled unless the binary
    /// says otherwise).
    pub channels: Vec<virel_domain::commands::notifications::ChannelState>,
    /// Verifies Twilio's status callbacks; None when SMS is not configured.
    pub twilio: Option<TwilioHook>,
    /// The process's Prometheus recorder, rendered at `/system/metrics`; None: not served.
    pub metrics: Option<metrics::PrometheusHandle>,
    /// A bearer token that may read `/system/metrics` only (`VIREL_METRICS_TOKEN`), for a
    /// scraper that has no user account.
    pub metrics_token: Option<String>,
}

/// What `POST /api/v1/webhooks/twilio` needs: the auth token that signs the callbacks and the
/// URL Twilio was given (else the request's own).
#[derive(Clone)]
pub struct TwilioHook {
    pub auth_token: String,
    pub url: Option<String>,
}

impl std::fmt::Debug for TwilioHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioHook").field("auth_token", &"***").field("url", &self.url).finish()
    }
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
            settings: ApiSettings::default(),
            channels: virel_domain::commands::notifications::all_disabled(),
            twilio: None,
            payments: virel_domain::payments::Payments::disabled(),
            metrics: None,
            metrics_token: None,
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
    /// Deposits, refunds and Stripe's webhooks.
    Payments,
    /// Outgoing webhooks: subscribers and deliveries (OWNER).
    Webhooks,
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
    let settings = state.db.settings().clone();
    openapi::document(&api_service(state).spec(), &settings).to_string()
}

/// The whole HTTP application: `/api/v1/...`, the OpenAPI document, `/docs` and the operator
/// pages under `/admin`.
pub fn app(state: Arc<AppState>) -> impl Endpoint<Output = Response> {
    state.hub.start(state.db.clone(), state.live_redis.clone());
    let service = api_service(state.clone());
    let doc = openapi::document(&service.spec(), state.db.settings());
    let contract = middleware::contract::Contract::from_document(&doc);
    let spec = doc.to_string();

    let docs = service.swagger_ui();
    Route::new()
        .at(
            "/api/v1/openapi.json",
            make_sync(move |_| Response::builder().content_type("application/json").body(spec.clone())),
        )
        .at("/api/v1/ws", get(resources::action_center::ws))
        .at("/api/v1/webhooks/twilio", post(resources::notifications::twilio_webhook))
        .at("/api/v1/webhooks/stripe", post(resources::payments::stripe_webhook))
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
        .around(middleware::input_guard::input_guard)
        .around(middleware::idempotency::idempotency)
        .with(middleware::contract::Enforce(contract))
        .data(state)
        .around(middleware::body_limit::body_limit)
        .catch_all_error(render_error)
        .around(middleware::retry_after::retry_after)
        .around(middleware::access_log::access_log)
        .around(middleware::request_id::request_id)
        .into_endpoint()
        .map_to_response()
}

/// The caller's address and the request id, for audit entries.
/// `X-Forwarded-For` is believed only with `ApiSettings::trust_proxy` (Virel behind a proxy
/// that sets it); otherwise any caller could claim any address and dodge the login limit.
pub fn request_meta(req: &Request) -> (Option<String>, Option<String>) {
    let trust = req.data::<Arc<AppState>>().is_some_and(|s| s.settings.trust_proxy);
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
