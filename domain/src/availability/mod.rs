//! Availability (SPEC §11): each model's rules (weekly windows in her time zone, one-off
//! blocks and extra windows), their expansion into `availability_slots`, and free windows —
//! slots minus blocks minus the bookings holding her time, with the travel buffer around each.
//!
//! A model without a rules row is unrestricted: the agency has not set her availability up,
//! so every time is hers to book (only the overlap guard applies). A model with rules is free
//! only inside her slots.
//!
//! * `rules`: the API's shape and its validation (422 naming the part).
//! * `expand`: local wall-clock times to UTC, daylight-saving changes included (the policy is
//!   documented there).
//! * `free`: the interval arithmetic.

pub mod expand;
pub mod free;
pub mod rules;

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::FromRow;
use sqlx::types::Json;
use uuid::Uuid;

use crate::commands::{authorize, check_version, emit, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::machine::BOOKING_HOLDS_TIME;
use crate::policy::Permission;
use crate::store::{Conn, Db, LockTable, Tx};
use crate::{Ctx, new_id, now, q_all, q_exec, q_opt};

pub use rules::{Interval, Rules, Validated, WeeklyWindow};

/// The longest range `GET /availability` answers.
pub const MAX_RANGE_DAYS: i64 = 31;

/// The end of the range `free_windows` answers for `[from, to)`: `to`, but never before
/// `from`, at most MAX_RANGE_DAYS after it, and `from` itself (nothing) when `from` is outside
/// the times Virel keeps (2000 to 2100).
pub fn covered(from: DateTime<Utc>, to: DateTime<Utc>) -> DateTime<Utc> {
    if crate::validate::time("from", from).is_err() {
        return from;
    }
    to.max(from)
        .min(from.checked_add_signed(Duration::days(MAX_RANGE_DAYS)).unwrap_or(to))
        .min(crate::validate::max_time())
}

/// The stored rules of one model.
#[derive(Clone, Debug, FromRow, Serialize)]
pub struct RulesRow {
    pub model_id: Uuid,
    pub time_zone: String,
    pub weekly: Json<Value>,
    pub blocks: Json<Value>,
    pub extra: Json<Value>,
    /// The local dates whose weekly windows are in `availability_slots`.
    pub expanded_from: Option<String>,
    pub expanded_through: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl RulesRow {
    pub fn rules(&self) -> Rules {
        Rules {
            time_zone: self.time_zone.clone(),
            weekly: serde_json::from_value(self.weekly.0.clone()).unwrap_or_default(),
            blocks: serde_json::from_value(self.blocks.0.clone()).unwrap_or_default(),
            extra: serde_json::from_value(self.extra.0.clone()).unwrap_or_default(),
        }
    }

    pub fn validated(&self) -> DomainResult<Validated> {
        self.rules().validate().map_err(|e| {
            DomainError::Internal(format!("stored availability rules of {} are invalid: {e}", self.model_id))
        })
    }

    fn expanded(&self) -> Option<(NaiveDate, NaiveDate)> {
        let d = |s: &Option<String>| s.as_deref().and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok());
        Some((d(&self.expanded_from)?, d(&self.expanded_through)?))
    }
}

/// What `GET /models/{id}/availability-rules` answers.
#[derive(Clone, Debug, Serialize)]
pub struct RulesView {
    pub model_id: Uuid,
    /// False until the rules are first set: the model is unrestricted.
    pub configured: bool,
    #[serde(flatten)]
    pub rules: Rules,
    pub version: i64,
    pub updated_at: Option<DateTime<Utc>>,
}

impl RulesView {
    fn of(model_id: Uuid, row: Option<&RulesRow>, default_tz: &str) -> RulesView {
        match row {
            Some(r) => RulesView {
                model_id,
                configured: true,
                rules: r.rules(),
                version: r.version,
                updated_at: Some(r.updated_at),
            },
            None => RulesView {
                model_id,
                configured: false,
                rules: Rules { time_zone: default_tz.to_string(), ..Default::default() },
                version: 0,
                updated_at: None,
            },
        }
    }
}

pub async fn load_rules(conn: &mut Conn<'_>, model_id: Uuid) -> DomainResult<Option<RulesRow>> {
    q_opt!(conn, RulesRow, "SELECT * FROM availability_rules WHERE model_id = $1", model_id)
}

/// A model's rules (`models:read`: operators read them).
pub async fn get_rules(db: &Db, ctx: &Ctx, model_id: Uuid) -> DomainResult<RulesView> {
    authorize(db, ctx, Permission::ModelsRead, "availability_rules").await?;
    let mut h = db.acquire().await?;
    let mut conn = h.conn();
    crate::commands::models::load(&mut conn, model_id).await?;
    let row = load_rules(&mut conn, model_id).await?;
    Ok(RulesView::of(model_id, row.as_ref(), &db.settings().timezone))
}

/// Replaces a model's rules (`models:availability`), re-expands her slots in the same
/// transaction, and emits `model.availability_changed`. `version` (optional) is the rules
/// version the caller saw (0 for none yet).
pub async fn put_rules(
    db: &Db,
    ctx: &Ctx,
    model_id: Uuid,
    input: Rules,
    version: Option<i64>,
) -> DomainResult<RulesView> {
    authorize(db, ctx, Permission::ModelsAvailability, "availability_rules").await?;
    let v = input.validate()?;
    let weeks = db.settings().availability_weeks;
    let mut tx = db.begin().await?;
    crate::commands::models::load(&mut tx.conn(), model_id).await?;
    tx.lock_row(LockTable::Models, model_id).await?;
    let before = load_rules(&mut tx.conn(), model_id).await?;
    check_version("availability_rules", version, before.as_ref().map(|r| r.version).unwrap_or(0))?;
    let at = now();
    let stored = Rules { time_zone: v.tz.name().to_string(), ..input };
    let (weekly, blocks, extra) = (json!(stored.weekly), json!(stored.blocks), json!(stored.extra));
    match &before {
        None => {
            q_exec!(
                &mut tx.conn(),
                "INSERT INTO availability_rules (model_id, time_zone, weekly, blocks, extra, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
                model_id,
                stored.time_zone.clone(),
                Json(weekly),
                Json(blocks),
                Json(extra),
                at
            )?;
        }
        Some(b) => {
            let n = q_exec!(
                &mut tx.conn(),
                "UPDATE availability_rules SET time_zone = $1, weekly = $2, blocks = $3, extra = $4, updated_at = $5,
                     version = version + 1
                 WHERE model_id = $6 AND version = $7",
                stored.time_zone.clone(),
                Json(weekly),
                Json(blocks),
                Json(extra),
                at,
                model_id,
                b.version
            )?;
            if n == 0 {
                return Err(DomainError::VersionConflict { entity: "availability_rules", current_version: None });
            }
        }
    }
    let slots = reexpand(&mut tx.conn(), model_id, &v, at, weeks).await?;
    let after = load_rules(&mut tx.conn(), model_id).await?;
    let mut conn = tx.conn();
    emit(
        &mut conn,
        ctx,
        "model.availability_changed",
        "model",
        model_id,
        json!({
            "model_id": model_id,
            "time_zone": stored.time_zone,
            "weekly": stored.weekly.len(),
            "blocks": stored.blocks.len(),
            "extra": stored.extra.len(),
            "slots": slots,
        }),
    )
    .await?;
    let snap = |r: &Option<RulesRow>| {
        r.as_ref().map(|r| json!({"time_zone": r.time_zone, "weekly": r.weekly.0, "blocks": r.blocks.0, "extra": r.extra.0, "version": r.version}))
    };
    write_audit(
        &mut conn,
        ctx,
        "model.availability_changed",
        "model",
        Some(model_id.to_string()),
        snap(&before),
        snap(&after),
    )
    .await?;
    tx.commit().await?;
    Ok(RulesView::of(model_id, after.as_ref(), &db.settings().timezone))
}

/// The local dates the scheduler keeps expanded for a zone: from yesterday to `weeks` ahead.
pub fn horizon(tz: &Tz, at: DateTime<Utc>, weeks: i64) -> (NaiveDate, NaiveDate) {
    let today = at.with_timezone(tz).date_naive();
    let from = today.pred_opt().unwrap_or(today);
    let through = today.checked_add_signed(Duration::days(weeks.clamp(1, 104) * 7)).unwrap_or(today);
    (from, through)
}

/// Inserts slots in batches (one statement per hundred).
async fn insert_slots(
    conn: &mut Conn<'_>,
    model_id: Uuid,
    slots: &[(Interval, &str)],
    at: DateTime<Utc>,
) -> DomainResult<()> {
    for chunk in slots.chunks(100) {
        let mut sql =
            String::from("INSERT INTO availability_slots (id, model_id, start_at, end_at, source, created_at) VALUES ");
        for i in 0..chunk.len() {
            let b = i * 6;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${}, ${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6));
        }
        match &mut *conn {
            Conn::Pg(c) => {
                let mut q = sqlx::query::<sqlx::Postgres>(sqlx::AssertSqlSafe(sql));
                for (iv, source) in chunk {
                    q = q.bind(new_id()).bind(model_id).bind(iv.start_at).bind(iv.end_at).bind(*source).bind(at);
                }
                q.execute(&mut **c).await?;
            }
            Conn::Lite(c) => {
                let mut q = sqlx::query::<sqlx::Sqlite>(sqlx::AssertSqlSafe(sql));
                for (iv, source) in chunk {
                    q = q.bind(new_id()).bind(model_id).bind(iv.start_at).bind(iv.end_at).bind(*source).bind(at);
                }
                q.execute(&mut **c).await?;
            }
        }
    }
    Ok(())
}

/// Rewrites all of a model's slots from her rules: the weekly windows of the horizon's dates
/// and every extra window. Returns the number of slots written.
async fn reexpand(
    conn: &mut Conn<'_>,
    model_id: Uuid,
    v: &Validated,
    at: DateTime<Utc>,
    weeks: i64,
) -> DomainResult<usize> {
    let (from, through) = horizon(&v.tz, at, weeks);
    q_exec!(conn, "DELETE FROM availability_slots WHERE model_id = $1", model_id)?;
    let mut slots: Vec<(Interval, &str)> =
        expand::weekly_for_dates(v, from, through).into_iter().map(|iv| (iv, "weekly")).collect();
    slots.extend(v.extra.iter().map(|iv| (*iv, "extra")));
    insert_slots(conn, model_id, &slots, at).await?;
    q_exec!(
        conn,
        "UPDATE availability_rules SET expanded_from = $1, expanded_through = $2 WHERE model_id = $3",
        from.format("%Y-%m-%d").to_string(),
        through.format("%Y-%m-%d").to_string(),
        model_id
    )?;
    Ok(slots.len())
}

/// What one scheduled expansion did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExpandOutcome {
    pub models: usize,
    pub slots: usize,
    pub purged: u64,
}

/// Slots that ended longer ago than this are forgotten (past free windows are then computed
/// from the rules).
const KEEP_PAST_DAYS: i64 = 7;

/// The scheduler's expansion: every model's slots reach `availability_weeks` ahead. Only the
/// new dates are added (a model whose rules changed was rewritten by `put_rules` already),
/// and her slots that ended more than a week ago are forgotten. `model_id` rewrites that one
/// model from her rules instead. Each model moves in its own transaction, claimed by its
/// `expanded_through`, so two schedulers never add the same dates twice.
pub async fn expand_due(db: &Db, model_id: Option<Uuid>) -> DomainResult<ExpandOutcome> {
    let weeks = db.settings().availability_weeks;
    let at = now();
    let mut out = ExpandOutcome::default();
    let rows = q_all!(
        &mut db.acquire().await?.conn(),
        RulesRow,
        "SELECT * FROM availability_rules WHERE ($1 IS NULL OR model_id = $1) ORDER BY model_id",
        model_id
    )?;
    for row in rows {
        let Ok(v) = row.validated() else {
            tracing::warn!(model = %row.model_id, "stored availability rules do not validate; skipped");
            continue;
        };
        let (_, through) = horizon(&v.tz, at, weeks);
        let incremental = match (row.expanded(), model_id) {
            (Some((_, done)), None) if done >= through => continue,
            (Some(range), None) => Some(range),
            _ => None,
        };
        let mut tx = db.begin().await?;
        let n = match incremental {
            Some((from, done)) => {
                // Windows of dates after the week-old one end after the purge line, so they stay.
                let past = (at - Duration::days(KEEP_PAST_DAYS)).with_timezone(&v.tz).date_naive();
                let new_from = from.max(past.succ_opt().unwrap_or(past));
                let claimed = q_exec!(
                    &mut tx.conn(),
                    "UPDATE availability_rules SET expanded_from = $1, expanded_through = $2
                     WHERE model_id = $3 AND expanded_through = $4",
                    new_from.format("%Y-%m-%d").to_string(),
                    through.format("%Y-%m-%d").to_string(),
                    row.model_id,
                    row.expanded_through.clone()
                )?;
                if claimed == 0 {
                    continue;
                }
                out.purged += q_exec!(
                    &mut tx.conn(),
                    "DELETE FROM availability_slots WHERE model_id = $1 AND end_at < $2",
                    row.model_id,
                    at - Duration::days(KEEP_PAST_DAYS)
                )?;
                let first = done.succ_opt().unwrap_or(done);
                let slots: Vec<(Interval, &str)> =
                    expand::weekly_for_dates(&v, first, through).into_iter().map(|iv| (iv, "weekly")).collect();
                insert_slots(&mut tx.conn(), row.model_id, &slots, at).await?;
                slots.len()
            }
            None => {
                tx.lock_row(LockTable::Models, row.model_id).await?;
                reexpand(&mut tx.conn(), row.model_id, &v, at, weeks).await?
            }
        };
        tx.commit_quiet().await?;
        out.models += 1;
        out.slots += n;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Free windows.

/// A booking holding a model's time.
#[derive(Clone, Copy, Debug, FromRow)]
pub struct Busy {
    pub id: Uuid,
    pub model_id: Uuid,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
}

impl Busy {
    pub fn interval(&self) -> Interval {
        Interval::new(self.start_at, self.end_at)
    }
}

#[derive(FromRow)]
struct SlotRow {
    model_id: Uuid,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct IdRow {
    id: Uuid,
}

/// One model's time over a range: her rules (None: unrestricted), her slots reaching into the
/// range (merged), and the bookings holding her time near it.
#[derive(Clone, Debug)]
pub struct ModelTime {
    pub model_id: Uuid,
    pub rules: Option<Validated>,
    pub slots: Vec<Interval>,
    pub bookings: Vec<Busy>,
}

impl ModelTime {
    /// The free windows inside `range`, leaving out booking `exclude` (the one being moved).
    pub fn free(&self, range: Interval, buffer: Duration, exclude: Option<Uuid>) -> Vec<Interval> {
        let blocks = self.rules.as_ref().map(|r| r.blocks.as_slice()).unwrap_or(&[]);
        let busy: Vec<Interval> = self.bookings.iter().filter(|b| Some(b.id) != exclude).map(Busy::interval).collect();
        free::free_windows(self.slots.clone(), blocks, &busy, buffer, range)
    }

    /// The zone her times are shown in: her own, or the agency's for an unrestricted model.
    pub fn tz(&self, agency: &Tz) -> Tz {
        self.rules.as_ref().map(|r| r.tz).unwrap_or(*agency)
    }

    /// Why `at` is not free, in words an operator reads: the first of a booking (or its
    /// travel buffer), a block, or her hours.
    pub fn why_not(&self, at: Interval, buffer: Duration, exclude: Option<Uuid>, agency: &Tz) -> String {
        let tz = self.tz(agency);
        if let Some(b) = self.bookings.iter().filter(|b| Some(b.id) != exclude).find(|b| b.interval().overlaps(&at)) {
            return format!("booked {}", span(&tz, b.interval()));
        }
        if let Some(b) = self
            .bookings
            .iter()
            .filter(|b| Some(b.id) != exclude)
            .find(|b| free::buffered(b.interval(), buffer).overlaps(&at))
        {
            return format!("booked {} (travel buffer {} min)", span(&tz, b.interval()), buffer.num_minutes());
        }
        if let Some(r) = &self.rules
            && let Some(bl) = r.blocks.iter().find(|bl| bl.overlaps(&at))
        {
            return format!("blocked {}", span(&tz, *bl));
        }
        format!("not available {} (outside her hours)", span(&tz, at))
    }
}

/// `19:30–21:30` in `tz`; with the dates when it spans more than a day.
pub fn span(tz: &Tz, iv: Interval) -> String {
    let (a, b) = (iv.start_at.with_timezone(tz), iv.end_at.with_timezone(tz));
    if iv.end_at - iv.start_at < Duration::hours(24) {
        format!("{}–{}", a.format("%H:%M"), b.format("%H:%M"))
    } else {
        format!("{}–{}", a.format("%a %d %b %H:%M"), b.format("%a %d %b %H:%M"))
    }
}

pub fn buffer(db_settings: &crate::settings::Settings) -> Duration {
    Duration::minutes(db_settings.travel_buffer_minutes.clamp(0, 24 * 60))
}

/// Loads the time of the active models (or of `model_id`, active or not) over `range`: four
/// queries whatever the number of models.
pub async fn load_times(
    conn: &mut Conn<'_>,
    model_id: Option<Uuid>,
    range: Interval,
    buffer: Duration,
) -> DomainResult<Vec<ModelTime>> {
    // One model or all: separate texts, so each engine can use its index (an `$1 IS NULL OR`
    // filter makes SQLite scan).
    let (ids, rules, slots, busy) = match model_id {
        Some(m) => (
            q_all!(conn, IdRow, "SELECT id FROM models WHERE id = $1", m)?,
            q_all!(conn, RulesRow, "SELECT * FROM availability_rules WHERE model_id = $1", m)?,
            q_all!(
                conn,
                SlotRow,
                "SELECT model_id, start_at, end_at FROM availability_slots
                 WHERE model_id = $3 AND start_at < $1 AND end_at > $2",
                range.end_at,
                range.start_at,
                m
            )?,
            q_all!(
                conn,
                Busy,
                "SELECT id, model_id, start_at, end_at FROM bookings
                 WHERE model_id = $3 AND status IN ('pending', 'deposit_required', 'confirmed', 'in_progress')
                     AND start_at < $1 AND end_at > $2",
                range.end_at + buffer,
                range.start_at - buffer,
                m
            )?,
        ),
        None => (
            q_all!(conn, IdRow, "SELECT id FROM models WHERE status = 'active' ORDER BY id")?,
            q_all!(conn, RulesRow, "SELECT * FROM availability_rules")?,
            q_all!(
                conn,
                SlotRow,
                "SELECT model_id, start_at, end_at FROM availability_slots WHERE start_at < $1 AND end_at > $2",
                range.end_at,
                range.start_at
            )?,
            q_all!(
                conn,
                Busy,
                "SELECT id, model_id, start_at, end_at FROM bookings
                 WHERE status IN ('pending', 'deposit_required', 'confirmed', 'in_progress')
                     AND start_at < $1 AND end_at > $2",
                range.end_at + buffer,
                range.start_at - buffer
            )?,
        ),
    };
    debug_assert_eq!(BOOKING_HOLDS_TIME.len(), 4);
    let mut rules: HashMap<Uuid, RulesRow> = rules.into_iter().map(|r| (r.model_id, r)).collect();
    let mut slots_by: HashMap<Uuid, Vec<Interval>> = HashMap::new();
    for s in slots {
        slots_by.entry(s.model_id).or_default().push(Interval::new(s.start_at, s.end_at));
    }
    let mut busy_by: HashMap<Uuid, Vec<Busy>> = HashMap::new();
    for b in busy {
        busy_by.entry(b.model_id).or_default().push(b);
    }
    let mut out = Vec::with_capacity(ids.len());
    for IdRow { id } in ids {
        let bookings = busy_by.remove(&id).unwrap_or_default();
        let Some(row) = rules.remove(&id) else {
            out.push(ModelTime { model_id: id, rules: None, slots: vec![range], bookings });
            continue;
        };
        let v = row.validated()?;
        let mut slots = slots_by.remove(&id).unwrap_or_default();
        slots.extend(unexpanded(&row, &v, range));
        out.push(ModelTime { model_id: id, slots: free::union(slots), rules: Some(v), bookings });
    }
    Ok(out)
}

/// The windows of `range` that the slots table does not hold: weekly windows of local dates
/// outside the expanded horizon (and the extras too when nothing was expanded yet).
fn unexpanded(row: &RulesRow, v: &Validated, range: Interval) -> Vec<Interval> {
    let (first, last) = expand::dates_touching(&v.tz, range.start_at, range.end_at);
    let Some((from, through)) = row.expanded() else {
        return expand::expand(v, range.start_at, range.end_at);
    };
    let mut out = Vec::new();
    if first < from {
        out.extend(expand::weekly_for_dates(v, first, last.min(from.pred_opt().unwrap_or(from))));
    }
    if last > through {
        out.extend(expand::weekly_for_dates(v, first.max(through.succ_opt().unwrap_or(through)), last));
    }
    out.retain(|iv| iv.overlaps(&range));
    out
}

/// One model's free windows, as `GET /availability` lists them.
#[derive(Clone, Debug, Serialize)]
pub struct ModelWindows {
    pub model_id: Uuid,
    pub windows: Vec<Interval>,
}

/// Free windows of the active models (or one) over `[from, to)`, at most 31 days.
pub async fn free_windows(
    db: &Db,
    ctx: &Ctx,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    model_id: Option<Uuid>,
) -> DomainResult<Vec<ModelWindows>> {
    authorize(db, ctx, Permission::ModelsRead, "availability").await?;
    // An empty or reversed range has no free time, nor has one outside the times Virel keeps
    // (2000 to 2100); a longer one is cut at MAX_RANGE_DAYS (the caller's answer states the
    // range it covers: see `covered`).
    let to = covered(from, to);
    let mut h = db.acquire().await?;
    let mut conn = h.conn();
    if let Some(m) = model_id {
        crate::commands::models::load(&mut conn, m).await?;
    }
    if to <= from {
        return Ok(Vec::new());
    }
    let buffer = buffer(db.settings());
    let range = Interval::new(from, to);
    let times = load_times(&mut conn, model_id, range, buffer).await?;
    Ok(times.into_iter().map(|t| ModelWindows { model_id: t.model_id, windows: t.free(range, buffer, None) }).collect())
}

/// How far around a refused time the nearest free windows are looked for.
const NEAREST_WITHIN_DAYS: i64 = 7;

/// The booking guard: whether `model_id` is free for `at`, leaving out booking `booking_id`.
/// None when she is (or has no rules: unrestricted); otherwise the `model_unavailable` error,
/// with the reason and the nearest free windows in its details. Runs inside the booking's
/// transaction, after the model's row lock.
pub async fn unavailable(
    tx: &mut Tx,
    model_id: Uuid,
    booking_id: Uuid,
    at: Interval,
) -> DomainResult<Option<DomainError>> {
    if load_rules(&mut tx.conn(), model_id).await?.is_none() {
        return Ok(None);
    }
    // Serialises with other writers of her time (bookings, rule changes).
    tx.lock_row(LockTable::Models, model_id).await?;
    let settings = tx.settings().clone();
    let buffer = buffer(&settings);
    let around = Interval::new(
        at.start_at - Duration::days(NEAREST_WITHIN_DAYS),
        at.end_at + Duration::days(NEAREST_WITHIN_DAYS),
    );
    let mut conn = tx.conn();
    let Some(time) = load_times(&mut conn, Some(model_id), around, buffer).await?.pop() else { return Ok(None) };
    let free = time.free(around, buffer, Some(booking_id));
    if free.iter().any(|w| w.contains(&at)) {
        return Ok(None);
    }
    let agency: Tz = settings.timezone.parse().unwrap_or(chrono_tz::Europe::London);
    let reason = time.why_not(at, buffer, Some(booking_id), &agency);
    let nearest = free::nearest(&free, at, 3);
    Ok(Some(DomainError::ModelUnavailable {
        message: format!("the model is not free for that time: {reason}"),
        details: json!({
            "model_id": model_id,
            "reason": reason,
            "requested": at,
            "travel_buffer_minutes": buffer.num_minutes(),
            "nearest_free_windows": nearest,
        }),
    }))
}
