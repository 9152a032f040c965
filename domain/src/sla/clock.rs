//! Clocks: an item's SLA clock paused while it waits on the client, and the booking clock.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::FromRow;
use uuid::Uuid;

use super::*;
use crate::commands::tasks::{self, NewTask};
use crate::commands::{authorize, emit, snapshot, write_audit};
use crate::error::DomainResult;
use crate::policy::Permission;
use crate::store::{Conn, Db};
use crate::{Ctx, now, q_all, q_exec};

/// Stops (`paused = true`) or restarts the clocks of the open items about an inquiry while it
/// waits on the client; on restart the deadlines move by the time spent waiting.
pub async fn pause_for_subject(
    conn: &mut Conn<'_>,
    ctx: &Ctx,
    subject_type: &str,
    subject_id: Uuid,
    paused: bool,
) -> DomainResult<()> {
    #[derive(FromRow)]
    struct Clock {
        id: Uuid,
        #[sqlx(rename = "type")]
        kind: String,
        assignee_id: Option<Uuid>,
        due_at: Option<DateTime<Utc>>,
        paused_at: Option<DateTime<Utc>>,
        sla_started_at: Option<DateTime<Utc>>,
        created_at: DateTime<Utc>,
    }
    let at = now();
    // The same clock on both kinds of item; only the table differs.
    let tables: [(&str, &'static str, &'static str, &'static str); 2] = [
        (
            "task",
            "SELECT id, type, assignee_id, due_at, paused_at, sla_started_at, created_at FROM tasks
             WHERE subject_type = $1 AND subject_id = $2 AND status IN ('open', 'in_progress')",
            "UPDATE tasks SET paused_at = $1, updated_at = $1, version = version + 1 WHERE id = $2 AND paused_at IS NULL",
            "UPDATE tasks SET paused_at = NULL, due_at = $1, sla_started_at = $2, updated_at = $3, version = version + 1
             WHERE id = $4 AND paused_at IS NOT NULL",
        ),
        (
            "exception",
            "SELECT id, type, assignee_id, due_at, paused_at, sla_started_at, created_at FROM exceptions
             WHERE subject_type = $1 AND subject_id = $2 AND status IN ('open', 'acknowledged')",
            "UPDATE exceptions SET paused_at = $1, updated_at = $1, version = version + 1 WHERE id = $2 AND paused_at IS NULL",
            "UPDATE exceptions SET paused_at = NULL, due_at = $1, sla_started_at = $2, updated_at = $3, version = version + 1
             WHERE id = $4 AND paused_at IS NOT NULL",
        ),
    ];
    for (kind, select, pause, resume) in tables {
        for item in q_all!(conn, Clock, select, subject_type, subject_id)? {
            let Some(p) = policy_for(conn, kind, &item.kind).await? else { continue };
            if !p.pause_on_awaiting_client {
                continue;
            }
            let changed = if paused {
                q_exec!(conn, pause, at, item.id)?
            } else if let (Some(since), Some(due)) = (item.paused_at, item.due_at) {
                // The whole window moves, so the at-risk share is measured on the same window.
                let shift = at - since;
                q_exec!(conn, resume, due + shift, item.sla_started_at.unwrap_or(item.created_at) + shift, at, item.id)?
            } else {
                0
            };
            if changed > 0 {
                let event = format!("{kind}.{}", if paused { "sla_paused" } else { "sla_resumed" });
                let payload =
                    json!({format!("{kind}_id"): item.id, "type": item.kind, "assignee_id": item.assignee_id});
                emit(conn, ctx, &event, kind, item.id, payload).await?;
            }
        }
    }
    Ok(())
}

#[derive(Debug, Default, Serialize)]
pub struct ClockOutcome {
    pub starting_soon: usize,
    pub safety_checks: usize,
}

#[derive(FromRow)]
struct Due {
    id: Uuid,
}

/// The booking clock: `booking.starting_soon` 30 minutes before a confirmed booking, and a
/// safety_check task at its start and at its end. Each fires once per booking.
pub async fn booking_clock(db: &Db) -> DomainResult<ClockOutcome> {
    let ctx = Ctx::system();
    let mut out = ClockOutcome::default();
    let at = now();
    let soon = {
        let mut h = db.acquire().await?;
        q_all!(
            &mut h.conn(),
            Due,
            "SELECT id FROM bookings WHERE status = 'confirmed' AND starting_soon_at IS NULL AND start_at <= $1 AND start_at > $2",
            at + Duration::minutes(30),
            at - Duration::hours(1)
        )?
    };
    for b in soon {
        let mut tx = db.begin().await?;
        let mut conn = tx.conn();
        if q_exec!(
            &mut conn,
            "UPDATE bookings SET starting_soon_at = $1 WHERE id = $2 AND starting_soon_at IS NULL",
            at,
            b.id
        )? == 1
        {
            let bk = crate::commands::bookings::load(&mut conn, b.id).await?;
            // "On the day" in the agency's time zone.
            let cal = Calendar::office_hours(&db.settings().timezone);
            let confirmed_today =
                bk.client_confirmed_at.is_some_and(|c| cal.local_date(c) == cal.local_date(bk.start_at));

            emit(
                &mut conn,
                &ctx,
                "booking.starting_soon",
                "booking",
                b.id,
                json!({
                    "booking_id": b.id, "status": bk.status, "client_id": bk.client_id, "model_id": bk.model_id,
                    "start_at": bk.start_at, "end_at": bk.end_at, "assignee_id": bk.assignee_id,
                    "client": {"confirmed_today": confirmed_today},
                    "booking": {"status": bk.status, "start_at": bk.start_at},
                }),
            )
            .await?;
            out.starting_soon += 1;
        }
        tx.commit().await?;
    }
    for edge in ["start", "end"] {
        let sql_due: &'static str = match edge {
            "start" => {
                "SELECT id FROM bookings WHERE status IN ('confirmed', 'in_progress') AND safety_start_at IS NULL AND start_at <= $1 AND start_at > $2"
            }
            _ => {
                "SELECT id FROM bookings WHERE status IN ('confirmed', 'in_progress', 'completed') AND safety_end_at IS NULL AND end_at <= $1 AND end_at > $2"
            }
        };
        let due = {
            let mut h = db.acquire().await?;
            q_all!(&mut h.conn(), Due, sql_due, at, at - Duration::hours(6))?
        };
        for b in due {
            let mut tx = db.begin().await?;
            let mut conn = tx.conn();
            let claimed = match edge {
                "start" => q_exec!(
                    &mut conn,
                    "UPDATE bookings SET safety_start_at = $1 WHERE id = $2 AND safety_start_at IS NULL",
                    at,
                    b.id
                )?,
                _ => q_exec!(
                    &mut conn,
                    "UPDATE bookings SET safety_end_at = $1 WHERE id = $2 AND safety_end_at IS NULL",
                    at,
                    b.id
                )?,
            };
            if claimed == 1 {
                let bk = crate::commands::bookings::load(&mut conn, b.id).await?;
                let when = if edge == "start" { bk.start_at } else { bk.end_at };
                let p = policy_for(&mut conn, "task", "safety_check").await?;
                let grace = p.map(|p| p.minutes).unwrap_or(15);
                tasks::insert(
                    &mut conn,
                    &ctx,
                    NewTask {
                        kind: "safety_check".into(),
                        title: Some(format!("Safety check at the {edge} of the booking")),
                        priority: Some("critical".into()),
                        subject_type: Some("booking".into()),
                        subject_id: Some(b.id),
                        assignee_id: bk.assignee_id,
                        due_at: Some(
                            super::calendar::plus_minutes(when, grace, "minutes")
                                .unwrap_or(when + Duration::minutes(15)),
                        ),
                    },
                )
                .await?;
                out.safety_checks += 1;
            }
            tx.commit().await?;
        }
    }
    Ok(out)
}

/// The statuses in which a client may confirm a booking.
const CLIENT_CONFIRMABLE: [&str; 3] = ["pending", "deposit_required", "confirmed"];

/// Marks that the client confirmed the booking today (the no-show-risk rule reads it).
pub async fn client_confirmed(db: &Db, ctx: &Ctx, booking_id: Uuid) -> DomainResult<crate::rows::Booking> {
    authorize(db, ctx, Permission::BookingsWrite, "booking").await?;
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = crate::commands::bookings::load(&mut conn, booking_id).await?;
    // Only a booking still ahead: once started, finished or called off there is nothing to confirm.
    if !CLIENT_CONFIRMABLE.contains(&before.status.as_str()) {
        return Err(crate::error::DomainError::GuardFailed {
            guard: "booking_upcoming",
            message: format!("the booking is {}; the client confirms only an upcoming booking", before.status),
        });
    }
    let n = q_exec!(
        &mut conn,
        "UPDATE bookings SET client_confirmed_at = $1, updated_at = $1, version = version + 1
         WHERE id = $2 AND version = $3 AND status = $4",
        now(),
        booking_id,
        before.version,
        before.status.clone()
    )?;
    if n == 0 {
        return Err(crate::error::DomainError::VersionConflict { entity: "booking", current_version: None });
    }
    let after = crate::commands::bookings::load(&mut conn, booking_id).await?;
    emit(
        &mut conn,
        ctx,
        "booking.client_confirmed",
        "booking",
        booking_id,
        json!({"booking_id": booking_id, "client_id": after.client_id}),
    )
    .await?;
    write_audit(
        &mut conn,
        ctx,
        "booking.client_confirmed",
        "booking",
        Some(booking_id.to_string()),
        Some(snapshot(&before)),
        Some(snapshot(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}
