//! Availability: `/models/{id}/availability-rules` (a model's weekly windows, blocks and extra
//! windows), `/availability` (free windows) and `/inquiries/{id}/match` (who fits).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use uuid::Uuid;
use virel_domain::availability::{self, Interval, Rules, RulesView, WeeklyWindow};
use virel_domain::matching::{self, MatchResult};

use crate::auth::Auth;
use crate::error::ApiResult;
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

/// A weekly window in the model's time zone; `end` not after `start` crosses midnight
/// (`fri 18:00–02:00` ends Saturday 02:00).
#[derive(Object, Clone)]
pub struct WeeklyIn {
    /// mon, tue, wed, thu, fri, sat or sun: the local day the window starts on.
    pub day: String,
    /// HH:MM, local.
    pub start: String,
    /// HH:MM, local.
    pub end: String,
}

/// An interval in UTC, `[start_at, end_at)`.
#[derive(Object, Clone)]
pub struct IntervalIo {
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
}

impl From<IntervalIo> for Interval {
    fn from(i: IntervalIo) -> Interval {
        Interval::new(i.start_at, i.end_at)
    }
}

impl From<Interval> for IntervalIo {
    fn from(i: Interval) -> IntervalIo {
        IntervalIo { start_at: i.start_at, end_at: i.end_at }
    }
}

#[derive(Object)]
pub struct RulesIn {
    /// The model's IANA time zone, e.g. Europe/London.
    pub time_zone: String,
    #[oai(default)]
    pub weekly: Vec<WeeklyIn>,
    /// One-off time off.
    #[oai(default)]
    pub blocks: Vec<IntervalIo>,
    /// One-off windows besides the weekly ones.
    #[oai(default)]
    pub extra: Vec<IntervalIo>,
    /// The rules version the caller saw (0 before any); another current version is 409.
    pub version: Option<i64>,
}

#[derive(Object)]
pub struct RulesOut {
    pub model_id: Uuid,
    /// False until rules are first set: the model is unrestricted (always bookable).
    pub configured: bool,
    pub time_zone: String,
    pub weekly: Vec<WeeklyIn>,
    pub blocks: Vec<IntervalIo>,
    pub extra: Vec<IntervalIo>,
    pub version: i64,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<RulesView> for RulesOut {
    fn from(v: RulesView) -> RulesOut {
        RulesOut {
            model_id: v.model_id,
            configured: v.configured,
            time_zone: v.rules.time_zone,
            weekly: v.rules.weekly.into_iter().map(|w| WeeklyIn { day: w.day, start: w.start, end: w.end }).collect(),
            blocks: v.rules.blocks.into_iter().map(Into::into).collect(),
            extra: v.rules.extra.into_iter().map(Into::into).collect(),
            version: v.version,
            updated_at: v.updated_at,
        }
    }
}

#[derive(Object)]
pub struct ModelWindowsOut {
    pub model_id: Uuid,
    /// Free windows: slots minus blocks minus bookings (with the travel buffer), clipped to
    /// the range.
    pub windows: Vec<IntervalIo>,
}

#[derive(Object)]
pub struct AvailabilityOut {
    /// The range answered: `from`, and `to` as asked, but never before `from` (an empty range)
    /// and at most 31 days after it.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub items: Vec<ModelWindowsOut>,
}

#[derive(Object)]
pub struct CandidateOut {
    pub model_id: Uuid,
    pub name: String,
    /// 0 to 1.
    pub score: f64,
    pub reasons: Vec<String>,
}

#[derive(Object)]
pub struct ExcludedOut {
    pub model_id: Uuid,
    pub name: String,
    pub reason: String,
}

#[derive(Object)]
pub struct MatchOut {
    pub inquiry_id: Uuid,
    /// The requested window.
    pub window: IntervalIo,
    /// Active models free for the whole window, best first.
    pub candidates: Vec<CandidateOut>,
    /// Every other model, with why.
    pub excluded: Vec<ExcludedOut>,
}

impl From<MatchResult> for MatchOut {
    fn from(m: MatchResult) -> MatchOut {
        MatchOut {
            inquiry_id: m.inquiry_id,
            window: m.window.into(),
            candidates: m
                .candidates
                .into_iter()
                .map(|c| CandidateOut { model_id: c.model_id, name: c.name, score: c.score, reasons: c.reasons })
                .collect(),
            excluded: m
                .excluded
                .into_iter()
                .map(|e| ExcludedOut { model_id: e.model_id, name: e.name, reason: e.reason })
                .collect(),
        }
    }
}

#[OpenApi]
impl Api {
    /// A model's availability rules (`models:read`).
    #[oai(
        path = "/models/:id/availability-rules",
        method = "get",
        tag = "ApiTags::Models",
        operation_id = "getAvailabilityRules"
    )]
    async fn get_rules(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<RulesOut>> {
        Ok(Json(availability::get_rules(&self.state.db, &auth.0, id.0).await?.into()))
    }

    /// Replace a model's availability rules (`models:availability`); her slots are expanded
    /// again at once and `model.availability_changed` is emitted. Invalid rules are 422 naming
    /// the part (unknown zone, start equal to end, overlapping weekly windows, a block ending
    /// before it starts).
    #[oai(
        path = "/models/:id/availability-rules",
        method = "put",
        tag = "ApiTags::Models",
        operation_id = "replaceAvailabilityRules"
    )]
    async fn put_rules(&self, auth: Auth, id: Path<Uuid>, body: Json<RulesIn>) -> ApiResult<Json<RulesOut>> {
        let b = body.0;
        let rules = Rules {
            time_zone: b.time_zone,
            weekly: b.weekly.into_iter().map(|w| WeeklyWindow { day: w.day, start: w.start, end: w.end }).collect(),
            blocks: b.blocks.into_iter().map(Into::into).collect(),
            extra: b.extra.into_iter().map(Into::into).collect(),
        };
        Ok(Json(availability::put_rules(&self.state.db, &auth.0, id.0, rules, b.version).await?.into()))
    }

    /// Free windows of the active models (or of `model_id`) over `[from, to)`. A longer range
    /// than 31 days is cut there, and a reversed one is empty: the answer's `from` and `to`
    /// say which range it covers.
    #[oai(path = "/availability", method = "get", tag = "ApiTags::Models", operation_id = "listFreeWindows")]
    async fn free(
        &self,
        auth: Auth,
        from: Query<DateTime<Utc>>,
        to: Query<DateTime<Utc>>,
        model_id: Query<Option<Uuid>>,
    ) -> ApiResult<Json<AvailabilityOut>> {
        let items = availability::free_windows(&self.state.db, &auth.0, from.0, to.0, model_id.0).await?;
        Ok(Json(AvailabilityOut {
            from: from.0,
            to: availability::covered(from.0, to.0),
            items: items
                .into_iter()
                .map(|m| ModelWindowsOut {
                    model_id: m.model_id,
                    windows: m.windows.into_iter().map(Into::into).collect(),
                })
                .collect(),
        }))
    }

    /// Rank the models for an inquiry: active models free for the whole requested window
    /// (travel buffer included), scored on location, the wanted model, languages and
    /// preferences, budget against the rate, and reliability, each with the reasons.
    #[oai(path = "/inquiries/:id/match", method = "post", tag = "ApiTags::Inquiries", operation_id = "matchInquiry")]
    async fn match_inquiry(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<MatchOut>> {
        Ok(Json(matching::match_inquiry(&self.state.db, &auth.0, id.0).await?.into()))
    }
}
