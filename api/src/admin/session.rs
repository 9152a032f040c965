//! The operator's web session: two HttpOnly cookies instead of tokens in JavaScript.
//!
//! - `virel_session`: the 15-minute access token (JWT), `Path=/`, so same-origin pages can
//!   call `/api/v1/...` with it (the API turns it into a bearer token, see `app()`).
//! - `virel_refresh`: the opaque refresh token, `Path=/admin` only, so it never travels with
//!   API calls; the page guard rotates it when the access token is gone or expired.
//!
//! Both are `SameSite=Strict`: a browser never sends them on a request started by another
//! site, which is what keeps cookie authentication from being a CSRF hole. Form posts are
//! also refused when the browser says they come from another site (`Sec-Fetch-Site`).

use std::sync::Arc;

use cookie::{Cookie, SameSite};
use poem::http::header::{LOCATION, SET_COOKIE};
use poem::http::{HeaderValue, Method, StatusCode, uri::Scheme};
use poem::web::{Data, Form, Query};
use poem::{Endpoint, IntoResponse, Request, Response, handler};
use serde::Deserialize;
use virel_domain::commands::{auth as domain_auth, authorize, users};
use virel_domain::policy::{Permission, Role};
use virel_domain::rows::User;
use virel_domain::{Actor, Ctx, DomainError};

use super::html::{self, escape, url_encode};
use crate::auth::ACCESS_TTL_SECS;
use crate::{AppState, request_meta};

pub const SESSION_COOKIE: &str = "virel_session";
pub const REFRESH_COOKIE: &str = "virel_refresh";
/// Where a login lands when it was not sent anywhere in particular.
pub const DEFAULT_LANDING: &str = "/admin/action-center";
const REFRESH_MAX_AGE_SECS: i64 = domain_auth::REFRESH_TTL_DAYS * 24 * 3600;

/// The value of one cookie of the request (any of its `Cookie` headers), parsed by the
/// `cookie` crate.
pub fn cookie(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| Cookie::split_parse(v).filter_map(Result::ok))
        .find(|c| c.name() == name)
        .map(|c| c.value_trimmed().to_string())
        .filter(|v| !v.is_empty())
}

/// Whether the browser reached us over https: a TLS listener, or (behind a proxy that is
/// trusted, `ApiSettings::trust_proxy`, as for the caller's address) `X-Forwarded-Proto: https`.
pub fn is_https(req: &Request) -> bool {
    let trust = req.data::<Arc<AppState>>().is_some_and(|s| s.settings.trust_proxy);
    if *req.scheme() == Scheme::HTTPS {
        return true;
    }
    trust
        && req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, and Secure when the public URL is https
/// (`ApiSettings::secure_cookies`) or this request came over https.
fn set_cookie(req: &Request, name: &str, value: &str, path: &str, max_age: i64) -> String {
    let secure = is_https(req) || req.data::<Arc<AppState>>().is_some_and(|s| s.settings.secure_cookies);
    Cookie::build((name.to_string(), value.to_string()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path(path.to_string())
        .max_age(cookie::time::Duration::seconds(max_age))
        .secure(secure)
        .build()
        .to_string()
}

/// The two cookies of a fresh session.
fn session_cookies(req: &Request, access: &str, refresh: &str) -> Vec<String> {
    vec![
        set_cookie(req, SESSION_COOKIE, access, "/", ACCESS_TTL_SECS),
        set_cookie(req, REFRESH_COOKIE, refresh, "/admin", REFRESH_MAX_AGE_SECS),
    ]
}

/// Cookies that delete both.
fn cleared_cookies(req: &Request) -> Vec<String> {
    vec![set_cookie(req, SESSION_COOKIE, "", "/", 0), set_cookie(req, REFRESH_COOKIE, "", "/admin", 0)]
}

fn with_cookies(mut resp: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(SET_COOKIE, v);
        }
    }
    resp
}

pub fn see_other(location: &str) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(LOCATION, location)
        .header("cache-control", "no-store")
        .finish()
}

/// `next` if it is a page of this site under `/admin/`, else the default landing page: a
/// login link can never send the browser elsewhere.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/admin/")
                && n.len() <= 2048
                && n.bytes().all(|b| b.is_ascii_graphic())
                && !n.contains('\\')
                && !n.contains("..") =>
        {
            n.to_string()
        }
        _ => DEFAULT_LANDING.to_string(),
    }
}

/// A form post the browser says another site started (`Sec-Fetch-Site`, `Origin`): defence
/// in depth behind SameSite, the same check as the API's cookie writes.
fn cross_site_write(req: &Request) -> bool {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return false;
    }
    req.data::<Arc<AppState>>().is_none_or(|s| !crate::auth::same_origin(s, req))
}

fn cross_site_refusal() -> Response {
    html::respond(
        StatusCode::FORBIDDEN,
        html::document(
            "Refused",
            "",
            "<main><h1>Refused</h1><p>This form was sent from another site.</p>\
             <p><a href=\"/admin/queues\">Open Virel</a></p></main>",
        ),
    )
}

/// A signed-in operator on a page: who they are, and the context their commands run with.
/// The page guard puts it in the request; handlers take it with `Data<&PageSession>`.
#[derive(Clone, Debug)]
pub struct PageSession {
    pub user: User,
    pub ctx: Ctx,
}

impl PageSession {
    fn new(user: User, req: &Request) -> Option<PageSession> {
        if !user.active {
            return None;
        }
        let role = Role::parse(&user.role)?;
        let (ip, request_id) = request_meta(req);
        let ctx = Ctx::user(user.id, role).with_request(ip, request_id);
        Some(PageSession { user, ctx })
    }

    /// Checks a permission the way the API does (a refusal is audited as `forbidden`); a
    /// refusal is the 403 page.
    pub async fn require(&self, state: &AppState, p: Permission, what: &str) -> Result<(), Response> {
        match authorize(&state.db, &self.ctx, p, what).await {
            Ok(()) => Ok(()),
            Err(DomainError::Forbidden { .. }) => Err(html::forbidden(&self.user, p.as_str())),
            Err(e) => Err(self.error(&e)),
        }
    }

    /// The page for a domain error that is not a refusal.
    pub fn error(&self, e: &DomainError) -> Response {
        let (status, title, message) = error_text(e);
        html::error_page(&self.user, status, title, &message)
    }
}

fn error_text(e: &DomainError) -> (StatusCode, &'static str, String) {
    match e {
        DomainError::Unavailable(m) => {
            (StatusCode::SERVICE_UNAVAILABLE, "Unavailable", format!("A service Virel needs is unavailable: {m}."))
        }
        DomainError::Internal(detail) => {
            tracing::error!(detail = %detail, "internal error on an admin page");
            (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "Something went wrong; try again.".into())
        }
        other => (crate::error::status_of(other), "Cannot do that", other.to_string()),
    }
}

/// A page for an error before anyone is known (no header).
fn bare_error(e: &DomainError) -> Response {
    let (status, title, message) = error_text(e);
    let body = format!("<main><h1>{}</h1><p>{}</p></main>", escape(title), escape(&message));
    html::respond(status, html::document(title, "", &body))
}

/// Nobody yet, from this request's address (login, refresh).
fn anonymous(req: &Request) -> Ctx {
    let (ip, request_id) = request_meta(req);
    Ctx::new(Actor::Anonymous).with_request(ip, request_id)
}

/// The session of a valid, unexpired access cookie. `Ok(None)`: no usable cookie.
async fn from_access(state: &AppState, req: &Request) -> Result<Option<PageSession>, DomainError> {
    let Some(claims) = cookie(req, SESSION_COOKIE).and_then(|t| state.jwt.verify(&t)) else {
        return Ok(None);
    };
    match users::get_self(&state.db, claims.sub).await {
        Ok(user) => Ok(PageSession::new(user, req)),
        Err(DomainError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Rotates the refresh cookie: the new session and its cookies. `Ok(None)`: no cookie, or one
/// the server no longer honours (expired, revoked, already used).
async fn from_refresh(state: &AppState, req: &Request) -> Result<Option<(PageSession, Vec<String>)>, DomainError> {
    let Some(token) = cookie(req, REFRESH_COOKIE) else {
        return Ok(None);
    };
    let s = match domain_auth::refresh(&state.db, &anonymous(req), &token).await {
        Ok(s) => s,
        Err(DomainError::Unauthorized(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let access = state.jwt.issue(&s.user).map_err(|_| DomainError::Internal("jwt issue failed".into()))?;
    let cookies = session_cookies(req, &access, &s.refresh_token);
    Ok(PageSession::new(s.user, req).map(|p| (p, cookies)))
}

/// The page guard of `/admin/*` pages (wrap a page's endpoint with `.around(page_guard)`).
///
/// A valid access cookie is the session. Without one, a valid refresh cookie is rotated and
/// the new cookies are set on the answer, transparently. Otherwise the browser is sent to
/// `/admin/login?next=<this page>` (stale cookies are deleted). The handler then checks the
/// page's permission with `PageSession::require`.
pub async fn page_guard<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let Some(state) = req.data::<Arc<AppState>>().cloned() else {
        return Err(poem::Error::from_status(StatusCode::INTERNAL_SERVER_ERROR));
    };
    if cross_site_write(&req) {
        return Ok(cross_site_refusal());
    }
    let resolved = match from_access(&state, &req).await {
        Ok(Some(s)) => Ok(Some((s, Vec::new()))),
        Ok(None) => from_refresh(&state, &req).await,
        Err(e) => Err(e),
    };
    let (session, cookies) = match resolved {
        Ok(Some(found)) => found,
        Ok(None) => {
            // A form post cannot be replayed after the login: land on the default page then.
            let target = if *req.method() == Method::GET {
                let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/admin/");
                format!("/admin/login?next={}", url_encode(path))
            } else {
                "/admin/login".to_string()
            };
            let stale = cookie(&req, SESSION_COOKIE).is_some() || cookie(&req, REFRESH_COOKIE).is_some();
            let resp = see_other(&target);
            return Ok(if stale { with_cookies(resp, &cleared_cookies(&req)) } else { resp });
        }
        Err(e) => return Ok(bare_error(&e)),
    };
    req.extensions_mut().insert(session);
    // The cookies go out whatever the page answers: the old refresh token is spent already.
    let resp = match next.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => crate::error::render_error(e).await,
    };
    Ok(with_cookies(resp, &cookies))
}

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

fn login_page(status: StatusCode, email: &str, next: Option<&str>, message: Option<&str>) -> Response {
    let next_field = match next.filter(|n| !n.is_empty()) {
        Some(n) => format!("<input type=\"hidden\" name=\"next\" value=\"{}\">", escape(n)),
        None => String::new(),
    };
    let alert = match message {
        Some(m) => format!("<div class=\"flash error\" role=\"alert\">{}</div>", escape(m)),
        None => String::new(),
    };
    let body = format!(
        "<main class=\"login\"><h1>Virel</h1><p class=\"muted\">Sign in to the operations console.</p>{alert}\
         <form method=\"post\" action=\"/admin/login\">{next_field}\
         <label for=\"email\">Email</label>\
         <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required autofocus value=\"{}\">\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button class=\"primary\" type=\"submit\">Sign in</button></form></main>",
        escape(email)
    );
    html::respond(status, html::document("Sign in", "", &body))
}

/// `GET /admin/login`: the form (or, already signed in, straight on to `next`).
#[handler]
pub async fn login_form(req: &Request, state: Data<&Arc<AppState>>, q: poem::Result<Query<LoginQuery>>) -> Response {
    let q = q.map(|q| q.0).unwrap_or_default();
    if let Ok(Some(_)) = from_access(&state, req).await {
        return see_other(&safe_next(q.next.as_deref()));
    }
    login_page(StatusCode::OK, "", q.next.as_deref(), None)
}

/// `POST /admin/login`: checks the password (throttled and audited by the domain) and starts
/// the cookie session.
#[handler]
pub async fn login_submit(req: &Request, state: Data<&Arc<AppState>>, form: poem::Result<Form<LoginForm>>) -> Response {
    if cross_site_write(req) {
        return cross_site_refusal();
    }
    let Ok(Form(form)) = form else {
        return login_page(StatusCode::BAD_REQUEST, "", None, Some("Enter your email and password."));
    };
    let next = form.next.as_deref();
    if form.email.trim().is_empty() || form.password.is_empty() {
        return login_page(StatusCode::BAD_REQUEST, &form.email, next, Some("Enter your email and password."));
    }
    let ctx = anonymous(req);
    let fail = |status, message: &str| login_page(status, &form.email, next, Some(message));
    match domain_auth::login(&state.db, &ctx, &form.email, &form.password).await {
        Ok(s) => match state.jwt.issue(&s.user) {
            Ok(access) => with_cookies(see_other(&safe_next(next)), &session_cookies(req, &access, &s.refresh_token)),
            Err(_) => fail(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong; try again."),
        },
        Err(DomainError::Unauthorized(_)) => fail(StatusCode::UNAUTHORIZED, "Wrong email or password."),
        Err(DomainError::TooManyRequests { retry_after_secs }) => {
            let minutes = retry_after_secs.div_ceil(60);
            let mut resp = fail(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many failed sign-in attempts. Try again in {minutes} minutes."),
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
            resp
        }
        Err(DomainError::Unavailable(_)) => {
            fail(StatusCode::SERVICE_UNAVAILABLE, "Virel is unavailable right now; try again shortly.")
        }
        Err(e) => {
            tracing::error!(error = %e, "admin login failed");
            fail(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong; try again.")
        }
    }
}

/// `POST /admin/logout`: ends the session server-side (its refresh token family) and deletes
/// both cookies. Works with an expired access cookie too (the refresh cookie says who).
#[handler]
pub async fn logout(req: &Request, state: Data<&Arc<AppState>>) -> Response {
    if cross_site_write(req) {
        return cross_site_refusal();
    }
    if let Some(refresh) = cookie(req, REFRESH_COOKIE) {
        let ended = match from_access(&state, req).await {
            Ok(Some(s)) => domain_auth::logout(&state.db, &s.ctx, Some(&refresh)).await,
            // No access token: rotating the refresh token tells who this is; then end it.
            _ => match domain_auth::refresh(&state.db, &anonymous(req), &refresh).await {
                Ok(s) => match PageSession::new(s.user, req) {
                    Some(p) => domain_auth::logout(&state.db, &p.ctx, Some(&s.refresh_token)).await,
                    None => Ok(()),
                },
                // Already unusable: nothing to end.
                Err(DomainError::Unauthorized(_)) => Ok(()),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = ended {
            tracing::warn!(error = %e, "admin logout could not revoke the refresh token");
        }
    }
    with_cookies(see_other("/admin/login"), &cleared_cookies(req))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_admin_pages() {
        assert_eq!(safe_next(Some("/admin/queues?x=1")), "/admin/queues?x=1");
        for bad in
            ["https://evil.example/admin/", "//evil.example", "/api/v1/me", "/admin", "/admin/../x", "/admin/\\x"]
        {
            assert_eq!(safe_next(Some(bad)), DEFAULT_LANDING, "{bad}");
        }
        assert_eq!(safe_next(None), DEFAULT_LANDING);
    }
}
