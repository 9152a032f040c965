//! The operator pages under `/admin`, served by the API process: server-rendered HTML with
//! inline CSS, no framework, no external assets. The queue dashboard works without JavaScript;
//! the Action Center carries one small inline script (allowed by its hash) for live updates.
//!
//! - `session`: the cookie session (login, logout) and `page_guard`, which every page but the
//!   login wraps itself in: `.at("/admin/x", get(page).around(admin::page_guard))`; the
//!   handler takes `Data<&PageSession>` and checks its permission with
//!   `PageSession::require` (a refusal is audited and answered with a 403 page).
//! - `queues`: the queue dashboard and the retry of dead jobs.
//! - `html`: escaping and the shared layout.

pub mod action_center;
pub mod html;
pub mod queues;
pub mod session;

use poem::{Response, handler};
pub use session::{PageSession, REFRESH_COOKIE, SESSION_COOKIE, cookie, page_guard};

/// `GET /admin`: the Action Center is the operator's home.
#[handler]
pub fn index() -> Response {
    session::see_other(session::DEFAULT_LANDING)
}
