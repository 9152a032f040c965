//! `/notes`: free text on any subject.

use std::sync::Arc;

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;
use virel_domain::commands::notes::{self, NewNote};

use crate::auth::Auth;
use crate::dto::NoteOut;
use crate::error::ApiResult;
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

#[derive(Object)]
pub struct CreateNote {
    /// inquiry, booking, client, model, task, exception or payment.
    #[oai(validator(max_length = 32))]
    pub subject_type: String,
    pub subject_id: Uuid,
    #[oai(validator(max_length = 10000))]
    pub text: String,
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Note(Json<NoteOut>),
}

#[OpenApi(tag = "ApiTags::Notes")]
impl Api {
    #[oai(path = "/notes", method = "post", operation_id = "createNote")]
    async fn create(&self, auth: Auth, body: Json<CreateNote>) -> ApiResult<Created> {
        let b = body.0;
        let n = notes::create(
            &self.state.db,
            &auth.0,
            NewNote { subject_type: b.subject_type, subject_id: b.subject_id, text: b.text },
        )
        .await?;
        Ok(Created::Note(Json(n.into())))
    }
}
