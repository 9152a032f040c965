//! One module per resource of `/api/v1`.

pub mod action_center;
mod audit;
mod automation;
mod availability;
mod bookings;
mod clients;
mod exceptions;
mod health;
mod inquiries;
mod models;
mod notes;
pub mod notifications;
pub mod payments;
mod sla;
pub mod system;
mod tasks;
mod users;
mod webhooks_out;

use std::sync::Arc;

use base64::Engine;
use uuid::Uuid;
use virel_domain::commands::PageReq;

use crate::AppState;
use crate::auth::AuthApi;
use crate::error::{ApiError, ApiResult};

pub fn apis(state: Arc<AppState>) -> impl poem_openapi::OpenApi {
    let s = || state.clone();
    (
        AuthApi { state: s() },
        inquiries::Api { state: s() },
        bookings::Api { state: s() },
        tasks::Api { state: s() },
        exceptions::Api { state: s() },
        notes::Api { state: s() },
        clients::Api { state: s() },
        models::Api { state: s() },
        (
            users::Api { state: s() },
            audit::Api { state: s() },
            automation::Api { state: s() },
            system::Api { state: s() },
            health::Api { state: s() },
        ),
        (
            action_center::Api { state: s() },
            sla::Api { state: s() },
            payments::Api { state: s() },
            webhooks_out::Api { state: s() },
            notifications::Api { state: s() },
        ),
        availability::Api { state: s() },
    )
}

/// Cursors are opaque to clients: the last id of a page, base64url-encoded.
pub fn encode_cursor(id: Option<Uuid>) -> Option<String> {
    id.map(|id| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes()))
}

pub fn page(limit: Option<i64>, cursor: Option<String>) -> ApiResult<PageReq> {
    let cursor = match cursor.filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c.as_bytes())
                .map_err(|_| ApiError::bad_request("cursor is not one this API gave out"))?;
            Some(Uuid::from_slice(&bytes).map_err(|_| ApiError::bad_request("cursor is not one this API gave out"))?)
        }
    };
    match limit {
        Some(l) if !(1..=PageReq::MAX).contains(&l) => {
            Err(ApiError::bad_request(format!("limit must be between 1 and {}", PageReq::MAX)))
        }
        _ => Ok(PageReq::new(limit, cursor)?),
    }
}
