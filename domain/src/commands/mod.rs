//! One command per use case. Each opens a transaction, checks permission and state machine,
//! writes the row, then its domain events and audit entry, and commits: all or nothing.

pub mod assignment;
pub mod audit;
pub mod auth;
pub mod bookings;
pub mod clients;
pub mod contacts;
pub mod events;
pub mod exceptions;
pub mod inquiries;
pub mod maintenance;
pub mod models;
pub mod notes;
pub mod notifications;
pub mod payments;
pub mod tasks;
pub mod templates;
pub mod users;
pub mod webhooks_in;

use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::error::{DomainError, DomainResult};
use crate::policy::Permission;
use crate::store::{Conn, Db};
use crate::{Ctx, new_id, now, q_exec};

/// Checks a permission; a refusal is itself audited (`forbidden`) before it is returned.
pub async fn authorize(db: &Db, ctx: &Ctx, p: Permission, what: &str) -> DomainResult<()> {
    if ctx.can(p) {
        return Ok(());
    }
    let mut tx = db.begin().await?;
    write_audit(
        &mut tx.conn(),
        ctx,
        "forbidden",
        what,
        None,
        None,
        Some(serde_json::json!({"permission": p.as_str()})),
    )
    .await?;
    tx.commit().await?;
    Err(DomainError::forbidden(p))
}

/// Appends one audit entry. Callers pass snapshots that never hold secrets.
pub async fn write_audit(
    conn: &mut Conn<'_>,
    ctx: &Ctx,
    action: &str,
    entity_type: &str,
    entity_id: Option<String>,
    before: Option<Value>,
    after: Option<Value>,
) -> DomainResult<()> {
    q_exec!(
        conn,
        "INSERT INTO audit_log (id, actor, action, entity_type, entity_id, before, after, ip, request_id, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        new_id(),
        ctx.actor.label(),
        action,
        entity_type,
        entity_id,
        before.map(sqlx::types::Json),
        after.map(sqlx::types::Json),
        ctx.ip.clone(),
        ctx.request_id.clone(),
        now()
    )?;
    Ok(())
}

/// Appends one domain event (the outbox row) and returns its id.
pub async fn emit(
    conn: &mut Conn<'_>,
    ctx: &Ctx,
    kind: &str,
    subject_type: &str,
    subject_id: Uuid,
    payload: Value,
) -> DomainResult<Uuid> {
    let id = new_id();
    // On PostgreSQL the insert notifies `virel_outbox` (a statement trigger, delivered once
    // on commit): relays in other processes wake at once instead of at their next poll.
    q_exec!(
        conn,
        "INSERT INTO domain_events (id, type, subject_type, subject_id, payload, actor, causation_id, depth, occurred_at)

         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        id,
        kind,
        subject_type,
        subject_id,
        sqlx::types::Json(payload),
        ctx.actor.label(),
        ctx.causation_id,
        ctx.depth,
        now()
    )?;
    Ok(id)
}

pub fn snapshot<T: serde::Serialize>(row: &T) -> Value {
    serde_json::to_value(row).unwrap_or(Value::Null)
}

/// The top-level fields whose values differ between two snapshots (bookkeeping left out), for
/// `*.updated` events: consumers learn what changed without the event carrying the values.
pub fn changed_fields(before: &Value, after: &Value) -> Vec<String> {
    let (Some(b), Some(a)) = (before.as_object(), after.as_object()) else { return vec![] };
    a.iter()
        .filter(|(k, v)| !matches!(k.as_str(), "updated_at" | "version") && b.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Money as the API carries it: integer minor units and an ISO 4217 code.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq)]
pub struct Money {
    pub amount: i64,
    pub currency: String,
}

impl Money {
    /// Within the documented bounds (`validate`): 0 to `MAX_AMOUNT` minor units, an ISO 4217
    /// code the agency accepts (`accepted`, from the settings). `what` names the field.
    pub fn validate(&self, what: &str, accepted: &[String]) -> DomainResult<()> {
        crate::validate::amount(&format!("{what}.amount"), self.amount)?;
        crate::validate::currency(&format!("{what}.currency"), &self.currency, accepted)
    }
}

/// List paging: `limit` rows after `cursor` (an id, newest first).
#[derive(Clone, Copy, Debug)]
pub struct PageReq {
    pub limit: i64,
    pub cursor: Option<Uuid>,
}

impl PageReq {
    pub const DEFAULT: i64 = 50;
    pub const MAX: i64 = 200;

    pub fn new(limit: Option<i64>, cursor: Option<Uuid>) -> DomainResult<PageReq> {
        let limit = limit.unwrap_or(Self::DEFAULT);
        if !(1..=Self::MAX).contains(&limit) {
            return Err(DomainError::invalid(format!("limit must be between 1 and {}", Self::MAX)));
        }
        Ok(PageReq { limit, cursor })
    }

    /// The row count to fetch: one more than the page, to know whether another page exists.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }
}

/// A required text: present, not blank, without NUL and within its limit (`validate`).
pub fn require_text(value: Option<&str>, what: &str) -> DomainResult<String> {
    match value.map(str::trim) {
        Some(s) if !s.is_empty() => {
            crate::validate::text(what, s)?;
            Ok(s.to_string())
        }
        _ => Err(crate::validate::refuse(what, format!("{what} is required"))),
    }
}

pub fn one_of(value: &str, allowed: &[&str], what: &str) -> DomainResult<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(crate::validate::refuse(what, format!("{what} must be one of: {}", allowed.join(", "))))
    }
}

/// Refuses a write made against a stale copy, when the caller said which version it saw.
pub fn check_version(entity: &'static str, expected: Option<i64>, current: i64) -> DomainResult<()> {
    match expected {
        Some(v) if v != current => Err(DomainError::VersionConflict { entity, current_version: Some(current) }),
        _ => Ok(()),
    }
}
