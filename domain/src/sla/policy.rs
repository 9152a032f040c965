//! SLA policies: the rows and their defaults, the deadline and state they give an item, edits.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use sqlx::types::Json;
use uuid::Uuid;

use super::*;
use crate::commands::{authorize, snapshot, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::policy::Permission;
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

/// The longest an escalation level may wait after the deadline: 30 days.
pub const MAX_ESCALATION_SECS: i64 = 30 * 24 * 3600;

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
pub fn deadline(p: &Policy, at: DateTime<Utc>) -> DomainResult<DateTime<Utc>> {
    if p.business_hours {
        p.calendar.0.add_working_minutes(at, p.minutes)
    } else {
        super::calendar::plus_minutes(at, p.minutes, "minutes")
    }
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
pub async fn update_policy(db: &Db, ctx: &Ctx, id: Uuid, mut p: PolicyPatch) -> DomainResult<Policy> {
    authorize(db, ctx, Permission::AutomationWrite, "sla_policy").await?;
    // The levels escalate in order: the delays are taken in any order and kept ascending.
    if let Some(e) = p.escalation_secs.as_mut() {
        e.sort_unstable();
    }
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
        && (e.len() != 3
            || e.iter().any(|s| !(0..=MAX_ESCALATION_SECS).contains(s))
            || e.windows(2).any(|w| w[1] < w[0]))
    {
        return Err(DomainError::invalid(
            "escalation_secs: three delays after the deadline, in seconds, each 0 to 2592000 (30 days)",
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
    let changed = crate::commands::changed_fields(&snapshot(&before), &snapshot(&after));
    crate::commands::emit(
        &mut conn,
        ctx,
        "sla_policy.updated",
        "sla_policy",
        id,
        serde_json::json!({"sla_policy_id": id, "kind": after.kind, "item_type": after.item_type, "changed": changed}),
    )
    .await?;
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

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
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
