//! Models: the agency's talent, their rates, languages and public profile.

use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::types::Json;
use uuid::Uuid;

use super::{PageReq, authorize, check_version, emit, one_of, require_text, snapshot, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::policy::Permission;
use crate::rows::{Model, Page};
use crate::store::{Conn, Db};
use crate::{Ctx, new_id, now, q_all, q_exec, q_opt};

/// A model's statuses.
pub const MODEL_STATUSES: &[&str] = &["active", "inactive"];

#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
pub struct Rate {
    pub duration_minutes: i64,
    pub amount: i64,
    pub currency: String,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
pub struct NewModel {
    pub name: String,
    pub base_location: Option<String>,
    #[serde(default)]
    pub languages: Vec<String>,
    #[serde(default)]
    pub rates: Vec<Rate>,
    pub attributes: Option<Value>,
    pub profile_text: Option<String>,
    pub seo_slug: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
pub struct ModelPatch {
    pub name: Option<String>,
    pub status: Option<String>,
    pub base_location: Option<String>,
    pub languages: Option<Vec<String>>,
    pub rates: Option<Vec<Rate>>,
    pub attributes: Option<Value>,
    pub profile_text: Option<String>,
    pub seo_slug: Option<String>,
    pub version: Option<i64>,
}

fn validate_rates(rates: &[Rate], accepted: &[String]) -> DomainResult<()> {
    if rates.len() > crate::validate::MAX_ITEMS {
        return Err(crate::validate::refuse(
            "rates",
            format!("rates must have at most {} items", crate::validate::MAX_ITEMS),
        ));
    }
    for (i, r) in rates.iter().enumerate() {
        if !(15..=24 * 60).contains(&r.duration_minutes) {
            let field = format!("rates[{i}].duration_minutes");
            return Err(crate::validate::refuse(&field, format!("{field} must be 15 to 1440")));
        }
        super::Money { amount: r.amount, currency: r.currency.clone() }.validate(&format!("rates[{i}]"), accepted)?;
    }
    Ok(())
}

fn validate_slug(slug: &Option<String>) -> DomainResult<()> {
    if let Some(s) = slug
        && (s.is_empty()
            || s.len() > 80
            || !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        return Err(DomainError::invalid("seo_slug must be lowercase letters, digits and dashes"));
    }
    Ok(())
}

fn validate_attributes(a: &Option<Value>) -> DomainResult<()> {
    match a {
        None | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(DomainError::invalid("attributes must be an object")),
    }
}

pub async fn load(conn: &mut Conn<'_>, id: Uuid) -> DomainResult<Model> {
    q_opt!(conn, Model, "SELECT * FROM models WHERE id = $1", id)?.ok_or(DomainError::NotFound { entity: "model" })
}

pub async fn create(db: &Db, ctx: &Ctx, input: NewModel) -> DomainResult<Model> {
    authorize(db, ctx, Permission::ModelsWrite, "model").await?;
    crate::validate::input(&input)?;
    let name = require_text(Some(&input.name), "name")?;
    validate_rates(&input.rates, &db.settings().currencies)?;
    validate_slug(&input.seo_slug)?;
    validate_attributes(&input.attributes)?;
    let id = new_id();
    let at = now();
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    q_exec!(
        &mut conn,
        "INSERT INTO models (id, name, status, base_location, rates, languages, attributes, profile_text, seo_slug, created_at, updated_at)
         VALUES ($1, $2, 'active', $3, $4, $5, $6, $7, $8, $9, $9)",
        id,
        name,
        input.base_location.clone(),
        Json(json!(input.rates)),
        Json(json!(input.languages)),
        Json(input.attributes.clone().unwrap_or_else(|| json!({}))),
        input.profile_text.clone(),
        input.seo_slug.clone(),
        at
    )?;
    q_exec!(&mut conn, "INSERT INTO model_stats (model_id) VALUES ($1)", id)?;
    let row = load(&mut conn, id).await?;
    emit(&mut conn, ctx, "model.created", "model", id, json!({"model_id": id})).await?;
    write_audit(&mut conn, ctx, "model.created", "model", Some(id.to_string()), None, Some(snapshot(&row))).await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn get(db: &Db, ctx: &Ctx, id: Uuid) -> DomainResult<Model> {
    authorize(db, ctx, Permission::ModelsRead, "model").await?;
    load(&mut db.acquire().await?.conn(), id).await
}

pub async fn list(db: &Db, ctx: &Ctx, status: Option<String>, page: PageReq) -> DomainResult<Page<Model>> {
    authorize(db, ctx, Permission::ModelsRead, "model").await?;
    if let Some(s) = &status {
        one_of(s, MODEL_STATUSES, "status")?;
    }
    let rows = q_all!(
        &mut db.acquire().await?.conn(),
        Model,
        "SELECT * FROM models WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        status,
        page.cursor,
        page.fetch()
    )?;
    Ok(Page::from_rows(rows, page.limit, |m| m.id))
}

pub async fn update(db: &Db, ctx: &Ctx, id: Uuid, p: ModelPatch) -> DomainResult<Model> {
    authorize(db, ctx, Permission::ModelsWrite, "model").await?;
    crate::validate::input(&p)?;
    if let Some(r) = &p.rates {
        validate_rates(r, &db.settings().currencies)?;
    }
    if let Some(s) = &p.status {
        one_of(s, MODEL_STATUSES, "status")?;
    }
    validate_slug(&p.seo_slug)?;
    validate_attributes(&p.attributes)?;
    let name = match &p.name {
        Some(n) => Some(require_text(Some(n), "name")?),
        None => None,
    };
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = load(&mut conn, id).await?;
    check_version("model", p.version, before.version)?;
    let n = q_exec!(
        &mut conn,
        "UPDATE models SET name = $1, status = $2, base_location = $3, rates = $4, languages = $5, attributes = $6,
             profile_text = $7, seo_slug = $8, updated_at = $9, version = version + 1
         WHERE id = $10 AND version = $11",
        name.unwrap_or(before.name.clone()),
        p.status.clone().unwrap_or(before.status.clone()),
        p.base_location.clone().or(before.base_location.clone()),
        Json(p.rates.as_ref().map(|r| json!(r)).unwrap_or(before.rates.0.clone())),
        Json(p.languages.as_ref().map(|l| json!(l)).unwrap_or(before.languages.0.clone())),
        Json(p.attributes.clone().unwrap_or(before.attributes.0.clone())),
        p.profile_text.clone().or(before.profile_text.clone()),
        p.seo_slug.clone().or(before.seo_slug.clone()),
        now(),
        id,
        before.version
    )?;
    if n == 0 {
        return Err(DomainError::VersionConflict { entity: "model", current_version: None });
    }
    let after = load(&mut conn, id).await?;
    let changed = super::changed_fields(&snapshot(&before), &snapshot(&after));
    super::emit(&mut conn, ctx, "model.updated", "model", id, serde_json::json!({"model_id": id, "changed": changed}))
        .await?;
    write_audit(
        &mut conn,
        ctx,
        "model.updated",
        "model",
        Some(id.to_string()),
        Some(snapshot(&before)),
        Some(snapshot(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}
