//! `/admin/queues`: the queue dashboard as a page (the data of `GET /api/v1/system/queue`),
//! refreshed every 5 seconds, with a Retry button on each dead job.

use std::fmt::Write;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{Response, handler};
use serde::Deserialize;
use uuid::Uuid;
use virel_domain::DomainError;
use virel_domain::jobs;
use virel_domain::policy::Permission;

use super::html::{self, Nav, escape, url_encode};
use super::session::{PageSession, see_other};
use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::resources::system::{DeadJobOut, QueueOut, QueueOverview, overview};

/// Reloads every 5 s, without the flash message of a retry.
const REFRESH: &str = "<meta http-equiv=\"refresh\" content=\"5; url=/admin/queues\">";

/// `?flash=<code>&job=<id>` after a retry: a fixed set of messages, so a crafted link cannot
/// put words of its own on the page.
#[derive(Deserialize, Default)]
pub struct FlashQuery {
    flash: Option<String>,
    job: Option<String>,
}

fn flash_html(q: &FlashQuery) -> String {
    let job = q.job.as_deref().and_then(|j| Uuid::parse_str(j).ok());
    let (ok, text) = match q.flash.as_deref() {
        Some("retried") => (
            true,
            match job {
                Some(id) => format!("Dead job {id} was put back on its queue."),
                None => "The dead job was put back on its queue.".into(),
            },
        ),
        Some("already_retried") => (false, "That dead job was already retried; it is not run twice.".into()),
        Some("not_found") => (false, "There is no such dead job on that queue.".into()),
        Some("unavailable") => {
            (false, "The queue could not be reached; the job stays dead and can be retried later.".into())
        }
        Some("failed") => (false, "The retry failed; the job stays dead.".into()),
        _ => return String::new(),
    };
    let class = if ok { "flash" } else { "flash error" };
    format!("<div class=\"{class}\" role=\"status\">{}</div>", escape(&text))
}

fn age(secs: Option<i64>) -> String {
    let Some(s) = secs else { return "—".into() };
    let s = s.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} m {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} m", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86400, (s % 86400) / 3600),
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// At most `max` characters of `s` (an ellipsis marks the cut).
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn queue_card(q: &QueueOut) -> String {
    let row = |label: &str, value: String, class: &str| {
        let class = if class.is_empty() { "n".to_string() } else { format!("n {class}") };
        format!("<tr><th>{label}</th><td class=\"{class}\">{value}</td></tr>")
    };
    let mut rows = String::new();
    rows += &row("Pending", q.pending.to_string(), "");
    rows += &row("Scheduled", q.scheduled.to_string(), "");
    rows += &row("Running", q.running.to_string(), "");
    rows += &row("Done (last hour)", q.done.to_string(), "");
    rows += &row("Failed (last hour)", q.failed.to_string(), if q.failed > 0 { "warn" } else { "" });
    rows += &row("Retried (last hour)", q.retried.to_string(), "");
    rows += &row("Dead", q.dead.to_string(), if q.dead > 0 { "bad" } else { "" });
    let stale = q.oldest_pending_age_secs.is_some_and(|s| s >= 60);
    rows += &row("Oldest pending", age(q.oldest_pending_age_secs), if stale { "warn" } else { "" });
    rows += &row("Jobs/min (5 m)", format!("{:.1}", q.jobs_per_min_5m), "");
    rows += &row("Jobs/min (60 m)", format!("{:.1}", q.jobs_per_min_60m), "");
    rows += &row("Live workers", q.live_workers.to_string(), if q.live_workers == 0 { "bad" } else { "" });
    let name = escape(&q.name);
    format!("<section class=\"card\" id=\"queue-{name}\"><h2>{name}</h2><table>{rows}</table></section>")
}

fn dead_row(d: &DeadJobOut) -> String {
    let payload = serde_json::to_string_pretty(&d.job).unwrap_or_default();
    let action = match d.retried_at {
        Some(t) => format!("<span class=\"muted\">retried {}</span>", escape(&time(t))),
        None => format!(
            "<form method=\"post\" action=\"/admin/queues/{}/jobs/{}/retry\"><button type=\"submit\">Retry</button></form>",
            escape(&url_encode(&d.queue)),
            d.id
        ),
    };
    format!(
        "<tr id=\"dead-{id}\"><td>{queue}</td><td>{kind}</td><td class=\"n\">{attempts}</td>\
         <td><div class=\"err\">{error}</div><details><summary class=\"muted\">job</summary><pre>{payload}</pre></details></td>\
         <td>{died}</td><td>{action}</td></tr>",
        id = d.id,
        queue = escape(&d.queue),
        kind = escape(&d.kind),
        attempts = d.attempts,
        error = escape(&clip(&d.error, 2000)),
        payload = escape(&clip(&payload, 4000)),
        died = escape(&time(d.died_at)),
    )
}

fn render(o: &QueueOverview, flash: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<h1>Queues</h1><p class=\"muted\">Backend: <strong id=\"backend\">{}</strong> · as of {} · refreshes every 5 s</p>{flash}",
        escape(&o.backend),
        escape(&time(Utc::now())),
    );
    out += "<div class=\"grid\">";
    for q in &o.queues {
        out += &queue_card(q);
    }
    out += "</div>";
    let lag_class = if o.outbox.oldest_age_secs.is_some_and(|s| s >= 30) { " class=\"warn\"" } else { "" };
    let _ = write!(
        out,
        "<section class=\"card\" id=\"outbox\"><h2>Outbox</h2><p>Events committed but not yet on a queue: \
         <strong>{}</strong> · oldest: <span{lag_class}>{}</span></p></section>",
        o.outbox.undispatched,
        age(o.outbox.oldest_age_secs)
    );
    out += "<section class=\"card\" id=\"dead-jobs\" style=\"margin-top:14px\"><h2>Last dead jobs</h2>";
    if o.dead_jobs.is_empty() {
        out += "<p class=\"muted\">No dead jobs.</p>";
    } else {
        out += "<table><tr><th>Queue</th><th>Kind</th><th>Attempts</th><th>Error</th><th>Died at</th><th></th></tr>";
        for d in &o.dead_jobs {
            out += &dead_row(d);
        }
        out += "</table>";
    }
    out += "</section>";
    out
}

fn api_error_parts(e: &ApiError) -> (StatusCode, &ErrorBody) {
    match e {
        ApiError::BadRequest(b) => (StatusCode::BAD_REQUEST, &b.0),
        ApiError::Unauthorized(b) => (StatusCode::UNAUTHORIZED, &b.0),
        ApiError::Forbidden(b) => (StatusCode::FORBIDDEN, &b.0),
        ApiError::NotFound(b) => (StatusCode::NOT_FOUND, &b.0),
        ApiError::Conflict(b) => (StatusCode::CONFLICT, &b.0),
        ApiError::Unprocessable(b) => (StatusCode::UNPROCESSABLE_ENTITY, &b.0),
        ApiError::TooManyRequests(b) => (StatusCode::TOO_MANY_REQUESTS, &b.0),
        ApiError::Internal(b) => (StatusCode::INTERNAL_SERVER_ERROR, &b.0),
        ApiError::Unavailable(b) => (StatusCode::SERVICE_UNAVAILABLE, &b.0),
        ApiError::BadGateway(b) => (StatusCode::BAD_GATEWAY, &b.0),
    }
}

/// `GET /admin/queues` (`system:read`).
#[handler]
pub async fn page(
    state: Data<&Arc<AppState>>,
    session: Data<&PageSession>,
    q: poem::Result<Query<FlashQuery>>,
) -> Response {
    if let Err(refused) = session.require(&state, Permission::SystemRead, "system").await {
        return refused;
    }
    let flash = flash_html(&q.map(|q| q.0).unwrap_or_default());
    let user = &session.user;
    match overview(&state).await {
        Ok(o) => html::respond(StatusCode::OK, html::layout(user, Nav::Queues, "Queues", REFRESH, &render(&o, &flash))),
        Err(e) => {
            let (status, body) = api_error_parts(&e);
            let message = if state.queues.is_none() {
                "This process has no queue connection, so it cannot show the queues. \
                 Open this page on a process that runs with the queues (virel all, or an api process with REDIS_URL)."
                    .to_string()
            } else {
                format!("The queue numbers are not available right now: {}.", body.error.message)
            };
            let main =
                format!("<h1>Queues</h1>{flash}<div class=\"flash error\" role=\"alert\">{}</div>", escape(&message));
            html::respond(status, html::layout(user, Nav::Queues, "Queues", REFRESH, &main))
        }
    }
}

/// `POST /admin/queues/{queue}/jobs/{id}/retry` (`system:manage`): puts a dead job back on
/// its queue, once, and goes back to the dashboard with what happened.
#[handler]
pub async fn retry(
    state: Data<&Arc<AppState>>,
    session: Data<&PageSession>,
    Path((queue, id)): Path<(String, String)>,
) -> Response {
    let back = |code: &str| see_other(&format!("/admin/queues?flash={code}"));
    if let Err(refused) = session.require(&state, Permission::SystemManage, "job").await {
        return refused;
    }
    let Some(backend) = state.queues.as_ref() else {
        return back("unavailable");
    };
    let Ok(id) = Uuid::parse_str(&id) else {
        return back("not_found");
    };
    match jobs::retry_dead(&state.db, &session.ctx, backend.as_ref(), &queue, id).await {
        Ok(_) => see_other(&format!("/admin/queues?flash=retried&job={id}")),
        Err(DomainError::Duplicate(_)) => back("already_retried"),
        Err(DomainError::NotFound { .. } | DomainError::Invalid(_)) => back("not_found"),
        Err(DomainError::Forbidden { .. }) => html::forbidden(&session.user, Permission::SystemManage.as_str()),
        Err(DomainError::Unavailable(_)) => back("unavailable"),
        Err(e) => {
            tracing::error!(error = ?e, "retry of a dead job failed");
            back("failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(None), "—");
        assert_eq!(age(Some(5)), "5 s");
        assert_eq!(age(Some(125)), "2 m 5 s");
        assert_eq!(age(Some(7300)), "2 h 1 m");
        assert_eq!(age(Some(90000)), "1 d 1 h");
    }

    #[test]
    fn clip_cuts_on_characters() {
        assert_eq!(clip("ééé", 2), "éé…");
        assert_eq!(clip("ab", 2), "ab");
    }

    #[test]
    fn unknown_flash_codes_show_nothing() {
        let q = FlashQuery { flash: Some("<b>you won</b>".into()), job: None };
        assert_eq!(flash_html(&q), "");
    }
}
