//! Reading the audit log (it is written by every command, and never updated or deleted).

use super::{PageReq, authorize};
use crate::error::DomainResult;
use crate::policy::Permission;
use crate::rows::{AuditEntry, Page};
use crate::store::Db;
use crate::{Ctx, q_all};

pub async fn list(
    db: &Db,
    ctx: &Ctx,
    entity_type: Option<String>,
    entity_id: Option<String>,
    action: Option<String>,
    page: PageReq,
) -> DomainResult<Page<AuditEntry>> {
    authorize(db, ctx, Permission::AuditRead, "audit").await?;
    let rows = q_all!(
        &mut db.acquire().await?.conn(),
        AuditEntry,
        "SELECT * FROM audit_log WHERE ($1 IS NULL OR entity_type = $1) AND ($2 IS NULL OR entity_id = $2)
             AND ($3 IS NULL OR action = $3) AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5",
        entity_type,
        entity_id,
        action,
        page.cursor,
        page.fetch()
    )?;
    Ok(Page::from_rows(rows, page.limit, |a| a.id))
}
