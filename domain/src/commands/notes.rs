//! Notes: free text on any subject, part of its timeline.

use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::tasks::check_subject;
use super::{authorize, emit, require_text, snapshot, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::policy::Permission;
use crate::rows::Note;
use crate::store::{Conn, Db};
use crate::{Ctx, new_id, now, q_exec, q_opt};

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct NewNote {
    pub subject_type: String,
    pub subject_id: Uuid,
    pub text: String,
}

pub async fn insert(conn: &mut Conn<'_>, ctx: &Ctx, n: NewNote) -> DomainResult<Note> {
    crate::validate::input(&n)?;
    let text = require_text(Some(&n.text), "text")?;
    check_subject(conn, &n.subject_type, n.subject_id).await?;
    let id = new_id();
    q_exec!(
        conn,
        "INSERT INTO notes (id, subject_type, subject_id, author, text, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        id,
        n.subject_type.clone(),
        n.subject_id,
        ctx.actor.label(),
        text,
        now()
    )?;
    let row =
        q_opt!(conn, Note, "SELECT * FROM notes WHERE id = $1", id)?.ok_or(DomainError::NotFound { entity: "note" })?;
    emit(
        conn,
        ctx,
        "note.added",
        &n.subject_type,
        n.subject_id,
        json!({"note_id": id, "subject_type": n.subject_type, "subject_id": n.subject_id}),
    )
    .await?;
    write_audit(conn, ctx, "note.added", "note", Some(id.to_string()), None, Some(snapshot(&row))).await?;
    Ok(row)
}

/// A note on a task or an exception needs the right to see it: an OPERATOR annotates their
/// own and unassigned items only (as in the Action Center). A subject that does not exist is
/// left to `check_subject`.
async fn check_visible(db: &Db, ctx: &Ctx, n: &NewNote) -> DomainResult<()> {
    let seen = match n.subject_type.as_str() {
        "task" => super::tasks::get(db, ctx, n.subject_id).await.map(|_| ()),
        "exception" => super::exceptions::get(db, ctx, n.subject_id).await.map(|_| ()),
        _ => Ok(()),
    };
    match seen {
        Err(DomainError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

pub async fn create(db: &Db, ctx: &Ctx, n: NewNote) -> DomainResult<Note> {
    authorize(db, ctx, Permission::NotesWrite, "note").await?;
    crate::validate::input(&n)?;
    check_visible(db, ctx, &n).await?;
    let mut tx = db.begin().await?;
    let row = insert(&mut tx.conn(), ctx, n).await?;
    tx.commit().await?;
    Ok(row)
}
