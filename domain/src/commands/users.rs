//! Staff accounts: who may log in, with which role.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use serde::Deserialize;
use uuid::Uuid;

use super::{PageReq, authorize, check_version, require_text, snapshot, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::policy::{Permission, Role};
use crate::rows::{Page, User};
use crate::store::{Conn, Db};
use crate::{Ctx, new_id, now, q_all, q_exec, q_opt};

/// argon2id with the crate's defaults (19 MiB, 2 passes): the OWASP baseline.
pub fn hash_password(password: &str) -> DomainResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DomainError::Internal(format!("hashing failed: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub role: String,
    pub password: String,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
pub struct UserPatch {
    pub name: Option<String>,
    pub role: Option<String>,
    pub active: Option<bool>,
    pub on_duty: Option<bool>,
    pub password: Option<String>,
    pub version: Option<i64>,
}

fn parse_role(r: &str) -> DomainResult<Role> {
    Role::parse(r).ok_or_else(|| {
        DomainError::invalid("role must be one of OWNER, OPS_MANAGER, OPERATOR, CONTENT_MANAGER, FINANCE")
    })
}

fn check_password(p: &str) -> DomainResult<()> {
    if p.chars().count() < 8 || p.len() > 256 {
        return Err(crate::validate::refuse("password", "password must be 8 to 256 characters"));
    }
    Ok(())
}

pub async fn load(conn: &mut Conn<'_>, id: Uuid) -> DomainResult<User> {
    q_opt!(conn, User, "SELECT * FROM users WHERE id = $1", id)?.ok_or(DomainError::NotFound { entity: "user" })
}

pub async fn find_by_email(conn: &mut Conn<'_>, email: &str) -> DomainResult<Option<User>> {
    q_opt!(conn, User, "SELECT * FROM users WHERE email = $1", email.trim().to_lowercase())
}

/// Inserts a user with an already computed hash (the seed hashes its one demo password once).
pub(crate) async fn insert_hashed(
    conn: &mut Conn<'_>,
    ctx: &Ctx,
    email: &str,
    name: &str,
    role: Role,
    password_hash: &str,
) -> DomainResult<User> {
    crate::validate::text("email", email)?;
    crate::validate::text("name", name)?;
    let email = email.trim().to_lowercase();
    if !email.contains('@') {
        return Err(crate::validate::refuse("email", "email must be an email address"));
    }
    let id = new_id();
    let at = now();
    q_exec!(
        conn,
        "INSERT INTO users (id, email, name, role, password_hash, active, on_duty, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $7)",
        id,
        email,
        name,
        role.as_str(),
        password_hash,
        true,
        at
    )?;
    let row = load(conn, id).await?;
    write_audit(conn, ctx, "user.created", "user", Some(id.to_string()), None, Some(snapshot(&row))).await?;
    Ok(row)
}

pub async fn create(db: &Db, ctx: &Ctx, input: NewUser) -> DomainResult<User> {
    authorize(db, ctx, Permission::UsersManage, "user").await?;
    crate::validate::input(&input)?;
    let role = parse_role(&input.role)?;
    let name = require_text(Some(&input.name), "name")?;
    check_password(&input.password)?;
    let hash = hash_password(&input.password)?;
    let mut tx = db.begin().await?;
    let row = insert_hashed(&mut tx.conn(), ctx, &input.email, &name, role, &hash).await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn list(db: &Db, ctx: &Ctx, role: Option<String>, page: PageReq) -> DomainResult<Page<User>> {
    authorize(db, ctx, Permission::UsersRead, "user").await?;
    if let Some(r) = &role {
        parse_role(r)?;
    }
    let rows = q_all!(
        &mut db.acquire().await?.conn(),
        User,
        "SELECT * FROM users WHERE ($1 IS NULL OR role = $1) AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        role,
        page.cursor,
        page.fetch()
    )?;
    Ok(Page::from_rows(rows, page.limit, |u| u.id))
}

pub async fn get_self(db: &Db, id: Uuid) -> DomainResult<User> {
    load(&mut db.acquire().await?.conn(), id).await
}

pub async fn update(db: &Db, ctx: &Ctx, id: Uuid, p: UserPatch) -> DomainResult<User> {
    authorize(db, ctx, Permission::UsersManage, "user").await?;
    crate::validate::input(&p)?;
    let role = p.role.as_deref().map(parse_role).transpose()?;
    let hash = match &p.password {
        Some(pw) => {
            check_password(pw)?;
            Some(hash_password(pw)?)
        }
        None => None,
    };
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = load(&mut conn, id).await?;
    check_version("user", p.version, before.version)?;
    let name = match &p.name {
        Some(n) => require_text(Some(n), "name")?,
        None => before.name.clone(),
    };
    let n = q_exec!(
        &mut conn,
        "UPDATE users SET name = $1, role = $2, active = $3, on_duty = $4, password_hash = $5, updated_at = $6,
             version = version + 1 WHERE id = $7 AND version = $8",
        name,
        role.map(|r| r.as_str().to_string()).unwrap_or(before.role.clone()),
        p.active.unwrap_or(before.active),
        p.on_duty.unwrap_or(before.on_duty),
        hash.clone().unwrap_or(before.password_hash.clone()),
        now(),
        id,
        before.version
    )?;
    if n == 0 {
        return Err(DomainError::VersionConflict { entity: "user", current_version: None });
    }
    if hash.is_some() || p.active == Some(false) {
        // A new password or a deactivation ends every session of that user.
        q_exec!(
            &mut conn,
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            now(),
            id
        )?;
    }
    let after = load(&mut conn, id).await?;
    // What changed, never the values (a password hash stays out of the events).
    let changed = super::changed_fields(&snapshot(&before), &snapshot(&after));
    super::emit(
        &mut conn,
        ctx,
        "user.updated",
        "user",
        id,
        serde_json::json!({"user_id": id, "changed": changed, "role": after.role, "active": after.active,
                           "password_changed": hash.is_some()}),
    )
    .await?;
    write_audit(
        &mut conn,
        ctx,
        "user.updated",
        "user",
        Some(id.to_string()),
        Some(snapshot(&before)),
        Some(snapshot(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}
