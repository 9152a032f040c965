//! The error shape of every answer, `{"error": {"code", "message", "details"}}`, and the one
//! place where domain errors become HTTP statuses.

use poem::{Response, http::StatusCode};
use poem_openapi::{ApiResponse, Object, payload::Json};
use serde_json::Value;
use virel_domain::DomainError;

#[derive(Object, Debug, Clone, serde::Serialize)]
pub struct ErrorInfo {
    /// Stable machine-readable code: invalid_transition, booking_overlap, model_unavailable,
    /// version_conflict,
    /// duplicate, validation_failed, guard_failed, not_found, forbidden, unauthorized,
    /// bad_request, payload_too_large, too_many_requests, payment_provider_error, service_unavailable,
    /// internal.
    pub code: String,
    pub message: String,
    pub details: Value,
}

#[derive(Object, Debug, Clone, serde::Serialize)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

impl ErrorBody {
    pub fn new(code: &str, message: impl Into<String>, details: Value) -> ErrorBody {
        ErrorBody { error: ErrorInfo { code: code.into(), message: message.into(), details } }
    }
}

#[derive(ApiResponse, Debug)]
pub enum ApiError {
    /// Malformed body or parameters.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing, invalid or expired credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The caller lacks the permission (the attempt is audited).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// invalid_transition (with the allowed targets), booking_overlap, model_unavailable (with
    /// the nearest free windows), version_conflict, duplicate, guard_failed.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// Well-formed but invalid input.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>),
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The payment provider refused the request; nothing was changed.
    #[oai(status = 502)]
    BadGateway(Json<ErrorBody>),
    /// A dependency is down; the write did not happen.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError::BadRequest(Json(ErrorBody::new("bad_request", msg, Value::Object(Default::default()))))
    }

    pub fn unauthorized(msg: impl Into<String>) -> ApiError {
        ApiError::Unauthorized(Json(ErrorBody::new("unauthorized", msg, Value::Object(Default::default()))))
    }
}

/// The HTTP status of a domain error: the domain knows no HTTP, this is the one mapping.
pub fn status_of(e: &DomainError) -> StatusCode {
    match e {
        DomainError::NotFound { .. } => StatusCode::NOT_FOUND,
        DomainError::Forbidden { .. } => StatusCode::FORBIDDEN,
        DomainError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        DomainError::InvalidTransition { .. }
        | DomainError::BookingOverlap { .. }
        | DomainError::ModelUnavailable { .. }
        | DomainError::VersionConflict { .. }
        | DomainError::Duplicate(_)
        | DomainError::GuardFailed { .. } => StatusCode::CONFLICT,
        DomainError::Invalid(_) | DomainError::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        DomainError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        DomainError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        DomainError::Provider { .. } => StatusCode::BAD_GATEWAY,
        DomainError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> ApiError {
        let message = match &e {
            // Internal details stay in the log, never in an answer.
            DomainError::Internal(detail) => {
                tracing::error!(detail = %detail, "internal error");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let body = Json(ErrorBody::new(e.code(), message, e.details()));
        match status_of(&e) {
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized(body),
            StatusCode::FORBIDDEN => ApiError::Forbidden(body),
            StatusCode::NOT_FOUND => ApiError::NotFound(body),
            StatusCode::CONFLICT => ApiError::Conflict(body),
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::Unprocessable(body),
            StatusCode::TOO_MANY_REQUESTS => ApiError::TooManyRequests(body),
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(body),
            StatusCode::BAD_GATEWAY => ApiError::BadGateway(body),
            _ => ApiError::Internal(body),
        }
    }
}

/// Turns any error that did not come from a handler (a body that is not JSON, a wrong type,
/// a bad id in the path, an unknown route, a missing token) into the same error shape.
pub async fn render_error(err: poem::Error) -> Response {
    if err.is::<poem_openapi::error::AuthorizationError>() {
        return json_response(
            StatusCode::UNAUTHORIZED,
            ErrorBody::new("unauthorized", "a valid bearer token is required", Value::Object(Default::default())),
        );
    }
    // A bound the OpenAPI document declares (`maxLength`, ...) that the body broke: well-formed
    // but invalid, 422 naming the field, as the domain answers for the same bound.
    if let Some(p) = err.downcast_ref::<poem_openapi::error::ParseRequestPayloadError>()
        && let Some((field, message)) = broken_bound(&p.reason)
    {
        return json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorBody::new("validation_failed", message, serde_json::json!({"field": field})),
        );
    }
    // A path segment that cannot be the id it stands for names nothing: 404, as for an id
    // that does not exist.
    if err.is::<poem_openapi::error::ParsePathError>() {
        return json_response(
            StatusCode::NOT_FOUND,
            ErrorBody::new("not_found", "no such resource", Value::Object(Default::default())),
        );
    }
    let status = err.status();
    if err.is_from_response() {
        // Already one of ours (an ApiError turned into a poem::Error).
        return err.into_response();
    }
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let unmatched = matches!(status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED);
    let message = if status.is_server_error() {
        tracing::error!(error = %err, "unhandled error");
        "internal error".to_string()
    } else if status == StatusCode::NOT_FOUND {
        "no such route".to_string()
    } else {
        err.to_string()
    };
    let mut resp = json_response(status, ErrorBody::new(code, message, Value::Object(Default::default())));
    if unmatched {
        // No route took the request: the metrics label it `unmatched`, not by its path.
        resp.extensions_mut().insert(UnmatchedRoute);
    }
    resp
}

/// poem-openapi's validator failure (`field `name` verification failed. maxLength(200)`) as a
/// field and a message; None for any other parse error.
fn broken_bound(reason: &str) -> Option<(String, String)> {
    let (_, rest) = reason.split_once("field `")?;
    let (field, rest) = rest.split_once("` verification failed. ")?;
    let bound = rest.split_whitespace().next().unwrap_or_default().trim_end_matches(['.', ')', ',']);
    let message = match bound.split_once('(') {
        Some(("maxLength", n)) => format!("{field} must be at most {n} characters"),
        Some(("maxItems", n)) => format!("{field} must have at most {n} items"),
        Some(("minLength", n)) => format!("{field} must be at least {n} characters"),
        Some(("maximum", n)) => format!("{field} must be at most {n}"),
        Some(("minimum", n)) => format!("{field} must be at least {n}"),
        _ => format!("{field} is out of bounds ({bound})"),
    };
    Some((field.to_string(), message))
}

/// Marks an answer that no route produced (an unknown path or method).
#[derive(Clone, Copy, Debug)]
pub struct UnmatchedRoute;

pub fn json_response(status: StatusCode, body: ErrorBody) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(serde_json::to_vec(&body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn validator_failures_name_the_field() {
        let r = r#"failed to parse "CreateClient": field `name` verification failed. maxLength(200)"#;
        assert_eq!(
            super::broken_bound(r),
            Some(("name".to_string(), "name must be at most 200 characters".to_string()))
        );
        let nested = format!(r#"{r} (occurred while parsing "CreateInquiry")"#);
        assert_eq!(super::broken_bound(&nested).unwrap().1, "name must be at most 200 characters");
        assert_eq!(super::broken_bound("expected value at line 1 column 1"), None);
    }
}
