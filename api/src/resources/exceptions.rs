//! `/exceptions`: raise, list, read, acknowledge, resolve, dismiss, assign.

use std::sync::Arc;

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;
use virel_domain::commands::exceptions::{self, NewException};

use super::tasks::AssignIn;
use super::{encode_cursor, page};
use crate::auth::Auth;
use crate::dto::{ExceptionOut, ExceptionPage};
use crate::error::ApiResult;
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

#[derive(Object)]
pub struct CreateException {
    #[oai(rename = "type", validator(max_length = 64))]
    pub kind: String,
    #[oai(validator(max_length = 500))]
    pub title: Option<String>,
    /// critical, high, medium or low.
    #[oai(validator(max_length = 16))]
    pub severity: String,
    #[oai(validator(max_length = 32))]
    pub subject_type: Option<String>,
    pub subject_id: Option<Uuid>,
    pub assignee_id: Option<Uuid>,
}

#[derive(Object)]
pub struct AckIn {
    pub version: Option<i64>,
}

#[derive(Object)]
pub struct ResolveIn {
    #[oai(validator(max_length = 2000))]
    pub resolution: String,
    /// `resolved` (default) or `dismissed`.
    #[oai(validator(max_length = 32))]
    pub status: Option<String>,
    pub version: Option<i64>,
}

#[derive(Object)]
pub struct ExceptionStatusIn {
    #[oai(validator(max_length = 32))]
    pub status: String,
    #[oai(validator(max_length = 2000))]
    pub resolution: Option<String>,
    pub version: Option<i64>,
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Exception(Json<ExceptionOut>),
}

#[OpenApi(tag = "ApiTags::Exceptions")]
impl Api {
    /// Raise an exception by hand.
    #[oai(path = "/exceptions", method = "post", operation_id = "createException")]
    async fn create(&self, auth: Auth, body: Json<CreateException>) -> ApiResult<Created> {
        let b = body.0;
        let e = NewException {
            kind: b.kind,
            title: b.title,
            severity: b.severity,
            subject_type: b.subject_type,
            subject_id: b.subject_id,
            assignee_id: b.assignee_id,
        };
        Ok(Created::Exception(Json(exceptions::create(&self.state.db, &auth.0, e).await?.into())))
    }

    /// List exceptions, newest first. OPERATORs see their own and unassigned ones only.
    #[oai(path = "/exceptions", method = "get", operation_id = "listExceptions")]
    async fn list(
        &self,
        auth: Auth,
        status: Query<Option<String>>,
        #[oai(name = "type")] kind: Query<Option<String>>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<ExceptionPage>> {
        let p = exceptions::list(&self.state.db, &auth.0, status.0, kind.0, page(limit.0, cursor.0)?).await?;
        Ok(Json(ExceptionPage {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: encode_cursor(p.next_cursor),
        }))
    }

    #[oai(path = "/exceptions/:id", method = "get", operation_id = "getException")]
    async fn get(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<ExceptionOut>> {
        Ok(Json(exceptions::get(&self.state.db, &auth.0, id.0).await?.into()))
    }

    #[oai(path = "/exceptions/:id/acknowledge", method = "post", operation_id = "acknowledgeException")]
    async fn acknowledge(&self, auth: Auth, id: Path<Uuid>, body: Json<AckIn>) -> ApiResult<Json<ExceptionOut>> {
        Ok(Json(
            exceptions::transition(&self.state.db, &auth.0, id.0, "acknowledged", None, body.0.version).await?.into(),
        ))
    }

    /// Resolve (or dismiss) with a resolution text.
    #[oai(path = "/exceptions/:id/resolve", method = "post", operation_id = "resolveException")]
    async fn resolve(&self, auth: Auth, id: Path<Uuid>, body: Json<ResolveIn>) -> ApiResult<Json<ExceptionOut>> {
        let to = body.0.status.unwrap_or_else(|| "resolved".into());
        if to != "resolved" && to != "dismissed" {
            return Err(virel_domain::DomainError::invalid("status must be resolved or dismissed").into());
        }
        Ok(Json(
            exceptions::transition(&self.state.db, &auth.0, id.0, &to, Some(body.0.resolution), body.0.version)
                .await?
                .into(),
        ))
    }

    /// Move the exception to any status its state machine allows.
    #[oai(path = "/exceptions/:id/status", method = "post", operation_id = "transitionException")]
    async fn status(&self, auth: Auth, id: Path<Uuid>, body: Json<ExceptionStatusIn>) -> ApiResult<Json<ExceptionOut>> {
        let b = body.0;
        Ok(Json(
            exceptions::transition(&self.state.db, &auth.0, id.0, &b.status, b.resolution, b.version).await?.into(),
        ))
    }

    #[oai(path = "/exceptions/:id/assign", method = "post", operation_id = "assignException")]
    async fn assign(&self, auth: Auth, id: Path<Uuid>, body: Json<AssignIn>) -> ApiResult<Json<ExceptionOut>> {
        Ok(Json(exceptions::assign(&self.state.db, &auth.0, id.0, body.0.assignee_id, body.0.version).await?.into()))
    }
}
