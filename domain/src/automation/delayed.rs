//! Delayed actions: claiming the ones that came due, running them, requeueing stale claims.

use chrono::Duration;
use sqlx::FromRow;
use uuid::Uuid;

pub use rules::{Action, Condition, MAX_DEPTH};

use crate::error::{DomainError, DomainResult};
use crate::rows::DomainEvent;
use crate::store::Db;
use crate::{now, q_all, q_exec, q_opt};

use super::*;

#[derive(FromRow)]
struct DueRow {
    id: Uuid,
}

/// Claims delayed actions that have come due (scheduled → queued) and returns their ids for
/// the queue. The claim makes a second scheduler, or a repeated sweep, harmless.
pub async fn claim_due_actions(db: &Db, limit: i64) -> DomainResult<Vec<Uuid>> {
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let due = q_all!(
        &mut conn,
        DueRow,
        "SELECT id FROM automation_executions WHERE status = 'scheduled' AND run_at <= $1 ORDER BY run_at LIMIT $2",
        now(),
        limit
    )?;
    let mut claimed = Vec::new();
    for d in due {
        if q_exec!(
            &mut conn,
            "UPDATE automation_executions SET status = 'queued', updated_at = $1 WHERE id = $2 AND status = 'scheduled'",
            now(),
            d.id
        )? == 1
        {
            claimed.push(d.id);
        }
    }
    tx.commit().await?;
    Ok(claimed)
}

/// Runs one delayed action that has come due, re-checking the rule's conditions against the
/// current state of the subject first.
pub async fn run_delayed(db: &Db, execution_id: Uuid) -> DomainResult<actions::Ran> {
    let (exec, rule, event) = {
        let mut h = db.acquire().await?;
        let mut conn = h.conn();
        let exec = q_opt!(&mut conn, Execution, "SELECT * FROM automation_executions WHERE id = $1", execution_id)?
            .ok_or(DomainError::NotFound { entity: "automation execution" })?;
        let rule = load_rule(&mut conn, exec.rule_id).await?;
        let event = q_opt!(&mut conn, DomainEvent, "SELECT * FROM domain_events WHERE id = $1", exec.event_id)?
            .ok_or(DomainError::NotFound { entity: "event" })?;
        (exec, rule, event)
    };
    if exec.status != "queued" && exec.status != "scheduled" {
        return Ok(actions::Ran::AlreadyDone);
    }
    actions::run(db, &rule, &event, exec.action_index as usize, true).await
}

/// Puts back delayed actions that were claimed but never run (a worker died holding them).
pub async fn requeue_stale_claims(db: &Db, older_than: Duration) -> DomainResult<u64> {
    let mut tx = db.begin().await?;
    let n = q_exec!(
        &mut tx.conn(),
        "UPDATE automation_executions SET status = 'scheduled' WHERE status = 'queued' AND updated_at < $1",
        now() - older_than
    )?;
    tx.commit().await?;
    Ok(n)
}
