//! Reading domain events and a booking's timeline (its events and notes, oldest first).

use serde::Serialize;
use uuid::Uuid;

use super::authorize;
use crate::error::DomainResult;
use crate::policy::Permission;
use crate::rows::{DomainEvent, Note};
use crate::store::Db;
use crate::{Ctx, q_all};

#[derive(Clone, Debug, Serialize)]
pub struct Timeline {
    pub events: Vec<DomainEvent>,
    pub notes: Vec<Note>,
    /// Messages about the booking (the delivery ledger), oldest first.
    pub notifications: Vec<super::notifications::TimelineEntry>,
}

pub async fn booking_timeline(db: &Db, ctx: &Ctx, booking_id: Uuid) -> DomainResult<Timeline> {
    authorize(db, ctx, Permission::BookingsRead, "booking").await?;
    let mut h = db.acquire().await?;
    let mut conn = h.conn();
    super::bookings::load(&mut conn, booking_id).await?;
    let events = q_all!(
        &mut conn,
        DomainEvent,
        "SELECT * FROM domain_events WHERE subject_type = 'booking' AND subject_id = $1 ORDER BY id",
        booking_id
    )?;
    let notes = q_all!(
        &mut conn,
        Note,
        "SELECT * FROM notes WHERE subject_type = 'booking' AND subject_id = $1 ORDER BY id",
        booking_id
    )?;
    let notifications = super::notifications::for_subject(&mut conn, "booking", booking_id).await?;
    Ok(Timeline { events, notes, notifications })
}

pub async fn load(db: &Db, id: Uuid) -> crate::DomainResult<DomainEvent> {
    crate::q_opt!(&mut db.acquire().await?.conn(), DomainEvent, "SELECT * FROM domain_events WHERE id = $1", id)?
        .ok_or(crate::DomainError::NotFound { entity: "event" })
}
