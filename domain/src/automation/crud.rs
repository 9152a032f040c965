//! Rule CRUD: the rule and execution rows, their validation on save, and listing them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::FromRow;
use sqlx::types::Json;
use uuid::Uuid;

pub use rules::{Action, Condition, MAX_DEPTH};

use crate::commands::{PageReq, authorize, check_version, require_text, snapshot, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::policy::Permission;
use crate::rows::Page;
use crate::store::{Conn, Db};
use crate::{Ctx, new_id, now, q_all, q_exec, q_opt};

use super::*;

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct Rule {
    pub id: Uuid,
    pub name: String,
    pub enabled: bool,
    pub trigger: String,
    pub conditions: Json<Vec<Condition>>,
    pub actions: Json<Vec<Action>>,
    pub is_default: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct Execution {
    pub id: Uuid,
    pub rule_id: Uuid,
    pub event_id: Uuid,
    pub action_index: i64,
    pub status: String,
    pub actions_result: Option<Json<Value>>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct RuleInput {
    pub name: String,
    pub enabled: Option<bool>,
    pub trigger: String,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    pub actions: Vec<Action>,
    pub version: Option<i64>,
}

pub async fn load_rule(conn: &mut Conn<'_>, id: Uuid) -> DomainResult<Rule> {
    q_opt!(conn, Rule, "SELECT * FROM automation_rules WHERE id = $1", id)?
        .ok_or(DomainError::NotFound { entity: "automation rule" })
}

fn check_input(r: &RuleInput) -> DomainResult<String> {
    crate::validate::input(r)?;
    let name = require_text(Some(&r.name), "name")?;
    rules::validate(&r.trigger, &r.conditions, &r.actions)?;
    if r.trigger.is_empty() {
        return Err(DomainError::invalid("trigger is required"));
    }
    Ok(name)
}

/// A `send_notification` action must name a template that exists (shipped or stored): an
/// unknown one is refused when the rule is saved, not when it fires.
async fn check_templates(conn: &mut Conn<'_>, r: &RuleInput) -> DomainResult<()> {
    for a in &r.actions {
        if a.kind == "send_notification"
            && let Some(t) = a.str_param("template")
            && !crate::commands::templates::exists(conn, t).await?
        {
            // A name that names nothing (yet): 404, as for any reference to nothing.
            return Err(DomainError::NotFound { entity: "template" });
        }
    }
    Ok(())
}

/// The most rules one trigger may have: every event runs all the rules of its trigger, and
/// rules' events run rules again, so their number multiplies along a chain.
pub const MAX_RULES_PER_TRIGGER: i64 = 25;

#[derive(sqlx::FromRow)]
struct Count {
    n: i64,
}

/// 409 when `trigger` already has [`MAX_RULES_PER_TRIGGER`] rules (besides `except`).
async fn check_room(conn: &mut Conn<'_>, trigger: &str, except: Option<Uuid>) -> DomainResult<()> {
    let n = crate::q_one!(
        conn,
        Count,
        "SELECT COUNT(*) AS n FROM automation_rules WHERE trigger = $1 AND ($2 IS NULL OR id <> $2)",
        trigger,
        except
    )?
    .n;
    if n >= MAX_RULES_PER_TRIGGER {
        return Err(DomainError::GuardFailed {
            guard: "rules_per_trigger",
            message: format!("{trigger} already has {n} rules, the most one trigger may have"),
        });
    }
    Ok(())
}

pub async fn create_rule(db: &Db, ctx: &Ctx, r: RuleInput) -> DomainResult<Rule> {
    authorize(db, ctx, Permission::AutomationWrite, "automation_rule").await?;
    let name = check_input(&r)?;
    let mut tx = db.begin().await?;
    check_templates(&mut tx.conn(), &r).await?;
    check_room(&mut tx.conn(), &r.trigger, None).await?;
    let row = insert_rule(&mut tx.conn(), ctx, &name, &r, false).await?;
    tx.commit().await?;
    Ok(row)
}

pub(super) async fn insert_rule(
    conn: &mut Conn<'_>,
    ctx: &Ctx,
    name: &str,
    r: &RuleInput,
    is_default: bool,
) -> DomainResult<Rule> {
    let id = new_id();
    let at = now();
    q_exec!(
        conn,
        "INSERT INTO automation_rules (id, name, enabled, trigger, conditions, actions, is_default, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        id,
        name,
        r.enabled.unwrap_or(true),
        r.trigger.clone(),
        Json(r.conditions.clone()),
        Json(r.actions.clone()),
        is_default,
        ctx.actor.label(),
        at
    )?;
    let row = load_rule(conn, id).await?;
    write_audit(
        conn,
        ctx,
        "automation_rule.created",
        "automation_rule",
        Some(id.to_string()),
        None,
        Some(snapshot(&row)),
    )
    .await?;
    Ok(row)
}

pub async fn update_rule(db: &Db, ctx: &Ctx, id: Uuid, r: RuleInput) -> DomainResult<Rule> {
    authorize(db, ctx, Permission::AutomationWrite, "automation_rule").await?;
    let name = check_input(&r)?;
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    check_templates(&mut conn, &r).await?;
    let before = load_rule(&mut conn, id).await?;
    check_room(&mut conn, &r.trigger, Some(id)).await?;
    check_version("automation rule", r.version, before.version)?;
    let n = q_exec!(
        &mut conn,
        "UPDATE automation_rules SET name = $1, enabled = $2, trigger = $3, conditions = $4, actions = $5, updated_at = $6,
             version = version + 1 WHERE id = $7 AND version = $8",
        name,
        r.enabled.unwrap_or(before.enabled),
        r.trigger.clone(),
        Json(r.conditions.clone()),
        Json(r.actions.clone()),
        now(),
        id,
        before.version
    )?;
    if n == 0 {
        return Err(DomainError::VersionConflict { entity: "automation rule", current_version: None });
    }
    let after = load_rule(&mut conn, id).await?;
    let changed = crate::commands::changed_fields(&snapshot(&before), &snapshot(&after));
    crate::commands::emit(
        &mut conn,
        ctx,
        "rule.updated",
        "automation_rule",
        id,
        serde_json::json!({"rule_id": id, "trigger": after.trigger, "enabled": after.enabled, "changed": changed}),
    )
    .await?;
    write_audit(
        &mut conn,
        ctx,
        "automation_rule.updated",
        "automation_rule",
        Some(id.to_string()),
        Some(snapshot(&before)),
        Some(snapshot(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

pub async fn delete_rule(db: &Db, ctx: &Ctx, id: Uuid) -> DomainResult<()> {
    authorize(db, ctx, Permission::AutomationWrite, "automation_rule").await?;
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = load_rule(&mut conn, id).await?;
    q_exec!(&mut conn, "DELETE FROM automation_rules WHERE id = $1", id)?;
    write_audit(
        &mut conn,
        ctx,
        "automation_rule.deleted",
        "automation_rule",
        Some(id.to_string()),
        Some(snapshot(&before)),
        None,
    )
    .await?;
    tx.commit().await
}

pub async fn get_rule(db: &Db, ctx: &Ctx, id: Uuid) -> DomainResult<Rule> {
    authorize(db, ctx, Permission::AutomationRead, "automation_rule").await?;
    load_rule(&mut db.acquire().await?.conn(), id).await
}

pub async fn list_rules(db: &Db, ctx: &Ctx, trigger: Option<String>, page: PageReq) -> DomainResult<Page<Rule>> {
    authorize(db, ctx, Permission::AutomationRead, "automation_rule").await?;
    let rows = q_all!(
        &mut db.acquire().await?.conn(),
        Rule,
        "SELECT * FROM automation_rules WHERE ($1 IS NULL OR trigger = $1) AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        trigger,
        page.cursor,
        page.fetch()
    )?;
    Ok(Page::from_rows(rows, page.limit, |r| r.id))
}

pub async fn list_executions(
    db: &Db,
    ctx: &Ctx,
    rule_id: Option<Uuid>,
    event_id: Option<Uuid>,
    status: Option<String>,
    page: PageReq,
) -> DomainResult<Page<Execution>> {
    authorize(db, ctx, Permission::AutomationRead, "automation_execution").await?;
    let rows = q_all!(
        &mut db.acquire().await?.conn(),
        Execution,
        "SELECT * FROM automation_executions WHERE ($1 IS NULL OR rule_id = $1) AND ($2 IS NULL OR event_id = $2)
             AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5",
        rule_id,
        event_id,
        status,
        page.cursor,
        page.fetch()
    )?;
    Ok(Page::from_rows(rows, page.limit, |e| e.id))
}
