//! Who gets new work: round robin over the operators on duty, least-loaded first.

use sqlx::FromRow;
use uuid::Uuid;

use crate::error::DomainResult;
use crate::q_opt;
use crate::store::Conn;

/// Open items an operator may hold before round robin passes them over.
pub fn max_open_items() -> i64 {
    std::env::var("VIREL_MAX_OPEN_ITEMS_PER_OPERATOR").ok().and_then(|v| v.parse().ok()).unwrap_or(25)
}

#[derive(FromRow)]
struct Pick {
    id: Uuid,
}

/// The active, on-duty OPERATOR with the fewest open tasks and exceptions (below the cap);
/// ties go to the one whose last assignment is oldest, so equal loads take turns.
pub async fn round_robin(conn: &mut Conn<'_>) -> DomainResult<Option<Uuid>> {
    let pick = q_opt!(
        conn,
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
        max_open_items()
    )?;
    Ok(pick.map(|p| p.id))
}
