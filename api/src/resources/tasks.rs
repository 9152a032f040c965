//! `/tasks`: create, list, read, move through the state machine, assign.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;
use virel_domain::commands::tasks::{self, NewTask, TaskFilter, TaskTransition};

use super::{encode_cursor, page};
use crate::auth::Auth;
use crate::dto::{TaskOut, TaskPage};
use crate::error::ApiResult;
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

#[derive(Object)]
pub struct CreateTask {
    /// confirm_booking, follow_up, deposit_reminder, notify_model, safety_check,
    /// contact_client or custom.
    #[oai(rename = "type", validator(max_length = 64))]
    pub kind: String,
    #[oai(validator(max_length = 500))]
    pub title: Option<String>,
    /// critical, high, normal (default) or low.
    #[oai(validator(max_length = 16))]
    pub priority: Option<String>,
    #[oai(validator(max_length = 32))]
    pub subject_type: Option<String>,
    pub subject_id: Option<Uuid>,
    pub assignee_id: Option<Uuid>,
    pub due_at: Option<DateTime<Utc>>,
}

#[derive(Object)]
pub struct StatusIn {
    #[oai(validator(max_length = 32))]
    pub status: String,
    pub version: Option<i64>,
}

#[derive(Object)]
pub struct AssignIn {
    /// The user to assign; null to unassign.
    pub assignee_id: Option<Uuid>,
    pub version: Option<i64>,
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Task(Json<TaskOut>),
}

#[OpenApi(tag = "ApiTags::Tasks")]
impl Api {
    #[oai(path = "/tasks", method = "post", operation_id = "createTask")]
    async fn create(&self, auth: Auth, body: Json<CreateTask>) -> ApiResult<Created> {
        let b = body.0;
        let t = NewTask {
            kind: b.kind,
            title: b.title,
            priority: b.priority,
            subject_type: b.subject_type,
            subject_id: b.subject_id,
            assignee_id: b.assignee_id,
            due_at: b.due_at,
        };
        Ok(Created::Task(Json(tasks::create(&self.state.db, &auth.0, t).await?.into())))
    }

    /// List tasks, newest first. OPERATORs see their own and unassigned tasks only.
    #[oai(path = "/tasks", method = "get", operation_id = "listTasks")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: Auth,
        status: Query<Option<String>>,
        assignee_id: Query<Option<Uuid>>,
        #[oai(name = "type")] kind: Query<Option<String>>,
        subject_type: Query<Option<String>>,
        subject_id: Query<Option<Uuid>>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<TaskPage>> {
        let f = TaskFilter {
            status: status.0,
            assignee_id: assignee_id.0,
            kind: kind.0,
            subject_type: subject_type.0,
            subject_id: subject_id.0,
        };
        let p = tasks::list(&self.state.db, &auth.0, f, page(limit.0, cursor.0)?).await?;
        Ok(Json(TaskPage {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: encode_cursor(p.next_cursor),
        }))
    }

    #[oai(path = "/tasks/:id", method = "get", operation_id = "getTask")]
    async fn get(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<TaskOut>> {
        Ok(Json(tasks::get(&self.state.db, &auth.0, id.0).await?.into()))
    }

    #[oai(path = "/tasks/:id/status", method = "post", operation_id = "transitionTask")]
    async fn status(&self, auth: Auth, id: Path<Uuid>, body: Json<StatusIn>) -> ApiResult<Json<TaskOut>> {
        let t = TaskTransition { status: body.0.status, version: body.0.version };
        Ok(Json(tasks::transition(&self.state.db, &auth.0, id.0, t).await?.into()))
    }

    /// Assign (or claim, or unassign) a task.
    #[oai(path = "/tasks/:id/assign", method = "post", operation_id = "assignTask")]
    async fn assign(&self, auth: Auth, id: Path<Uuid>, body: Json<AssignIn>) -> ApiResult<Json<TaskOut>> {
        Ok(Json(tasks::assign(&self.state.db, &auth.0, id.0, body.0.assignee_id, body.0.version).await?.into()))
    }
}
