//! `/users`: staff accounts (managed by the OWNER).

use std::sync::Arc;

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;
use virel_domain::commands::users::{self, NewUser, UserPatch};

use super::{encode_cursor, page};
use crate::auth::{Auth, UserOut};
use crate::dto::UserPage;
use crate::error::ApiResult;
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

#[derive(Object)]
pub struct CreateUser {
    #[oai(validator(max_length = 254))]
    pub email: String,
    #[oai(validator(max_length = 200))]
    pub name: String,
    /// OWNER, OPS_MANAGER, OPERATOR, CONTENT_MANAGER or FINANCE.
    #[oai(validator(max_length = 32))]
    pub role: String,
    /// At least 8 characters; stored as an argon2id hash.
    #[oai(write_only, validator(max_length = 256))]
    pub password: String,
}

#[derive(Object)]
pub struct PatchUser {
    #[oai(validator(max_length = 200))]
    pub name: Option<String>,
    #[oai(validator(max_length = 32))]
    pub role: Option<String>,
    pub active: Option<bool>,
    pub on_duty: Option<bool>,
    #[oai(write_only, validator(max_length = 256))]
    pub password: Option<String>,
    pub version: Option<i64>,
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    User(Json<UserOut>),
}

#[OpenApi(tag = "ApiTags::Users")]
impl Api {
    #[oai(path = "/users", method = "get", operation_id = "listUsers")]
    async fn list(
        &self,
        auth: Auth,
        role: Query<Option<String>>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<UserPage>> {
        let p = users::list(&self.state.db, &auth.0, role.0, page(limit.0, cursor.0)?).await?;
        Ok(Json(UserPage {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: encode_cursor(p.next_cursor),
        }))
    }

    #[oai(path = "/users", method = "post", operation_id = "createUser")]
    async fn create(&self, auth: Auth, body: Json<CreateUser>) -> ApiResult<Created> {
        let b = body.0;
        let u = users::create(
            &self.state.db,
            &auth.0,
            NewUser { email: b.email, name: b.name, role: b.role, password: b.password },
        )
        .await?;
        Ok(Created::User(Json(u.into())))
    }

    #[oai(path = "/users/:id", method = "patch", operation_id = "updateUser")]
    async fn patch(&self, auth: Auth, id: Path<Uuid>, body: Json<PatchUser>) -> ApiResult<Json<UserOut>> {
        let b = body.0;
        let p = UserPatch {
            name: b.name,
            role: b.role,
            active: b.active,
            on_duty: b.on_duty,
            password: b.password,
            version: b.version,
        };
        Ok(Json(users::update(&self.state.db, &auth.0, id.0, p).await?.into()))
    }
}
