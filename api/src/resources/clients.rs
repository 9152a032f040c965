//! `/clients`: the agency's customers; contact details masked without `clients:pii`.

use std::sync::Arc;

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;
use virel_domain::commands::clients::{self, ClientPatch, NewClient};

use super::{encode_cursor, page};
use crate::auth::Auth;
use crate::dto::{ClientOut, ClientPage, View};
use crate::error::ApiResult;
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

#[derive(Object)]
pub struct CreateClient {
    #[oai(validator(max_length = 200))]
    pub name: String,
    #[oai(validator(max_length = 32))]
    pub phone: Option<String>,
    #[oai(validator(max_length = 254))]
    pub email: Option<String>,
    #[oai(validator(max_length = 64))]
    pub telegram: Option<String>,
    /// telegram, sms, email or phone.
    #[oai(validator(max_length = 16))]
    pub preferred_channel: Option<String>,
    #[oai(validator(max_length = 10000))]
    pub notes: Option<String>,
    #[oai(validator(max_items = 50, max_length = 50))]
    pub tags: Option<Vec<String>>,
}

#[derive(Object)]
pub struct PatchClient {
    #[oai(validator(max_length = 200))]
    pub name: Option<String>,
    #[oai(validator(max_length = 32))]
    pub phone: Option<String>,
    #[oai(validator(max_length = 254))]
    pub email: Option<String>,
    #[oai(validator(max_length = 64))]
    pub telegram: Option<String>,
    #[oai(validator(max_length = 16))]
    pub preferred_channel: Option<String>,
    #[oai(validator(max_length = 10000))]
    pub notes: Option<String>,
    #[oai(validator(max_items = 50, max_length = 50))]
    pub tags: Option<Vec<String>>,
    pub version: Option<i64>,
}

#[derive(Object)]
pub struct BlockIn {
    #[oai(validator(max_length = 2000))]
    pub reason: String,
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Client(Json<ClientOut>),
}

#[OpenApi(tag = "ApiTags::Clients")]
impl Api {
    #[oai(path = "/clients", method = "post", operation_id = "createClient")]
    async fn create(&self, auth: Auth, body: Json<CreateClient>) -> ApiResult<Created> {
        let b = body.0;
        let c = NewClient {
            name: b.name,
            phone: b.phone,
            email: b.email,
            telegram: b.telegram,
            preferred_channel: b.preferred_channel,
            notes: b.notes,
            tags: b.tags.unwrap_or_default(),
        };
        let row = clients::create(&self.state.db, &auth.0, c).await?;
        Ok(Created::Client(Json(ClientOut::new(row, View::of(&auth.0)))))
    }

    /// List clients, newest first; `q` searches names.
    #[oai(path = "/clients", method = "get", operation_id = "listClients")]
    async fn list(
        &self,
        auth: Auth,
        q: Query<Option<String>>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<ClientPage>> {
        let p = clients::list(&self.state.db, &auth.0, q.0, page(limit.0, cursor.0)?).await?;
        let v = View::of(&auth.0);
        Ok(Json(ClientPage {
            items: p.items.into_iter().map(|c| ClientOut::new(c, v)).collect(),
            next_cursor: encode_cursor(p.next_cursor),
        }))
    }

    #[oai(path = "/clients/:id", method = "get", operation_id = "getClient")]
    async fn get(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<ClientOut>> {
        Ok(Json(ClientOut::new(clients::get(&self.state.db, &auth.0, id.0).await?, View::of(&auth.0))))
    }

    #[oai(path = "/clients/:id", method = "patch", operation_id = "updateClient")]
    async fn patch(&self, auth: Auth, id: Path<Uuid>, body: Json<PatchClient>) -> ApiResult<Json<ClientOut>> {
        let b = body.0;
        let p = ClientPatch {
            name: b.name,
            phone: b.phone,
            email: b.email,
            telegram: b.telegram,
            preferred_channel: b.preferred_channel,
            notes: b.notes,
            tags: b.tags,
            version: b.version,
        };
        Ok(Json(ClientOut::new(clients::update(&self.state.db, &auth.0, id.0, p).await?, View::of(&auth.0))))
    }

    /// Block a client: their new inquiries are closed at once and raise an exception.
    #[oai(path = "/clients/:id/block", method = "post", operation_id = "blockClient")]
    async fn block(&self, auth: Auth, id: Path<Uuid>, body: Json<BlockIn>) -> ApiResult<Json<ClientOut>> {
        Ok(Json(ClientOut::new(
            clients::block(&self.state.db, &auth.0, id.0, Some(body.0.reason)).await?,
            View::of(&auth.0),
        )))
    }
}
