//! The errors a user of Virel can see, whatever the entry point (HTTP, worker, scheduler).

use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("{entity} not found")]
    NotFound { entity: &'static str },
    #[error("missing permission {permission}")]
    Forbidden { permission: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{entity} cannot go from {from} to {to}")]
    InvalidTransition { entity: &'static str, from: String, to: String, allowed: Vec<&'static str> },
    #[error("the model already has a booking at that time")]
    BookingOverlap { conflicting_booking_id: uuid::Uuid },
    /// The model is not free for the time (outside her availability, blocked, or within the
    /// travel buffer of another booking); `details` holds the nearest free windows.
    #[error("{message}")]
    ModelUnavailable { message: String, details: Value },
    #[error("the {entity} was changed by someone else; reload and try again")]
    VersionConflict { entity: &'static str, current_version: Option<i64> },
    #[error("{0}")]
    Duplicate(String),
    /// Well-formed but invalid input.
    #[error("{0}")]
    Invalid(String),
    /// Well-formed but invalid input in one named field (`details.field`).
    #[error("{message}")]
    InvalidField { field: String, message: String },
    /// A state machine guard refused an otherwise allowed transition.
    #[error("{message}")]
    GuardFailed { guard: &'static str, message: String },
    #[error("too many attempts; retry in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    /// A dependency is down; nothing was written.
    #[error("{0}")]
    Unavailable(String),
    /// The payment provider refused the request (a 4xx from Stripe); nothing was written.
    #[error("the payment provider refused the request: {message}")]
    Provider { message: String, code: Option<String> },
    #[error("internal error")]
    Internal(String),
}

impl DomainError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        DomainError::Invalid(msg.into())
    }

    pub fn forbidden(permission: crate::policy::Permission) -> Self {
        DomainError::Forbidden { permission: permission.as_str().to_string() }
    }

    /// The stable machine-readable code of the error shape.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::NotFound { .. } => "not_found",
            DomainError::Forbidden { .. } => "forbidden",
            DomainError::Unauthorized(_) => "unauthorized",
            DomainError::InvalidTransition { .. } => "invalid_transition",
            DomainError::BookingOverlap { .. } => "booking_overlap",
            DomainError::ModelUnavailable { .. } => "model_unavailable",
            DomainError::VersionConflict { .. } => "version_conflict",
            DomainError::Duplicate(_) => "duplicate",
            DomainError::Invalid(_) | DomainError::InvalidField { .. } => "validation_failed",
            DomainError::GuardFailed { .. } => "guard_failed",
            DomainError::TooManyRequests { .. } => "too_many_requests",
            DomainError::Unavailable(_) => "service_unavailable",
            DomainError::Provider { .. } => "payment_provider_error",
            DomainError::Internal(_) => "internal",
        }
    }

    /// Structured details for the error shape; never secrets or internals.
    pub fn details(&self) -> Value {
        match self {
            DomainError::InvalidTransition { from, to, allowed, .. } => {
                json!({"from": from, "to": to, "allowed": allowed})
            }
            DomainError::BookingOverlap { conflicting_booking_id } => {
                json!({"conflicting_booking_id": conflicting_booking_id})
            }
            DomainError::ModelUnavailable { details, .. } => details.clone(),
            DomainError::VersionConflict { current_version, .. } => {
                json!({"current_version": current_version})
            }
            DomainError::Forbidden { permission } => json!({"permission": permission}),
            DomainError::InvalidField { field, .. } => json!({"field": field}),
            DomainError::GuardFailed { guard, .. } => json!({"guard": guard}),
            DomainError::Provider { code, .. } => json!({"provider_code": code}),
            DomainError::TooManyRequests { retry_after_secs } => {
                json!({"retry_after_secs": retry_after_secs})
            }
            _ => json!({}),
        }
    }
}

impl From<sqlx::Error> for DomainError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => DomainError::NotFound { entity: "row" },
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                DomainError::Unavailable("the database is unavailable; nothing was written".into())
            }
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                DomainError::Duplicate("a record with the same unique value already exists".into())
            }
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                DomainError::Invalid("a referenced record does not exist".into())
            }
            _ => {
                tracing::error!(error = %e, "database error");
                DomainError::Internal(e.to_string())
            }
        }
    }
}

pub type DomainResult<T> = Result<T, DomainError>;
