//! `/audit`: the append-only audit log, newest first.

use std::sync::Arc;

use poem_openapi::OpenApi;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use virel_domain::commands::audit;

use super::{encode_cursor, page};
use crate::auth::Auth;
use crate::dto::{AuditOut, AuditPage, View};
use crate::error::ApiResult;
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

#[OpenApi(tag = "ApiTags::Audit")]
impl Api {
    #[oai(path = "/audit", method = "get", operation_id = "listAuditEntries")]
    async fn list(
        &self,
        auth: Auth,
        entity_type: Query<Option<String>>,
        entity_id: Query<Option<String>>,
        action: Query<Option<String>>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<AuditPage>> {
        let p = audit::list(&self.state.db, &auth.0, entity_type.0, entity_id.0, action.0, page(limit.0, cursor.0)?)
            .await?;
        let v = View::of(&auth.0);
        Ok(Json(AuditPage {
            items: p.items.into_iter().map(|a| AuditOut::new(a, v)).collect(),
            next_cursor: encode_cursor(p.next_cursor),
        }))
    }
}
