//! Who gets new work: round robin over the operators on duty, least-loaded first.

use sqlx::FromRow;
use uuid::Uuid;

use crate::error::DomainResult;
use crate::q_opt;
use crate::store::Tx;

#[derive(FromRow)]
struct Pick {
    id: Uuid,
}

/// The active, on-duty OPERATOR with the fewest open tasks and exceptions (below the cap);
/// ties go to the one whose last assignment is oldest, so equal loads take turns. `cap` is the
/// number of open items (`Settings::max_open_items_per_operator`) at which an operator is
/// passed over.
///
/// Runs inside the transaction that assigns the work, after taking the round-robin lock, so
/// concurrent picks queue and each sees the work the previous one handed out: the cap holds.
pub async fn round_robin(tx: &mut Tx, cap: i64) -> DomainResult<Option<Uuid>> {
    tx.lock_key("assignment:round_robin").await?;
    let pick = q_opt!(
        &mut tx.conn(),
        Pick,
        "SELECT id FROM (
             SELECT u.id,
                 (SELECT COUNT(*) FROM tasks t WHERE t.assignee_id = u.id AND t.status IN ('open', 'in_progress'))
               + (SELECT COUNT(*) FROM exceptions e WHERE e.assignee_id = u.id AND e.status IN ('open', 'acknowledged')) AS open_items,
                 (SELECT MAX(t.created_at) FROM tasks t WHERE t.assignee_id = u.id) AS last_assigned
             FROM users u WHERE u.role = 'OPERATOR' AND u.active = $1 AND u.on_duty = $1
         ) AS candidates
         WHERE open_items < $2
         ORDER BY open_items, last_assigned IS NOT NULL, last_assigned, id
         LIMIT 1",
        true,
        cap
    )?;
    Ok(pick.map(|p| p.id))
}
