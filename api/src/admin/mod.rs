//! The operator pages under `/admin`, served by the API process: server-rendered HTML, no
//! framework, no external assets. The CSS (`layout.css`, `action_center.css`) and the one
//! script (`action_center.js`) live in their own files, inlined with `include_str!`. The queue
//! dashboard works without JavaScript; the Action Center's script (allowed by its hash) keeps
//! its list live.
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
