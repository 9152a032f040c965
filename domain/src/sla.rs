//! SLA: how long an item may stay open (a policy per task or exception type, in wall-clock
//! or business hours of the agency's calendar), its state (ok, at_risk, breached), the clock
//! pausing while the subject waits on the client, and the escalation ladder the sweep climbs.

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::FromRow;
use sqlx::types::Json;
use uuid::Uuid;

use crate::commands::exceptions::{self, NewException};
use crate::commands::tasks::{self, NewTask};
use crate::commands::{authorize, emit, snapshot, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::policy::Permission;
use crate::rows::{Exception, Task};
use crate::store::{Conn, Db};
use crate::{Ctx, new_id, now, q_all, q_exec, q_opt};

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct Policy {
    pub id: Uuid,
    pub kind: String,
    pub item_type: String,
    pub name: String,
    pub minutes: i64,
    pub business_hours: bool,
    pub calendar: Json<Calendar>,
    pub pause_on_awaiting_client: bool,
    pub at_risk_percent: i64,
    /// Seconds after the deadline at which escalation levels 1, 2 and 3 fire.
    pub escalation_secs: Json<Vec<i64>>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// The agency's working week in its time zone: `{"timezone": "Europe/London",
/// "weekly": {"mon": [["09:00", "18:00"]], ...}}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Calendar {
    pub timezone: String,
    pub weekly: std::collections::BTreeMap<String, Vec<(String, String)>>,
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar::office_hours("Europe/London")
    }
}

impl Calendar {
    /// Monday to Friday, 09:00 to 18:00 in `timezone`: the default business hours.
    pub fn office_hours(timezone: &str) -> Calendar {
        let day = vec![("09:00".to_string(), "18:00".to_string())];
        Calendar {
            timezone: timezone.to_string(),
            weekly: ["mon", "tue", "wed", "thu", "fri"].into_iter().map(|d| (d.to_string(), day.clone())).collect(),
        }
    }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day_key(w: Weekday) -> &'static str {
    DAYS[w.num_days_from_monday() as usize]
}

impl Calendar {
    pub fn validate(&self) -> DomainResult<chrono_tz::Tz> {
        let tz: chrono_tz::Tz = self
            .timezone
            .parse()
            .map_err(|_| DomainError::invalid(format!("calendar.timezone: unknown time zone {:?}", self.timezone)))?;
        for (day, windows) in &self.weekly {
            if !DAYS.contains(&day.as_str()) {
                return Err(DomainError::invalid(format!("calendar.weekly.{day}: not a day (mon..sun)")));
            }
            for (i, (a, b)) in windows.iter().enumerate() {
                let (Ok(a), Ok(b)) = (NaiveTime::parse_from_str(a, "%H:%M"), NaiveTime::parse_from_str(b, "%H:%M"))
                else {
                    return Err(DomainError::invalid(format!("calendar.weekly.{day}[{i}]: times are HH:MM")));
                };
                if b <= a {
                    return Err(DomainError::invalid(format!(
                        "calendar.weekly.{day}[{i}]: the end is before the start"
                    )));
                }
            }
        }
        if self.weekly.values().all(|w| w.is_empty()) {
            return Err(DomainError::invalid("calendar.weekly: at least one working window is needed"));
        }
        Ok(tz)
    }

    /// `start` plus `minutes` of working time: the clock runs only inside the weekly windows
    /// (local time, daylight saving included).
    pub fn add_working_minutes(&self, start: DateTime<Utc>, minutes: i64) -> DateTime<Utc> {
        let Ok(tz) = self.validate() else { return start + Duration::minutes(minutes) };
        let mut left = Duration::minutes(minutes.max(0));
        let mut day = start.with_timezone(&tz).date_naive();
        for _ in 0..800 {
            for (a, b) in self.day_windows(day.weekday()) {
                let (Some(open), Some(close)) = (
                    tz.from_local_datetime(&day.and_time(a)).earliest(),
                    tz.from_local_datetime(&day.and_time(b)).latest(),
                ) else {
                    continue;
                };
                let (open, close) = (open.with_timezone(&Utc), close.with_timezone(&Utc));
                let from = open.max(start);
                if from >= close {
                    continue;
                }
                let available = close - from;
                if available >= left {
                    return from + left;
                }
                left -= available;
            }
            day = day.succ_opt().unwrap_or(day);
        }
        start + Duration::minutes(minutes)
    }
}

impl Calendar {
    /// A day's working windows in order, overlapping ones merged, so each minute counts once
    /// however the windows were written.
    fn day_windows(&self, w: Weekday) -> Vec<(NaiveTime, NaiveTime)> {
        let mut ws: Vec<(NaiveTime, NaiveTime)> = self
            .weekly
            .get(day_key(w))
            .into_iter()
            .flatten()
            .filter_map(|(a, b)| {
                Some((NaiveTime::parse_from_str(a, "%H:%M").ok()?, NaiveTime::parse_from_str(b, "%H:%M").ok()?))
            })
            .filter(|(a, b)| b > a)
            .collect();
        ws.sort();
        let mut merged: Vec<(NaiveTime, NaiveTime)> = Vec::new();
        for (a, b) in ws {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        merged
    }

    /// The calendar date of `t` in the calendar's time zone.
    pub fn local_date(&self, t: DateTime<Utc>) -> chrono::NaiveDate {
        match self.timezone.parse::<chrono_tz::Tz>() {
            Ok(tz) => t.with_timezone(&tz).date_naive(),
            Err(_) => t.date_naive(),
        }
    }
}

/// The defaults of SPEC §7, written once when absent (all editable).
pub async fn seed_defaults(db: &Db) -> DomainResult<usize> {
    let defaults: [(&str, &str, &str, i64); 8] = [
        ("task", "follow_up", "New inquiry: first response", 15),
        ("task", "deposit_reminder", "Deposit follow-up", 120),
        ("task", "confirm_booking", "Confirm a booking", 30),
        ("task", "safety_check", "Safety check (after its due time)", 15),
        ("task", "*", "Any other task", 240),
        ("exception", "payment_failed", "Failed payment", 10),
        ("exception", "safety_check_missed", "Missed safety check", 10),
        ("exception", "*", "Any other exception", 60),
    ];
    let mut tx = db.begin().await?;
    let mut n = 0;
    for (kind, item_type, name, minutes) in defaults {
        n += q_exec!(
            &mut tx.conn(),
            "INSERT INTO sla_policies (id, kind, item_type, name, minutes, business_hours, calendar, pause_on_awaiting_client,
                 at_risk_percent, escalation_secs, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 20, $9, $10) ON CONFLICT (kind, item_type) DO NOTHING",
            new_id(),
            kind,
            item_type,
            name,
            minutes,
            false,
            Json(Calendar::office_hours(&db.settings().timezone)),
            true,
            Json(vec![0i64, 15 * 60, 30 * 60]),
            now()
        )?;
    }
    tx.commit().await?;
    Ok(n as usize)
}

/// The policy for an item: its type's own, else the kind's default (`*`).
pub async fn policy_for(conn: &mut Conn<'_>, kind: &str, item_type: &str) -> DomainResult<Option<Policy>> {
    q_opt!(
        conn,
        Policy,
        "SELECT * FROM sla_policies WHERE kind = $1 AND (item_type = $2 OR item_type = '*')
         ORDER BY CASE WHEN item_type = '*' THEN 1 ELSE 0 END LIMIT 1",
        kind,
        item_type
    )
}

/// The deadline of an item created at `at` under `p`.
pub fn deadline(p: &Policy, at: DateTime<Utc>) -> DateTime<Utc> {
    if p.business_hours { p.calendar.0.add_working_minutes(at, p.minutes) } else { at + Duration::minutes(p.minutes) }
}

/// breached, at_risk (less than the policy's share of its window left) or ok. A paused clock
/// is read at the moment it stopped.
pub fn state(
    at: DateTime<Utc>,
    due: Option<DateTime<Utc>>,
    started: DateTime<Utc>,
    paused: Option<DateTime<Utc>>,
    at_risk_percent: i64,
) -> &'static str {
    let Some(due) = due else { return "ok" };
    let t = paused.unwrap_or(at);
    if t >= due {
        return "breached";
    }
    let window = (due - started).num_milliseconds().max(1);
    let left = (due - t).num_milliseconds();
    if left * 100 < window * at_risk_percent { "at_risk" } else { "ok" }
}

pub async fn list_policies(db: &Db, ctx: &Ctx) -> DomainResult<Vec<Policy>> {
    authorize(db, ctx, Permission::TasksRead, "sla_policy").await?;
    q_all!(&mut db.acquire().await?.conn(), Policy, "SELECT * FROM sla_policies ORDER BY kind, item_type")
}

#[derive(Clone, Debug, Deserialize)]
pub struct PolicyPatch {
    pub name: Option<String>,
    pub minutes: Option<i64>,
    pub business_hours: Option<bool>,
    pub calendar: Option<Calendar>,
    pub pause_on_awaiting_client: Option<bool>,
    pub at_risk_percent: Option<i64>,
    pub escalation_secs: Option<Vec<i64>>,
    pub version: Option<i64>,
}

/// Edits a policy (OWNER and OPS_MANAGER: `automation:write`, the operations settings right).
pub async fn update_policy(db: &Db, ctx: &Ctx, id: Uuid, p: PolicyPatch) -> DomainResult<Policy> {
    authorize(db, ctx, Permission::AutomationWrite, "sla_policy").await?;
    if let Some(m) = p.minutes
        && !(1..=60 * 24 * 30).contains(&m)
    {
        return Err(DomainError::invalid("minutes must be between 1 and 43200"));
    }
    if let Some(r) = p.at_risk_percent
        && !(1..=99).contains(&r)
    {
        return Err(DomainError::invalid("at_risk_percent must be between 1 and 99"));
    }
    if let Some(e) = &p.escalation_secs
        && (e.len() != 3 || e.iter().any(|s| *s < 0) || e.windows(2).any(|w| w[1] < w[0]))
    {
        return Err(DomainError::invalid(
            "escalation_secs: three non-decreasing delays after the deadline, in seconds",
        ));
    }
    if let Some(c) = &p.calendar {
        c.validate()?;
    }
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = q_opt!(&mut conn, Policy, "SELECT * FROM sla_policies WHERE id = $1", id)?
        .ok_or(DomainError::NotFound { entity: "SLA policy" })?;
    crate::commands::check_version("SLA policy", p.version, before.version)?;
    let n = q_exec!(
        &mut conn,
        "UPDATE sla_policies SET name = $1, minutes = $2, business_hours = $3, calendar = $4, pause_on_awaiting_client = $5,
             at_risk_percent = $6, escalation_secs = $7, updated_at = $8, version = version + 1 WHERE id = $9 AND version = $10",
        p.name.clone().unwrap_or(before.name.clone()),
        p.minutes.unwrap_or(before.minutes),
        p.business_hours.unwrap_or(before.business_hours),
        Json(p.calendar.clone().unwrap_or(before.calendar.0.clone())),
        p.pause_on_awaiting_client.unwrap_or(before.pause_on_awaiting_client),
        p.at_risk_percent.unwrap_or(before.at_risk_percent),
        Json(p.escalation_secs.clone().unwrap_or(before.escalation_secs.0.clone())),
        now(),
        id,
        before.version
    )?;
    if n == 0 {
        return Err(DomainError::VersionConflict { entity: "SLA policy", current_version: None });
    }
    let after = q_opt!(&mut conn, Policy, "SELECT * FROM sla_policies WHERE id = $1", id)?
        .ok_or(DomainError::NotFound { entity: "SLA policy" })?;
    write_audit(
        &mut conn,
        ctx,
        "sla_policy.updated",
        "sla_policy",
        Some(id.to_string()),
        Some(snapshot(&before)),
        Some(snapshot(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Stops (`paused = true`) or restarts the clocks of the open items about an inquiry while it
/// waits on the client; on restart the deadlines move by the time spent waiting.
pub async fn pause_for_subject(
    conn: &mut Conn<'_>,
    ctx: &Ctx,
    subject_type: &str,
    subject_id: Uuid,
    paused: bool,
) -> DomainResult<()> {
    #[derive(FromRow)]
    struct Clock {
        id: Uuid,
        #[sqlx(rename = "type")]
        kind: String,
        assignee_id: Option<Uuid>,
        due_at: Option<DateTime<Utc>>,
        paused_at: Option<DateTime<Utc>>,
        sla_started_at: Option<DateTime<Utc>>,
        created_at: DateTime<Utc>,
    }
    let at = now();
    // The same clock on both kinds of item; only the table differs.
    let tables: [(&str, &'static str, &'static str, &'static str); 2] = [
        (
            "task",
            "SELECT id, type, assignee_id, due_at, paused_at, sla_started_at, created_at FROM tasks
             WHERE subject_type = $1 AND subject_id = $2 AND status IN ('open', 'in_progress')",
            "UPDATE tasks SET paused_at = $1, updated_at = $1, version = version + 1 WHERE id = $2 AND paused_at IS NULL",
            "UPDATE tasks SET paused_at = NULL, due_at = $1, sla_started_at = $2, updated_at = $3, version = version + 1
             WHERE id = $4 AND paused_at IS NOT NULL",
        ),
        (
            "exception",
            "SELECT id, type, assignee_id, due_at, paused_at, sla_started_at, created_at FROM exceptions
             WHERE subject_type = $1 AND subject_id = $2 AND status IN ('open', 'acknowledged')",
            "UPDATE exceptions SET paused_at = $1, updated_at = $1, version = version + 1 WHERE id = $2 AND paused_at IS NULL",
            "UPDATE exceptions SET paused_at = NULL, due_at = $1, sla_started_at = $2, updated_at = $3, version = version + 1
             WHERE id = $4 AND paused_at IS NOT NULL",
        ),
    ];
    for (kind, select, pause, resume) in tables {
        for item in q_all!(conn, Clock, select, subject_type, subject_id)? {
            let Some(p) = policy_for(conn, kind, &item.kind).await? else { continue };
            if !p.pause_on_awaiting_client {
                continue;
            }
            let changed = if paused {
                q_exec!(conn, pause, at, item.id)?
            } else if let (Some(since), Some(due)) = (item.paused_at, item.due_at) {
                // The whole window moves, so the at-risk share is measured on the same window.
                let shift = at - since;
                q_exec!(conn, resume, due + shift, item.sla_started_at.unwrap_or(item.created_at) + shift, at, item.id)?
            } else {
                0
            };
            if changed > 0 {
                let event = format!("{kind}.{}", if paused { "sla_paused" } else { "sla_resumed" });
                let payload =
                    json!({format!("{kind}_id"): item.id, "type": item.kind, "assignee_id": item.assignee_id});
                emit(conn, ctx, &event, kind, item.id, payload).await?;
            }
        }
    }
    Ok(())
}

#[derive(Debug, Default, Serialize)]
pub struct SweepOutcome {
    pub warned: usize,
    pub escalated: [usize; 3],
}

/// One SLA sweep: at-risk warnings, then one escalation level per overdue task. Every step is
/// a guarded update, so two sweeps at once (two schedulers, a redelivered job) do each step
/// exactly once.
pub async fn sweep(db: &Db) -> DomainResult<SweepOutcome> {
    let mut out = SweepOutcome::default();
    let at = now();
    let ctx = Ctx::system();
    // At-risk warnings (tasks and exceptions), pushed like any change.
    let tasks_open = {
        let mut h = db.acquire().await?;
        q_all!(
            &mut h.conn(),
            Task,
            "SELECT * FROM tasks WHERE status IN ('open', 'in_progress') AND due_at IS NOT NULL AND paused_at IS NULL
                 AND (sla_warned_at IS NULL OR escalation_level < 3)"
        )?
    };
    for t in &tasks_open {
        let p = policy_for(&mut db.acquire().await?.conn(), "task", &t.kind).await?;
        let pct = p.as_ref().map(|p| p.at_risk_percent).unwrap_or(20);
        let started = t.sla_started_at.unwrap_or(t.created_at);
        if t.sla_warned_at.is_none() && state(at, t.due_at, started, None, pct) != "ok" {
            let mut tx = db.begin().await?;
            let n = q_exec!(
                &mut tx.conn(),
                "UPDATE tasks SET sla_warned_at = $1, updated_at = $1 WHERE id = $2 AND sla_warned_at IS NULL",
                at,
                t.id
            )?;
            if n == 1 {
                emit(
                    &mut tx.conn(),
                    &ctx,
                    "task.sla_at_risk",
                    "task",
                    t.id,
                    json!({"task_id": t.id, "type": t.kind, "due_at": t.due_at, "assignee_id": t.assignee_id}),
                )
                .await?;
                out.warned += 1;
            }
            tx.commit().await?;
        }
        // Escalation: open tasks nobody has taken (acknowledged or in progress).
        let (Some(due), Some(p)) = (t.due_at, p) else { continue };
        if t.status != "open" || t.acknowledged_at.is_some() || t.escalation_level >= 3 {
            continue;
        }
        let level = t.escalation_level + 1;
        let after = p.escalation_secs.0.get((level - 1) as usize).copied().unwrap_or(0);
        if at < due + Duration::seconds(after) {
            continue;
        }
        if escalate(db, t.id, level).await? {
            out.escalated[(level - 1) as usize] += 1;
        }
    }
    let exceptions_open = {
        let mut h = db.acquire().await?;
        q_all!(
            &mut h.conn(),
            Exception,
            "SELECT * FROM exceptions WHERE status = 'open' AND due_at IS NOT NULL AND paused_at IS NULL AND sla_warned_at IS NULL"
        )?
    };
    for e in exceptions_open {
        let pct = policy_for(&mut db.acquire().await?.conn(), "exception", &e.kind)
            .await?
            .map(|p| p.at_risk_percent)
            .unwrap_or(20);
        if state(at, e.due_at, e.sla_started_at.unwrap_or(e.created_at), None, pct) == "ok" {
            continue;
        }
        let mut tx = db.begin().await?;
        if q_exec!(
            &mut tx.conn(),
            "UPDATE exceptions SET sla_warned_at = $1, updated_at = $1 WHERE id = $2 AND sla_warned_at IS NULL",
            at,
            e.id
        )? == 1
        {
            emit(
                &mut tx.conn(),
                &ctx,
                "exception.sla_at_risk",
                "exception",
                e.id,
                json!({"exception_id": e.id, "type": e.kind, "due_at": e.due_at}),
            )
            .await?;
            out.warned += 1;
        }
        tx.commit().await?;
    }
    Ok(out)
}

#[derive(FromRow)]
struct Pick {
    id: Uuid,
}

/// Climbs one rung of the ladder for a task, once: level 1 tells the assignee (the Action
/// Center pushes the breach; a missed safety check also raises `safety_check_missed`), level 2
/// hands the task to the least-loaded OPS_MANAGER and raises `sla_breached`, level 3 raises a
/// critical `sla_breached` for the OWNER. False when another sweep got there first.
pub async fn escalate(db: &Db, task_id: Uuid, level: i64) -> DomainResult<bool> {
    let ctx = Ctx::system();
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = tasks::load(&mut conn, task_id).await?;
    let n = q_exec!(
        &mut conn,
        "UPDATE tasks SET escalation_level = $1, updated_at = $2, version = version + 1
         WHERE id = $3 AND escalation_level = $4 AND status = 'open' AND acknowledged_at IS NULL",
        level,
        now(),
        task_id,
        level - 1
    )?;
    if n == 0 {
        return Ok(false);
    }
    let mut payload = json!({"task_id": task_id, "type": before.kind, "level": level, "due_at": before.due_at,
        "assignee_id": before.assignee_id, "subject_type": before.subject_type, "subject_id": before.subject_id});
    match level {
        1 if before.kind == "safety_check" => {
            let e = exceptions::insert(
                &mut conn,
                &ctx,
                NewException {
                    kind: "safety_check_missed".into(),
                    title: Some(format!("Safety check missed: {}", before.title)),
                    severity: "critical".into(),
                    subject_type: before.subject_type.clone(),
                    subject_id: before.subject_id,
                    assignee_id: before.assignee_id,
                },
            )
            .await?;
            payload["exception_id"] = json!(e.id);
        }
        2 => {
            let manager = q_opt!(
                &mut conn,
                Pick,
                "SELECT u.id FROM users u WHERE u.role = 'OPS_MANAGER' AND u.active = $1
                 ORDER BY (SELECT COUNT(*) FROM tasks t WHERE t.assignee_id = u.id AND t.status IN ('open', 'in_progress')), u.id LIMIT 1",
                true
            )?
            .map(|p| p.id);
            if let Some(m) = manager {
                q_exec!(
                    &mut conn,
                    "UPDATE tasks SET assignee_id = $1, version = version + 1 WHERE id = $2",
                    m,
                    task_id
                )?;
                emit(&mut conn, &ctx, "task.assigned", "task", task_id, json!({"task_id": task_id, "assignee_id": m, "previous_assignee_id": before.assignee_id, "type": before.kind, "reason": "sla escalation"})).await?;
            }
            let e = exceptions::insert(
                &mut conn,
                &ctx,
                NewException {
                    kind: "sla_breached".into(),
                    title: Some(format!("SLA breached: {}", before.title)),
                    severity: "high".into(),
                    subject_type: Some("task".into()),
                    subject_id: Some(task_id),
                    assignee_id: manager,
                },
            )
            .await?;
            payload["reassigned_to"] = json!(manager);
            payload["exception_id"] = json!(e.id);
        }
        3 => {
            let owner = q_opt!(
                &mut conn,
                Pick,
                "SELECT id FROM users WHERE role = 'OWNER' AND active = $1 ORDER BY id LIMIT 1",
                true
            )?
            .map(|p| p.id);
            let e = exceptions::insert(
                &mut conn,
                &ctx,
                NewException {
                    kind: "sla_breached".into(),
                    title: Some(format!("SLA breached, level 3: {}", before.title)),
                    severity: "critical".into(),
                    subject_type: Some("task".into()),
                    subject_id: Some(task_id),
                    assignee_id: owner,
                },
            )
            .await?;
            payload["notified_owner"] = json!(owner);
            payload["exception_id"] = json!(e.id);
        }
        _ => {}
    }
    emit(&mut conn, &ctx, "task.sla_breached", "task", task_id, payload.clone()).await?;
    let after = tasks::load(&mut conn, task_id).await?;
    write_audit(
        &mut conn,
        &ctx,
        "task.escalated",
        "task",
        Some(task_id.to_string()),
        Some(snapshot(&before)),
        Some(json!({"level": level, "task": snapshot(&after), "detail": payload})),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

#[derive(Debug, Default, Serialize)]
pub struct ClockOutcome {
    pub starting_soon: usize,
    pub safety_checks: usize,
}

#[derive(FromRow)]
struct Due {
    id: Uuid,
}

/// The booking clock: `booking.starting_soon` 30 minutes before a confirmed booking, and a
/// safety_check task at its start and at its end. Each fires once per booking.
pub async fn booking_clock(db: &Db) -> DomainResult<ClockOutcome> {
    let ctx = Ctx::system();
    let mut out = ClockOutcome::default();
    let at = now();
    let soon = {
        let mut h = db.acquire().await?;
        q_all!(
            &mut h.conn(),
            Due,
            "SELECT id FROM bookings WHERE status = 'confirmed' AND starting_soon_at IS NULL AND start_at <= $1 AND start_at > $2",
            at + Duration::minutes(30),
            at - Duration::hours(1)
        )?
    };
    for b in soon {
        let mut tx = db.begin().await?;
        let mut conn = tx.conn();
        if q_exec!(
            &mut conn,
            "UPDATE bookings SET starting_soon_at = $1 WHERE id = $2 AND starting_soon_at IS NULL",
            at,
            b.id
        )? == 1
        {
            let bk = crate::commands::bookings::load(&mut conn, b.id).await?;
            // "On the day" in the agency's time zone.
            let cal = Calendar::office_hours(&db.settings().timezone);
            let confirmed_today =
                bk.client_confirmed_at.is_some_and(|c| cal.local_date(c) == cal.local_date(bk.start_at));

            emit(
                &mut conn,
                &ctx,
                "booking.starting_soon",
                "booking",
                b.id,
                json!({
                    "booking_id": b.id, "status": bk.status, "client_id": bk.client_id, "model_id": bk.model_id,
                    "start_at": bk.start_at, "end_at": bk.end_at, "assignee_id": bk.assignee_id,
                    "client": {"confirmed_today": confirmed_today},
                    "booking": {"status": bk.status, "start_at": bk.start_at},
                }),
            )
            .await?;
            out.starting_soon += 1;
        }
        tx.commit().await?;
    }
    for edge in ["start", "end"] {
        let sql_due: &'static str = match edge {
            "start" => {
                "SELECT id FROM bookings WHERE status IN ('confirmed', 'in_progress') AND safety_start_at IS NULL AND start_at <= $1 AND start_at > $2"
            }
            _ => {
                "SELECT id FROM bookings WHERE status IN ('confirmed', 'in_progress', 'completed') AND safety_end_at IS NULL AND end_at <= $1 AND end_at > $2"
            }
        };
        let due = {
            let mut h = db.acquire().await?;
            q_all!(&mut h.conn(), Due, sql_due, at, at - Duration::hours(6))?
        };
        for b in due {
            let mut tx = db.begin().await?;
            let mut conn = tx.conn();
            let claimed = match edge {
                "start" => q_exec!(
                    &mut conn,
                    "UPDATE bookings SET safety_start_at = $1 WHERE id = $2 AND safety_start_at IS NULL",
                    at,
                    b.id
                )?,
                _ => q_exec!(
                    &mut conn,
                    "UPDATE bookings SET safety_end_at = $1 WHERE id = $2 AND safety_end_at IS NULL",
                    at,
                    b.id
                )?,
            };
            if claimed == 1 {
                let bk = crate::commands::bookings::load(&mut conn, b.id).await?;
                let when = if edge == "start" { bk.start_at } else { bk.end_at };
                let p = policy_for(&mut conn, "task", "safety_check").await?;
                let grace = p.map(|p| p.minutes).unwrap_or(15);
                tasks::insert(
                    &mut conn,
                    &ctx,
                    NewTask {
                        kind: "safety_check".into(),
                        title: Some(format!("Safety check at the {edge} of the booking")),
                        priority: Some("critical".into()),
                        subject_type: Some("booking".into()),
                        subject_id: Some(b.id),
                        assignee_id: bk.assignee_id,
                        due_at: Some(when + Duration::minutes(grace)),
                    },
                )
                .await?;
                out.safety_checks += 1;
            }
            tx.commit().await?;
        }
    }
    Ok(out)
}

/// Marks that the client confirmed the booking today (the no-show-risk rule reads it).
pub async fn client_confirmed(db: &Db, ctx: &Ctx, booking_id: Uuid) -> DomainResult<crate::rows::Booking> {
    authorize(db, ctx, Permission::BookingsWrite, "booking").await?;
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = crate::commands::bookings::load(&mut conn, booking_id).await?;
    q_exec!(
        &mut conn,
        "UPDATE bookings SET client_confirmed_at = $1, updated_at = $1, version = version + 1 WHERE id = $2",
        now(),
        booking_id
    )?;
    let after = crate::commands::bookings::load(&mut conn, booking_id).await?;
    emit(
        &mut conn,
        ctx,
        "booking.client_confirmed",
        "booking",
        booking_id,
        json!({"booking_id": booking_id, "client_id": after.client_id}),
    )
    .await?;
    write_audit(
        &mut conn,
        ctx,
        "booking.client_confirmed",
        "booking",
        Some(booking_id.to_string()),
        Some(snapshot(&before)),
        Some(snapshot(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn working_minutes_skip_nights_and_weekends() {
        let cal = Calendar { timezone: "Europe/London".into(), ..Calendar::default() };
        // Friday 17:30 London (GMT in winter) + 60 working minutes = Monday 09:30.
        assert_eq!(cal.add_working_minutes(at("2026-11-27T17:30:00Z"), 60), at("2026-11-30T09:30:00Z"));
        // Saturday: starts Monday 09:00.
        assert_eq!(cal.add_working_minutes(at("2026-11-28T12:00:00Z"), 15), at("2026-11-30T09:15:00Z"));
        // Within the day.
        assert_eq!(cal.add_working_minutes(at("2026-11-26T10:00:00Z"), 30), at("2026-11-26T10:30:00Z"));
        // Summer time: 09:00 London is 08:00 UTC.
        assert_eq!(cal.add_working_minutes(at("2026-07-01T06:00:00Z"), 10), at("2026-07-01T08:10:00Z"));
    }

    #[test]
    fn states() {
        let s = at("2026-01-01T10:00:00Z");
        let due = Some(s + Duration::minutes(100));
        assert_eq!(state(s + Duration::minutes(10), due, s, None, 20), "ok");
        assert_eq!(state(s + Duration::minutes(81), due, s, None, 20), "at_risk");
        assert_eq!(state(s + Duration::minutes(100), due, s, None, 20), "breached");
        // Paused before the deadline: the clock reads where it stopped.
        assert_eq!(state(s + Duration::minutes(500), due, s, Some(s + Duration::minutes(10)), 20), "ok");
        assert_eq!(state(s, None, s, None, 20), "ok");
    }
}
