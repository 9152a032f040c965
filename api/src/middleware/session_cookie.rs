//! The operator pages' session cookie as a way into `/api/v1`.

use poem::http::{HeaderValue, header::AUTHORIZATION};
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::admin;

/// Same-origin pages call the API with the operator's session cookie (`virel_session`, the
/// access token, HttpOnly) instead of holding a token in JavaScript: a request to `/api/v1/`
/// without an `Authorization` header but with that cookie gets `Authorization: Bearer
/// <cookie>`. This is not a CSRF hole because the cookie is `SameSite=Strict`: browsers do not
/// send it on requests another site starts (forms, images, fetches). An explicit
/// `Authorization` header always wins.
pub async fn session_cookie_auth<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    if req.uri().path().starts_with("/api/v1/") && !req.headers().contains_key(AUTHORIZATION) {
        let bearer =
            admin::cookie(&req, admin::SESSION_COOKIE).and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok());
        if let Some(v) = bearer {
            req.headers_mut().insert(AUTHORIZATION, v);
        }
    }
    Ok(next.call(req).await?.into_response())
}
