//! `/admin/action-center`: the operator's single screen. One server-rendered document with
//! its CSS (`action_center.css`) and small script (`action_center.js`) inlined from their own
//! files with `include_str!` (no framework, no build step, no external assets):
//! the list of open tasks and exceptions from `GET /api/v1/action-center`, live SLA
//! countdowns, the quick actions, and live updates from the WebSocket `/api/v1/ws`.
//!
//! The script calls the API with the HttpOnly session cookie (same origin); it never sees a
//! token. When the access cookie has expired it loads this page once in the background, which
//! lets the page guard rotate the refresh cookie, and tries again. Everything it renders from
//! data goes through `textContent` or `setAttribute`, never `innerHTML`. The page's policy
//! allows exactly this script (by its SHA-256) and connections to this origin.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Response, handler};
use sha2::{Digest, Sha256};
use virel_domain::policy::Permission;

use super::html::{self, Nav, escape};
use super::session::PageSession;
use crate::AppState;

/// `GET /admin/action-center` (`action_center:read`).
#[handler]
pub async fn page(state: Data<&Arc<AppState>>, session: Data<&PageSession>) -> Response {
    if let Err(refused) = session.require(&state, Permission::ActionCenterRead, "action_center").await {
        return refused;
    }
    let user = &session.user;
    let main = render(
        &user.id.to_string(),
        session.ctx.sees_all_items(),
        &Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    );
    respond(html::layout(user, Nav::ActionCenter, "Action Center", &format!("<style>{CSS}</style>"), &main))
}

/// The page's body: `user_id` and `sees_all` tell the script which live items belong in
/// this user's view; `now` (the server's clock) corrects the countdowns for a skewed client.
fn render(user_id: &str, sees_all: bool, now: &str) -> String {
    let scope = if sees_all { "All open tasks and exceptions." } else { "Your items and unassigned ones." };
    let priorities: String =
        ["critical", "high", "normal", "low"].iter().map(|p| format!("<option value=\"{p}\">{p}</option>")).collect();
    format!(
        "<div id=\"ac\" data-user-id=\"{user_id}\" data-sees-all=\"{sees_all}\" data-now=\"{now}\">\
         <div class=\"ac-head\"><h1>Action Center</h1>\
         <span id=\"ac-live\" class=\"live\" data-state=\"connecting\" role=\"status\">connecting…</span></div>\
         <p class=\"muted ac-scope\">{scope} Breached first, then the soonest deadline.</p>\
         <div class=\"ac-bar\">\
         <div class=\"counts\" id=\"ac-counts\">\
         <div class=\"count breached\"><span>Breached</span><b id=\"count-breached\">–</b></div>\
         <div class=\"count at_risk\"><span>At risk</span><b id=\"count-at_risk\">–</b></div>\
         <div class=\"count ok\"><span>OK</span><b id=\"count-ok\">–</b></div>\
         <div class=\"count total\"><span>Total</span><b id=\"count-total\">–</b></div></div>\
         <form id=\"ac-filters\" class=\"filters\">\
         <span class=\"seg\" role=\"radiogroup\" aria-label=\"Show\">\
         <label><input type=\"radio\" name=\"scope\" value=\"all\" checked> All</label>\
         <label><input type=\"radio\" name=\"scope\" value=\"mine\"> Mine</label>\
         <label><input type=\"radio\" name=\"scope\" value=\"unassigned\"> Unassigned</label></span>\
         <label>Kind <select name=\"kind\" id=\"f-kind\"><option value=\"\">all</option>\
         <option value=\"task\">tasks</option><option value=\"exception\">exceptions</option></select></label>\
         <label>Priority <select name=\"priority\" id=\"f-priority\"><option value=\"\">any</option>{priorities}</select></label>\
         </form></div>\
         <div id=\"ac-msg\" aria-live=\"polite\"></div>\
         <noscript><div class=\"flash error\">The Action Center needs JavaScript for its live list and quick actions.</div></noscript>\
         <div class=\"card ac-list\"><table id=\"ac-table\"><thead><tr>\
         <th>SLA</th><th>Kind</th><th>Type</th><th>Title</th><th>Subject</th><th>Priority</th>\
         <th>Assignee</th><th>Status</th><th>Actions</th></tr></thead><tbody id=\"ac-rows\"></tbody></table>\
         <p id=\"ac-empty\" class=\"muted\">Loading…</p></div></div>\
         <script>{SCRIPT}</script>",
        user_id = escape(user_id),
        now = escape(now),
    )
}

/// `'sha256-…'` of the inline script, for the page's policy.
fn script_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT.as_bytes())))
    })
}

/// Like `html::respond`, with a policy that lets this page's own script run and talk to
/// this origin (fetch and WebSocket), and nothing else.
fn respond(body: String) -> Response {
    let csp = format!(
        "default-src 'none'; script-src {}; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        script_hash()
    );
    Response::builder()
        .status(StatusCode::OK)
        .content_type("text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .header("content-security-policy", csp)
        .header("x-frame-options", "DENY")
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "same-origin")
        .body(body)
}

/// Goes into `<head>`, before the shared style: selectors here are specific enough to win.
/// The page's own style sheet, added to the layout's.
const CSS: &str = include_str!("action_center.css");

/// The page's script: list, countdowns, quick actions, live feed. Static (the user's id and
/// the server's clock are data attributes), so the policy can name it by its hash.
const SCRIPT: &str = include_str!("action_center.js");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_renders_data_as_text_only() {
        for bad in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "</script"] {
            assert!(!SCRIPT.contains(bad), "{bad}");
        }
    }

    #[test]
    fn the_policy_names_the_script_by_its_hash() {
        let h = script_hash();
        assert!(h.starts_with("'sha256-") && h.ends_with('\'') && h.len() == 53, "{h}");
        let body = render("u\"<x>", true, "2025-01-01T00:00:00.000Z");
        assert!(body.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(body.contains("data-user-id=\"u&quot;&lt;x&gt;\""), "attributes are escaped");
    }
}
