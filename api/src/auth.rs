//! Authentication: 15-minute JWT access tokens, the bearer security scheme that turns a token
//! into the caller's context, and the login / refresh / logout / me endpoints.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, SecurityScheme};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use virel_domain::commands::auth as domain_auth;
use virel_domain::policy::Role;
use virel_domain::rows::User;
use virel_domain::{Ctx, commands::users};

use crate::error::{ApiError, ApiResult};
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

/// The authenticated caller: the domain context every command receives.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct Auth(pub Ctx);

async fn check_bearer(req: &Request, bearer: Bearer) -> Option<Ctx> {
    let state = req.data::<Arc<AppState>>()?;
    ctx_from_token(state, req, &bearer.token).await
}

/// Resolves an access token to a context; the user is re-read so a deactivated account or a
/// changed role takes effect at once, not when the token expires.
pub async fn ctx_from_token(state: &AppState, req: &Request, token: &str) -> Option<Ctx> {
    let claims = state.jwt.verify(token)?;
    let user = users::get_self(&state.db, claims.sub).await.ok()?;
    if !user.active {
        return None;
    }
    let role = Role::parse(&user.role)?;
    let (ip, request_id) = request_meta(req);
    Some(Ctx::user(user.id, role).with_request(ip, request_id))
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
    #[oai(path = "/auth/login", method = "post")]
    async fn login(&self, req: &Request, body: Json<LoginRequest>) -> ApiResult<Json<TokenResponse>> {
        let (ip, request_id) = request_meta(req);
        let ctx = Ctx::new(virel_domain::Actor::Anonymous).with_request(ip, request_id);
        let s = domain_auth::login(&self.state.db, &ctx, &body.email, &body.password).await?;
        self.tokens(s)
    }

    /// Exchange a refresh token for new tokens. The old one stops working; presenting it
    /// again revokes every token of that login.
    #[oai(path = "/auth/refresh", method = "post")]
    async fn refresh(&self, req: &Request, body: Json<RefreshRequest>) -> ApiResult<Json<TokenResponse>> {
        let (ip, request_id) = request_meta(req);
        let ctx = Ctx::new(virel_domain::Actor::Anonymous).with_request(ip, request_id);
        let s = domain_auth::refresh(&self.state.db, &ctx, &body.refresh_token).await?;
        self.tokens(s)
    }

    /// End the session of a refresh token (or all of the caller's sessions).
    #[oai(path = "/auth/logout", method = "post")]
    async fn logout(&self, auth: Auth, body: Json<LogoutRequest>) -> ApiResult<Json<Done>> {
        domain_auth::logout(&self.state.db, &auth.0, body.refresh_token.as_deref()).await?;
        Ok(Json(Done { ok: true }))
    }

    /// The caller's own account and permissions.
    #[oai(path = "/me", method = "get")]
    async fn me(&self, auth: Auth) -> ApiResult<Json<UserOut>> {
        let id = auth.0.actor.user_id().ok_or_else(|| ApiError::unauthorized("no user"))?;
        Ok(Json(users::get_self(&self.state.db, id).await?.into()))
    }
}
