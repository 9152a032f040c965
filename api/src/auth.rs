//! Authentication: 15-minute JWT access tokens, the bearer security scheme that turns a token
//! into the caller's context, and the login / refresh / logout / me endpoints.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use poem::http::Method;
use poem::http::header::{AUTHORIZATION, HOST, ORIGIN, UPGRADE};
use poem::{Request, RequestBody};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, Object, OpenApi};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use virel_domain::DomainError;
use virel_domain::commands::auth as domain_auth;
use virel_domain::policy::Role;
use virel_domain::rows::User;
use virel_domain::{Ctx, commands::users};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::{ApiTags, AppState, request_meta};

pub const ACCESS_TTL_SECS: i64 = 15 * 60;

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> JwtKeys {
        JwtKeys { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret) }
    }

    pub fn issue(&self, user: &User) -> Result<String, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims { sub: user.id, role: user.role.clone(), iat: now, exp: now + ACCESS_TTL_SECS };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::from(virel_domain::DomainError::Internal(format!("jwt: {e}"))))
    }

    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).ok().map(|d| d.claims)
    }
}

/// The authenticated caller: the domain context every command receives. Extracted by
/// `ctx_from_request` (a bearer header, the session cookie, or the live feed's `?token=`);
/// documented as the bearer scheme.
pub struct Auth(pub Ctx);

impl<'a> ApiExtractor<'a> for Auth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(
            "Auth",
            MetaSecurityScheme {
                ty: "http",
                description: Some(
                    "A JWT access token from `POST /auth/login`. Same-origin pages may use the \
                     `virel_session` cookie instead.",
                ),
                name: None,
                key_in: None,
                scheme: Some("bearer"),
                bearer_format: Some("JWT"),
                flows: None,
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec!["Auth"]
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let state = req.data::<Arc<AppState>>().ok_or_else(|| ApiError::unauthorized("no application state"))?;
        Ok(Auth(ctx_from_request(state, req).await?))
    }
}

/// The credential a request presents, in order of precedence.
pub enum Credential {
    /// `Authorization: Bearer <token>` (an explicit header always wins).
    Bearer(String),
    /// The operator pages' `virel_session` cookie.
    Cookie(String),
    /// `?token=` on the live feed (`/api/v1/ws`) only: browsers cannot set headers there.
    Query(String),
}

pub const WS_PATH: &str = "/api/v1/ws";

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

pub fn credential(req: &Request) -> Option<Credential> {
    if let Some(v) = req.headers().get(AUTHORIZATION) {
        let t = v.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(|t| t.trim().to_string());
        return Some(Credential::Bearer(t.unwrap_or_default()));
    }
    if let Some(t) = crate::admin::cookie(req, crate::admin::SESSION_COOKIE) {
        return Some(Credential::Cookie(t));
    }
    if req.uri().path() == WS_PATH {
        let q = req.params::<TokenQuery>().ok().and_then(|q| q.token).filter(|t| !t.is_empty());
        return q.map(Credential::Query);
    }
    None
}

/// The one way in: the request's credential (bearer header, session cookie, or the live
/// feed's query token) as the caller's context. The session cookie is accepted on unsafe
/// methods and WebSocket upgrades only from the same origin; a WebSocket upgrade from another
/// origin is refused whatever its credential.
pub async fn ctx_from_request(state: &AppState, req: &Request) -> Result<Ctx, ApiError> {
    if is_upgrade(req) && !origin_allowed(state, req) {
        return Err(cross_site());
    }
    let token = match credential(req) {
        None => return Err(ApiError::unauthorized("a valid bearer token is required")),
        Some(Credential::Cookie(t)) => {
            if (is_unsafe(req) || is_upgrade(req)) && !same_origin(state, req) {
                return Err(cross_site());
            }
            t
        }
        Some(Credential::Bearer(t) | Credential::Query(t)) => t,
    };
    ctx_from_token(state, req, &token).await
}

/// 403: the session cookie (or a WebSocket upgrade) from another site.
pub fn cross_site() -> ApiError {
    ApiError::Forbidden(Json(ErrorBody::new(
        "forbidden",
        "cross-site request refused",
        serde_json::json!({"reason": "cross_site"}),
    )))
}

fn is_unsafe(req: &Request) -> bool {
    !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
}

fn is_upgrade(req: &Request) -> bool {
    req.headers().get(UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The browser says the request comes from this site: `Sec-Fetch-Site` is `same-origin` or
/// `none` (typed by the user) when present, and `Origin` matches when present.
pub fn same_origin(state: &AppState, req: &Request) -> bool {
    let site = req.headers().get("sec-fetch-site").map(|v| v.to_str().unwrap_or(""));
    if site.is_some_and(|s| !matches!(s, "same-origin" | "none")) {
        return false;
    }
    origin_allowed(state, req)
}

/// No `Origin`, or one naming this server: the request's host (`Host`, or HTTP/2's
/// `:authority`) or the configured public origin.
pub fn origin_allowed(state: &AppState, req: &Request) -> bool {
    let Some(origin) = req.headers().get(ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim().trim_end_matches('/');
    if state.settings.public_origin.as_deref().is_some_and(|p| p.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return true;
    }
    let host =
        req.headers().get(HOST).and_then(|v| v.to_str().ok()).or_else(|| req.uri().authority().map(|a| a.as_str()));
    match (host, origin.split_once("://")) {
        (Some(host), Some((scheme, rest))) => matches!(scheme, "http" | "https") && rest.eq_ignore_ascii_case(host),
        _ => false,
    }
}

/// When the credential's access token expires (seconds since the epoch); None if invalid.
/// Whether the credential's token verifies (signature and expiry; the user is not read): the
/// contract middleware checks a body only for a caller who may be authenticated, so a bad
/// token is a 401 before any complaint about the body.
pub fn plausible(state: &AppState, c: &Credential) -> bool {
    expiry(state, c).is_some()
}

pub fn expiry(state: &AppState, c: &Credential) -> Option<i64> {
    match c {
        Credential::Bearer(t) | Credential::Cookie(t) | Credential::Query(t) => state.jwt.verify(t).map(|c| c.exp),
    }
}

/// Resolves an access token to a context; the user is re-read so a deactivated account or a
/// changed role takes effect at once, not when the token expires. A token that is invalid or
/// expired, or names no active user, is 401; a database that cannot be reached is 503
/// (`service_unavailable`, with `Retry-After`), never 401: a client must not drop a valid
/// session because of a database blip.
pub async fn ctx_from_token(state: &AppState, req: &Request, token: &str) -> Result<Ctx, ApiError> {
    let (ip, request_id) = request_meta(req);
    ctx_for_token(state, token, ip, request_id).await
}

/// `ctx_from_token` where the request is gone (the live feed's first message).
pub async fn ctx_for_token(
    state: &AppState,
    token: &str,
    ip: Option<String>,
    request_id: Option<String>,
) -> Result<Ctx, ApiError> {
    let invalid = || ApiError::unauthorized("a valid bearer token is required");
    let claims = state.jwt.verify(token).ok_or_else(invalid)?;
    let user = match users::get_self(&state.db, claims.sub).await {
        Ok(u) => u,
        Err(e @ (DomainError::Unavailable(_) | DomainError::Internal(_))) => return Err(e.into()),
        Err(_) => return Err(invalid()),
    };
    if !user.active {
        return Err(invalid());
    }
    let role = Role::parse(&user.role).ok_or_else(invalid)?;
    Ok(Ctx::user(user.id, role).with_request(ip, request_id))
}

#[derive(Object)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Object)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Object)]
pub struct LogoutRequest {
    /// The refresh token of the session to end; without it every session of the caller ends.
    pub refresh_token: Option<String>,
}

#[derive(Object, Clone, Debug)]
pub struct UserOut {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: String,
    pub permissions: Vec<String>,
    pub active: bool,
    pub on_duty: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub version: i64,
}

impl From<User> for UserOut {
    fn from(u: User) -> UserOut {
        let permissions = Role::parse(&u.role)
            .map(|r| r.permissions().iter().map(|p| p.as_str().to_string()).collect())
            .unwrap_or_default();
        UserOut {
            id: u.id,
            email: u.email,
            name: u.name,
            role: u.role,
            permissions,
            active: u.active,
            on_duty: u.on_duty,
            created_at: u.created_at,
            updated_at: u.updated_at,
            version: u.version,
        }
    }
}

#[derive(Object)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    pub user: UserOut,
}

#[derive(Object)]
pub struct Done {
    pub ok: bool,
}

/// A 429 from the login limit carries `Retry-After` (seconds), taken from the error's
/// `details.retry_after_secs`.
fn with_retry_after<E: poem::Endpoint + 'static>(ep: E) -> impl poem::Endpoint {
    use poem::{EndpointExt, IntoResponse};
    ep.around(|ep, req| async move {
        let resp = match ep.call(req).await {
            Ok(r) => r.into_response(),
            Err(e) if e.status() == poem::http::StatusCode::TOO_MANY_REQUESTS => e.into_response(),
            // Everything else goes on to the error middleware as it was.
            Err(e) => return Err(e),
        };
        if resp.status() != poem::http::StatusCode::TOO_MANY_REQUESTS || resp.headers().contains_key("retry-after") {
            return Ok::<_, poem::Error>(resp);
        }
        let (mut parts, body) = resp.into_parts();
        let bytes = body.into_bytes().await.unwrap_or_default();
        let secs = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["details"]["retry_after_secs"].as_u64());
        if let Some(v) = secs.and_then(|s| poem::http::HeaderValue::from_str(&s.to_string()).ok()) {
            parts.headers.insert("retry-after", v);
        }
        Ok(poem::Response::from_parts(parts, poem::Body::from(bytes)))
    })
}

pub struct AuthApi {
    pub state: Arc<AppState>,
}

impl AuthApi {
    fn tokens(&self, s: domain_auth::Session) -> ApiResult<Json<TokenResponse>> {
        Ok(Json(TokenResponse {
            access_token: self.state.jwt.issue(&s.user)?,
            refresh_token: s.refresh_token,
            token_type: "Bearer".into(),
            expires_in: ACCESS_TTL_SECS,
            user: s.user.into(),
        }))
    }
}

#[OpenApi(tag = "ApiTags::Auth")]
impl AuthApi {
    /// Log in with email and password. Repeated failures for one email or address are slowed
    /// down and then refused with 429.
    #[oai(path = "/auth/login", method = "post", transform = "with_retry_after", operation_id = "login")]
    async fn login(&self, req: &Request, body: Json<LoginRequest>) -> ApiResult<Json<TokenResponse>> {
        let (ip, request_id) = request_meta(req);
        let ctx = Ctx::new(virel_domain::Actor::Anonymous).with_request(ip, request_id);
        let s = domain_auth::login(&self.state.db, &ctx, &body.email, &body.password).await?;
        self.tokens(s)
    }

    /// Exchange a refresh token for new tokens. The old one stops working; presenting it
    /// again revokes every token of that login.
    #[oai(path = "/auth/refresh", method = "post", operation_id = "refreshToken")]
    async fn refresh(&self, req: &Request, body: Json<RefreshRequest>) -> ApiResult<Json<TokenResponse>> {
        let (ip, request_id) = request_meta(req);
        let ctx = Ctx::new(virel_domain::Actor::Anonymous).with_request(ip, request_id);
        let s = domain_auth::refresh(&self.state.db, &ctx, &body.refresh_token).await?;
        self.tokens(s)
    }

    /// End the session of a refresh token (or all of the caller's sessions).
    #[oai(path = "/auth/logout", method = "post", operation_id = "logout")]
    async fn logout(&self, auth: Auth, body: Json<LogoutRequest>) -> ApiResult<Json<Done>> {
        domain_auth::logout(&self.state.db, &auth.0, body.refresh_token.as_deref()).await?;
        Ok(Json(Done { ok: true }))
    }

    /// The caller's own account and permissions.
    #[oai(path = "/me", method = "get", operation_id = "getMe")]
    async fn me(&self, auth: Auth) -> ApiResult<Json<UserOut>> {
        let id = auth.0.actor.user_id().ok_or_else(|| ApiError::unauthorized("no user"))?;
        Ok(Json(users::get_self(&self.state.db, id).await?.into()))
    }
}
