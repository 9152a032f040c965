//! `/models`: the agency's talent.

use std::sync::Arc;

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use uuid::Uuid;
use virel_domain::commands::models::{self, ModelPatch, NewModel, Rate};

use super::{encode_cursor, page};
use crate::auth::Auth;
use crate::dto::{ModelOut, ModelPage};
use crate::error::ApiResult;
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

#[derive(Object)]
pub struct RateIn {
    pub duration_minutes: i64,
    /// Minor units, 0 to 100,000,000.
    #[oai(validator(minimum(value = "0"), maximum(value = "100000000")))]
    pub amount: i64,
    #[oai(validator(max_length = 3))]
    pub currency: String,
}

#[derive(Object)]
pub struct CreateModel {
    #[oai(validator(max_length = 200))]
    pub name: String,
    #[oai(validator(max_length = 200))]
    pub base_location: Option<String>,
    #[oai(validator(max_items = 50, max_length = 35))]
    pub languages: Option<Vec<String>>,
    pub rates: Option<Vec<RateIn>>,
    pub attributes: Option<Value>,
    #[oai(validator(max_length = 10000))]
    pub profile_text: Option<String>,
    #[oai(validator(max_length = 80))]
    pub seo_slug: Option<String>,
}

#[derive(Object)]
pub struct PatchModel {
    #[oai(validator(max_length = 200))]
    pub name: Option<String>,
    /// active or inactive.
    #[oai(validator(max_length = 32))]
    pub status: Option<String>,
    #[oai(validator(max_length = 200))]
    pub base_location: Option<String>,
    #[oai(validator(max_items = 50, max_length = 35))]
    pub languages: Option<Vec<String>>,
    pub rates: Option<Vec<RateIn>>,
    pub attributes: Option<Value>,
    #[oai(validator(max_length = 10000))]
    pub profile_text: Option<String>,
    #[oai(validator(max_length = 80))]
    pub seo_slug: Option<String>,
    pub version: Option<i64>,
}

fn rates(r: Option<Vec<RateIn>>) -> Option<Vec<Rate>> {
    r.map(|v| {
        v.into_iter()
            .map(|r| Rate { duration_minutes: r.duration_minutes, amount: r.amount, currency: r.currency })
            .collect()
    })
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Model(Json<ModelOut>),
}

#[OpenApi(tag = "ApiTags::Models")]
impl Api {
    #[oai(path = "/models", method = "post", operation_id = "createModel")]
    async fn create(&self, auth: Auth, body: Json<CreateModel>) -> ApiResult<Created> {
        let b = body.0;
        let m = NewModel {
            name: b.name,
            base_location: b.base_location,
            languages: b.languages.unwrap_or_default(),
            rates: rates(b.rates).unwrap_or_default(),
            attributes: b.attributes,
            profile_text: b.profile_text,
            seo_slug: b.seo_slug,
        };
        Ok(Created::Model(Json(models::create(&self.state.db, &auth.0, m).await?.into())))
    }

    #[oai(path = "/models", method = "get", operation_id = "listModels")]
    async fn list(
        &self,
        auth: Auth,
        status: Query<Option<String>>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<ModelPage>> {
        let p = models::list(&self.state.db, &auth.0, status.0, page(limit.0, cursor.0)?).await?;
        Ok(Json(ModelPage {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: encode_cursor(p.next_cursor),
        }))
    }

    #[oai(path = "/models/:id", method = "get", operation_id = "getModel")]
    async fn get(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<ModelOut>> {
        Ok(Json(models::get(&self.state.db, &auth.0, id.0).await?.into()))
    }

    #[oai(path = "/models/:id", method = "patch", operation_id = "updateModel")]
    async fn patch(&self, auth: Auth, id: Path<Uuid>, body: Json<PatchModel>) -> ApiResult<Json<ModelOut>> {
        let b = body.0;
        let p = ModelPatch {
            name: b.name,
            status: b.status,
            base_location: b.base_location,
            languages: b.languages,
            rates: rates(b.rates),
            attributes: b.attributes,
            profile_text: b.profile_text,
            seo_slug: b.seo_slug,
            version: b.version,
        };
        Ok(Json(models::update(&self.state.db, &auth.0, id.0, p).await?.into()))
    }
}
