//! `/system`: the queues (live numbers, outcomes, dead jobs; retry a dead job) and the
//! Prometheus metrics.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{Object, OpenApi};
use serde_json::Value;
use uuid::Uuid;
use virel_domain::jobs::{self, Queue};
use virel_domain::policy::Permission;
use virel_domain::{DomainError, commands::authorize};

use crate::auth::Auth;
use crate::error::ApiResult;
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

#[derive(Object)]
pub struct QueueOut {
    pub name: String,
    pub pending: i64,
    pub scheduled: i64,
    pub running: i64,
    /// Completed in the last 60 minutes.
    pub done: i64,
    /// Failed attempts in the last 60 minutes (each retried or dead).
    pub failed: i64,
    pub retried: i64,
    /// Dead jobs not yet retried.
    pub dead: i64,
    pub oldest_pending_age_secs: Option<i64>,
    pub jobs_per_min_5m: f64,
    pub jobs_per_min_60m: f64,
    pub live_workers: i64,
}

#[derive(Object)]
pub struct DeadJobOut {
    pub id: Uuid,
    pub queue: String,
    pub kind: String,
    pub attempts: i64,
    pub error: String,
    pub died_at: DateTime<Utc>,
    pub retried_at: Option<DateTime<Utc>>,
    pub job: Value,
}

#[derive(Object)]
pub struct Outbox {
    /// Events committed but not yet on a queue.
    pub undispatched: i64,
    pub oldest_age_secs: Option<i64>,
}

#[derive(Object)]
pub struct QueueOverview {
    /// redis or sqlite.
    pub backend: String,
    pub queues: Vec<QueueOut>,
    pub outbox: Outbox,
    pub dead_jobs: Vec<DeadJobOut>,
}

pub fn dead_out(d: jobs::DeadJob) -> DeadJobOut {
    DeadJobOut {
        id: d.id,
        queue: d.queue,
        kind: d.kind,
        attempts: d.attempts,
        error: d.error,
        died_at: d.died_at,
        retried_at: d.retried_at,
        job: d.job.0,
    }
}

/// The dashboard's data; shared by the API and the `/admin/queues` page.
pub async fn overview(state: &AppState) -> ApiResult<QueueOverview> {
    let backend =
        state.queues.as_ref().ok_or_else(|| DomainError::Unavailable("this process has no queue connection".into()))?;
    let mut queues = Vec::new();
    for q in Queue::ALL {
        let live = backend.live(q).await?;
        let s = jobs::stats(&state.db, q.as_str()).await?;
        queues.push(QueueOut {
            name: q.as_str().into(),
            pending: live.pending,
            scheduled: live.scheduled,
            running: live.running,
            done: s.done_60m,
            failed: s.failed_60m,
            retried: s.retried_60m,
            dead: s.dead_total,
            oldest_pending_age_secs: live.oldest_pending_age_secs,
            jobs_per_min_5m: s.per_min_5m,
            jobs_per_min_60m: s.per_min_60m,
            live_workers: live.live_workers,
        });
    }
    let lag = jobs::outbox_lag(&state.db).await?;
    let dead_jobs = jobs::last_dead(&state.db, 20).await?.into_iter().map(dead_out).collect();
    Ok(QueueOverview {
        backend: backend.name().into(),
        queues,
        outbox: Outbox { undispatched: lag.undispatched, oldest_age_secs: lag.oldest_age_secs },
        dead_jobs,
    })
}

#[OpenApi(tag = "ApiTags::System")]
impl Api {
    /// Per queue: pending, scheduled, running, done, failed, dead, oldest pending age,
    /// jobs/min over 5 and 60 minutes, live workers; the outbox backlog; the last dead jobs.
    #[oai(path = "/system/queue", method = "get", operation_id = "getQueueOverview")]
    async fn queue(&self, auth: Auth) -> ApiResult<Json<QueueOverview>> {
        authorize(&self.state.db, &auth.0, Permission::SystemRead, "system").await?;
        Ok(Json(overview(&self.state).await?))
    }

    /// Prometheus metrics in the text exposition format: HTTP requests and latency by route,
    /// jobs by queue, kind and outcome with their wait and run times, the outbox backlog and
    /// lag, relay batch sizes, live connections, SLA warnings, breaches and escalations.
    /// Readable with a token that has `system:read`, or with
    /// `Authorization: Bearer <VIREL_METRICS_TOKEN>` when that setting is set.
    #[oai(path = "/system/metrics", method = "get", operation_id = "getMetrics")]
    async fn metrics(&self, req: &Request) -> ApiResult<PlainText<String>> {
        if !scrape_token_ok(&self.state, req) {
            let ctx = crate::auth::ctx_from_request(&self.state, req).await?;
            authorize(&self.state.db, &ctx, Permission::SystemRead, "system").await?;
        }
        let handle = self
            .state
            .metrics
            .as_ref()
            .ok_or_else(|| DomainError::Unavailable("this process records no metrics".into()))?;
        // The outbox gauges are read now; with the database down the last values stay.
        if let Ok(lag) = jobs::outbox_lag(&self.state.db).await {
            metrics::gauge!("virel_outbox_backlog").set(lag.undispatched as f64);
            metrics::gauge!("virel_outbox_lag_seconds").set(lag.oldest_age_secs.unwrap_or(0) as f64);
        }
        handle.run_upkeep();
        Ok(PlainText(handle.render()))
    }

    /// Run a dead job again (once: a second retry of the same dead job is 409).
    #[oai(path = "/system/queue/:queue/jobs/:id/retry", method = "post", operation_id = "retryDeadJob")]
    async fn retry(&self, auth: Auth, queue: Path<String>, id: Path<Uuid>) -> ApiResult<Json<DeadJobOut>> {
        // The permission first: a caller without it is refused (and audited) whether or not this
        // process has a queue connection.
        authorize(&self.state.db, &auth.0, Permission::SystemManage, "job").await?;
        let backend = self
            .state
            .queues
            .as_ref()
            .ok_or_else(|| DomainError::Unavailable("this process has no queue connection".into()))?;
        let d = jobs::retry_dead(&self.state.db, &auth.0, backend.as_ref(), &queue.0, id.0).await?;
        Ok(Json(dead_out(d)))
    }
}

/// The request carries the scrape token (`VIREL_METRICS_TOKEN`), compared in constant time.
fn scrape_token_ok(state: &AppState, req: &Request) -> bool {
    state.metrics_token.as_deref().filter(|t| !t.is_empty()).is_some_and(|t| crate::metrics::bearer_matches(req, t))
}
