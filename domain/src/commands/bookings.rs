//! Bookings: a model's time sold to a client, guarded against overlap and moved through the
//! booking state machine (deposit, confirmation, the appointment itself).

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::json;
use sqlx::FromRow;
use uuid::Uuid;

use super::inquiries::validate_duration;
use super::tasks::{self, NewTask};
use super::{Money, PageReq, authorize, check_version, emit, one_of, require_text, snapshot, write_audit};
use crate::availability::{self, Interval};
use crate::error::{DomainError, DomainResult};
use crate::machine::{BOOKING, BOOKING_HOLDS_TIME};
use crate::policy::Permission;
use crate::rows::{Booking, Page, Payment};
use crate::store::{Conn, Db, LockTable, Tx};
use crate::{Ctx, new_id, now, q_all, q_exec, q_opt};

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct NewBooking {
    pub client_id: Uuid,
    pub model_id: Uuid,
    pub start_at: DateTime<Utc>,
    pub duration_minutes: i64,
    pub location: Option<String>,
    pub price: Money,
    pub deposit: Option<Money>,
    /// `draft` (default) or `pending`.
    pub status: Option<String>,
    pub assignee_id: Option<Uuid>,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
pub struct BookingTransition {
    pub status: String,
    pub reason: Option<String>,
    #[serde(default)]
    pub r#override: bool,
    pub version: Option<i64>,
}

pub(crate) struct NewBookingRow {
    pub client_id: Uuid,
    pub model_id: Uuid,
    pub inquiry_id: Option<Uuid>,
    pub start_at: DateTime<Utc>,
    pub duration_minutes: i64,
    pub location: Option<String>,
    pub price: Money,
    pub deposit: Money,
    pub status: &'static str,
    pub assignee_id: Option<Uuid>,
}

/// Targets that hold the model's time and that an override (`bookings:override`, with a
/// reason) may force: past a missing deposit (`confirmed`) or the model's availability.
const OVERRIDABLE: &[&str] = &["pending", "deposit_required", "confirmed"];

#[derive(FromRow)]
struct IdRow {
    id: Uuid,
}

pub async fn load(conn: &mut Conn<'_>, id: Uuid) -> DomainResult<Booking> {
    q_opt!(conn, Booking, "SELECT * FROM bookings WHERE id = $1", id)?
        .ok_or(DomainError::NotFound { entity: "booking" })
}

/// Refuses a booking that would overlap another booking holding the same model's time.
/// Must run after `lock_row(Models, model_id)` in the same transaction: the lock serialises
/// concurrent writers for one model, so two requests cannot both pass the check.
async fn check_overlap(
    tx: &mut Tx,
    model_id: Uuid,
    exclude: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> DomainResult<()> {
    if !tx.lock_row(LockTable::Models, model_id).await? {
        return Err(DomainError::NotFound { entity: "model" });
    }
    let clash = q_opt!(
        &mut tx.conn(),
        IdRow,
        "SELECT id FROM bookings WHERE model_id = $1 AND id <> $2
             AND status IN ('pending', 'deposit_required', 'confirmed', 'in_progress')
             AND start_at < $3 AND end_at > $4
         LIMIT 1",
        model_id,
        exclude,
        end,
        start
    )?;
    match clash {
        Some(c) => Err(DomainError::BookingOverlap { conflicting_booking_id: c.id }),
        None => Ok(()),
    }
}

fn event_payload(b: &Booking) -> serde_json::Value {
    json!({
        "booking_id": b.id,
        "status": b.status,
        "client_id": b.client_id,
        "model_id": b.model_id,
        "inquiry_id": b.inquiry_id,
        "start_at": b.start_at,
        "end_at": b.end_at,
        "assignee_id": b.assignee_id,
        "price": {"amount": b.price_amount, "currency": b.price_currency},
        "deposit": {"amount": b.deposit_amount, "currency": b.deposit_currency},
        "booking": {"status": b.status, "start_at": b.start_at},
    })
}

pub(crate) async fn insert(tx: &mut Tx, ctx: &Ctx, b: NewBookingRow) -> DomainResult<Booking> {
    crate::validate::opt_text("location", b.location.as_deref())?;
    crate::validate::time("start_at", b.start_at)?;
    validate_duration(b.duration_minutes)?;
    b.price.validate("price", &tx.settings().currencies)?;
    b.deposit.validate("deposit", &tx.settings().currencies)?;
    if b.deposit.amount > b.price.amount {
        return Err(crate::validate::refuse("deposit.amount", "deposit.amount must not exceed price.amount"));
    }
    let client = super::clients::load(&mut tx.conn(), b.client_id)
        .await
        .map_err(|_| DomainError::NotFound { entity: "client" })?;
    if client.blocked {
        return Err(DomainError::GuardFailed { guard: "client_not_blocked", message: "the client is blocked".into() });
    }
    let model =
        super::models::load(&mut tx.conn(), b.model_id).await.map_err(|_| DomainError::NotFound { entity: "model" })?;
    if model.status != "active" {
        return Err(DomainError::GuardFailed { guard: "model_active", message: "the model is not active".into() });
    }
    if let Some(a) = b.assignee_id {
        super::users::load(&mut tx.conn(), a).await.map_err(|_| DomainError::NotFound { entity: "user" })?;
    }
    let id = new_id();
    let end_at = b.start_at + Duration::minutes(b.duration_minutes);
    if BOOKING_HOLDS_TIME.contains(&b.status) {
        check_overlap(tx, b.model_id, id, b.start_at, end_at).await?;
        // Created holding time (pending, or converted from an inquiry): she must be free.
        if let Some(e) = availability::unavailable(tx, b.model_id, id, Interval::new(b.start_at, end_at)).await? {
            return Err(e);
        }
    }
    let mut conn = tx.conn();
    let at = now();
    q_exec!(
        &mut conn,
        "INSERT INTO bookings (id, client_id, model_id, inquiry_id, start_at, end_at, location, price_amount, price_currency,
             deposit_amount, deposit_currency, status, assignee_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
        id,
        b.client_id,
        b.model_id,
        b.inquiry_id,
        b.start_at,
        end_at,
        b.location.clone(),
        b.price.amount,
        b.price.currency.clone(),
        b.deposit.amount,
        b.deposit.currency.clone(),
        b.status,
        b.assignee_id,
        at
    )?;
    let row = load(&mut conn, id).await?;
    emit(&mut conn, ctx, "booking.created", "booking", id, event_payload(&row)).await?;
    write_audit(&mut conn, ctx, "booking.created", "booking", Some(id.to_string()), None, Some(snapshot(&row))).await?;
    Ok(row)
}

pub async fn create(db: &Db, ctx: &Ctx, input: NewBooking) -> DomainResult<Booking> {
    authorize(db, ctx, Permission::BookingsWrite, "booking").await?;
    crate::validate::input(&input)?;
    let status = match input.status.as_deref() {
        None | Some("draft") => "draft",
        Some("pending") => "pending",
        Some(_) => {
            return Err(DomainError::invalid("status of a new booking must be draft or pending"));
        }
    };
    let deposit = input.deposit.clone().unwrap_or(Money { amount: 0, currency: input.price.currency.clone() });
    let mut tx = db.begin().await?;
    let row = insert(
        &mut tx,
        ctx,
        NewBookingRow {
            client_id: input.client_id,
            model_id: input.model_id,
            inquiry_id: None,
            start_at: input.start_at,
            duration_minutes: input.duration_minutes,
            location: input.location,
            price: input.price,
            deposit,
            status,
            assignee_id: input.assignee_id,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn get(db: &Db, ctx: &Ctx, id: Uuid) -> DomainResult<Booking> {
    authorize(db, ctx, Permission::BookingsRead, "booking").await?;
    load(&mut db.acquire().await?.conn(), id).await
}

pub async fn list(
    db: &Db,
    ctx: &Ctx,
    status: Option<String>,
    model_id: Option<Uuid>,
    client_id: Option<Uuid>,
    page: PageReq,
) -> DomainResult<Page<Booking>> {
    authorize(db, ctx, Permission::BookingsRead, "booking").await?;
    if let Some(s) = &status {
        one_of(s, BOOKING.states, "status")?;
    }
    let rows = q_all!(
        &mut db.acquire().await?.conn(),
        Booking,
        "SELECT * FROM bookings WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR model_id = $2)
             AND ($3 IS NULL OR client_id = $3) AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5",
        status,
        model_id,
        client_id,
        page.cursor,
        page.fetch()
    )?;
    Ok(Page::from_rows(rows, page.limit, |b| b.id))
}

async fn deposit_payments(conn: &mut Conn<'_>, booking_id: Uuid) -> DomainResult<Vec<Payment>> {
    q_all!(conn, Payment, "SELECT * FROM payments WHERE booking_id = $1 AND kind = 'deposit' ORDER BY id", booking_id)
}

/// Moves a booking through its state machine, applying each transition's guard.
pub async fn transition(db: &Db, ctx: &Ctx, id: Uuid, t: BookingTransition) -> DomainResult<Booking> {
    authorize(db, ctx, Permission::BookingsWrite, "booking").await?;
    if !BOOKING.is_state(&t.status) {
        return Err(DomainError::invalid(format!("status must be one of: {}", BOOKING.states.join(", "))));
    }
    if t.r#override && OVERRIDABLE.contains(&t.status.as_str()) {
        authorize(db, ctx, Permission::BookingsOverride, "booking").await?;
    }
    let mut tx = db.begin().await?;
    let after = transition_in(&mut tx, ctx, id, &t).await?;
    tx.commit().await?;
    Ok(after)
}

/// The booking transition inside a caller's transaction (automation actions, quick actions).
pub async fn transition_in(tx: &mut Tx, ctx: &Ctx, id: Uuid, t: &BookingTransition) -> DomainResult<Booking> {
    crate::validate::input(t)?;
    if !BOOKING.is_state(&t.status) {
        return Err(DomainError::invalid(format!("status must be one of: {}", BOOKING.states.join(", "))));
    }
    if t.r#override && OVERRIDABLE.contains(&t.status.as_str()) {
        ctx.require_quiet(Permission::BookingsOverride)?;
    }
    let before = load(&mut tx.conn(), id).await?;
    check_version("booking", t.version, before.version)?;
    BOOKING.check(&before.status, &t.status)?;
    let at = now();
    let mut cancellation_reason = before.cancellation_reason.clone();
    let mut override_reason = before.override_reason.clone();
    let mut extra_events: Vec<(&str, serde_json::Value)> = Vec::new();
    match (before.status.as_str(), t.status.as_str()) {
        ("draft", "pending") => {
            if before.location.as_deref().map(str::trim).unwrap_or("").is_empty() || before.price_amount <= 0 {
                return Err(DomainError::GuardFailed {
                    guard: "required_fields",
                    message: "a booking needs a location and a price above zero to be pending".into(),
                });
            }
            check_overlap(tx, before.model_id, id, before.start_at, before.end_at).await?;
        }
        ("pending", "deposit_required") => {
            if before.deposit_amount <= 0 {
                return Err(DomainError::GuardFailed {
                    guard: "deposit_amount",
                    message: "the booking has no deposit amount to request".into(),
                });
            }
            let existing = deposit_payments(&mut tx.conn(), id).await?;
            if !existing.iter().any(|p| matches!(p.status.as_str(), "requested" | "pending" | "succeeded")) {
                let pid = new_id();
                q_exec!(
                    &mut tx.conn(),
                    "INSERT INTO payments (id, booking_id, kind, amount, currency, status, created_at, updated_at)
                     VALUES ($1, $2, 'deposit', $3, $4, 'requested', $5, $5)",
                    pid,
                    id,
                    before.deposit_amount,
                    before.deposit_currency.clone(),
                    at
                )?;
                extra_events.push((
                    "payment.requested",
                    json!({
                        "payment_id": pid, "booking_id": id, "type": "deposit",
                        "amount": {"amount": before.deposit_amount, "currency": before.deposit_currency}
                    }),
                ));
            }
        }
        ("deposit_required", "confirmed") => {
            let paid = deposit_payments(&mut tx.conn(), id).await?.iter().any(|p| p.status == "succeeded");
            if !paid {
                if !t.r#override {
                    return Err(DomainError::GuardFailed {
                        guard: "deposit_paid",
                        message: "no succeeded deposit payment; confirm with override (and a reason) if you have the permission".into(),
                    });
                }
                override_reason = Some(require_text(t.reason.as_deref(), "reason")?);
            }
        }
        ("confirmed", "in_progress") if at < before.start_at - Duration::minutes(30) => {
            return Err(DomainError::GuardFailed {
                guard: "not_before_start_window",
                message: "a booking can start no earlier than 30 minutes before its start time".into(),
            });
        }
        ("confirmed", "no_show") if at < before.start_at => {
            return Err(DomainError::GuardFailed {
                guard: "not_before_start",
                message: "a no-show can be recorded only after the start time".into(),
            });
        }
        (_, "cancelled") => {
            cancellation_reason = Some(require_text(t.reason.as_deref(), "reason")?);
        }
        _ => {}
    }
    // Into a holding state (not the start itself): the model must be free for the time,
    // unless overridden with a reason.
    let mut availability_override = None;
    if OVERRIDABLE.contains(&t.status.as_str())
        && let Some(e) =
            availability::unavailable(tx, before.model_id, id, Interval::new(before.start_at, before.end_at)).await?
    {
        if !t.r#override {
            return Err(e);
        }
        let reason = require_text(t.reason.as_deref(), "reason")?;
        override_reason = Some(reason.clone());
        availability_override = Some(json!({"reason": reason, "to": t.status, "unavailable": e.details()}));
    }
    let n = q_exec!(
        &mut tx.conn(),
        "UPDATE bookings SET status = $1, cancellation_reason = $2, override_reason = $3, updated_at = $4, version = version + 1
         WHERE id = $5 AND version = $6 AND status = $7",
        t.status.clone(),
        cancellation_reason,
        override_reason,
        at,
        id,
        before.version,
        before.status.clone()
    )?;
    if n == 0 {
        return Err(DomainError::VersionConflict { entity: "booking", current_version: None });
    }
    let after = load(&mut tx.conn(), id).await?;
    match after.status.as_str() {
        "completed" => {
            q_exec!(
                &mut tx.conn(),
                "UPDATE clients SET bookings_count = bookings_count + 1, spend_amount = spend_amount + $1 WHERE id = $2",
                after.price_amount,
                after.client_id
            )?;
            q_exec!(
                &mut tx.conn(),
                "UPDATE model_stats SET bookings_count = bookings_count + 1, completed_count = completed_count + 1 WHERE model_id = $1",
                after.model_id
            )?;
        }
        "no_show" => {
            q_exec!(
                &mut tx.conn(),
                "UPDATE clients SET no_shows_count = no_shows_count + 1 WHERE id = $1",
                after.client_id
            )?;
            q_exec!(
                &mut tx.conn(),
                "UPDATE model_stats SET bookings_count = bookings_count + 1 WHERE model_id = $1",
                after.model_id
            )?;
        }
        "cancelled" => {
            let paid = deposit_payments(&mut tx.conn(), id).await?.into_iter().find(|p| p.status == "succeeded");
            if let Some(p) = paid {
                let finance = q_opt!(
                    &mut tx.conn(),
                    IdRow,
                    "SELECT id FROM users WHERE role = 'FINANCE' AND active = $1 ORDER BY id LIMIT 1",
                    true
                )?;
                tasks::insert(
                    &mut tx.conn(),
                    ctx,
                    NewTask {
                        kind: "custom".into(),
                        title: Some(format!("Review refund of the paid deposit ({} {})", p.amount, p.currency)),
                        priority: Some("high".into()),
                        subject_type: Some("booking".into()),
                        subject_id: Some(id),
                        assignee_id: finance.map(|f| f.id),
                        due_at: None,
                    },
                )
                .await?;
            }
        }
        _ => {}
    }
    let mut conn = tx.conn();
    let mut payload = event_payload(&after);
    payload["from"] = json!(before.status);
    payload["to"] = json!(after.status);
    payload["reason"] = json!(t.reason);
    emit(&mut conn, ctx, "booking.status_changed", "booking", id, payload.clone()).await?;
    let specific = match after.status.as_str() {
        "confirmed" => Some("booking.confirmed"),
        "cancelled" => Some("booking.cancelled"),
        "no_show" => Some("booking.no_show"),
        "completed" => Some("booking.completed"),
        "pending" => Some("booking.pending"),
        "deposit_required" => Some("booking.deposit_required"),
        "in_progress" => Some("booking.started"),
        _ => None,
    };
    if let Some(kind) = specific {
        emit(&mut conn, ctx, kind, "booking", id, payload).await?;
    }
    for (kind, p) in extra_events {
        let pid = p["payment_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()).unwrap_or(id);
        emit(&mut conn, ctx, kind, "payment", pid, p).await?;
    }
    if let Some(o) = availability_override {
        write_audit(&mut conn, ctx, "booking.availability_override", "booking", Some(id.to_string()), None, Some(o))
            .await?;
    }
    write_audit(
        &mut conn,
        ctx,
        "booking.status_changed",
        "booking",
        Some(id.to_string()),
        Some(snapshot(&before)),
        Some(snapshot(&after)),
    )
    .await?;
    Ok(after)
}
