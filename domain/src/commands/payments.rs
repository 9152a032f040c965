//! Payments (SPEC §9): the deposit through a Stripe PaymentIntent, refunds through Stripe,
//! and the list finance reads. Provider calls happen outside the transaction, with an
//! idempotency key derived from Virel's ids, so a repeat (a retried request or job) repeats
//! the same provider operation instead of making a second one; the row, its events and its
//! audit entry are then written in one transaction.

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::exceptions::{self, NewException};
use super::{PageReq, authorize, emit, one_of, require_text, snapshot, write_audit};
use crate::commands::bookings::{self, BookingTransition};
use crate::error::{DomainError, DomainResult};
use crate::payments::{IntentRequest, Payments, ProviderError, Refund, RefundRequest};
use crate::policy::Permission;
use crate::rows::{Booking, Page, Payment};
use crate::store::{Conn, Db, LockTable, Tx};
use crate::{Ctx, new_id, now, q_all, q_exec, q_opt};

pub const PAYMENT_KINDS: &[&str] = &["deposit", "balance", "refund"];
pub const PAYMENT_STATUSES: &[&str] =
    &["requested", "pending", "processing", "succeeded", "failed", "canceled", "refunded"];

/// A deposit as the API answers it: the payment, and the PaymentIntent's client secret for
/// the frontend to collect the card.
#[derive(Clone, Debug, Serialize)]
pub struct Deposit {
    pub payment: Payment,
    pub client_secret: Option<String>,
    /// False when an earlier call had already made it.
    pub created: bool,
}

pub async fn load(conn: &mut Conn<'_>, id: Uuid) -> DomainResult<Payment> {
    q_opt!(conn, Payment, "SELECT * FROM payments WHERE id = $1", id)?
        .ok_or(DomainError::NotFound { entity: "payment" })
}

pub(crate) async fn by_provider_ref(conn: &mut Conn<'_>, r: &str) -> DomainResult<Option<Payment>> {
    Ok(q_opt!(conn, Payment, "SELECT * FROM payments WHERE provider_ref = $1", r.to_string())?)
}

async fn deposits(conn: &mut Conn<'_>, booking_id: Uuid) -> DomainResult<Vec<Payment>> {
    Ok(q_all!(
        conn,
        Payment,
        "SELECT * FROM payments WHERE booking_id = $1 AND kind = 'deposit' ORDER BY created_at, id",
        booking_id
    )?)
}

/// The deposit a new request would return instead of making another: one with a
/// PaymentIntent that is still usable or already paid.
fn live_deposit(ps: &[Payment]) -> Option<&Payment> {
    ps.iter().find(|p| {
        p.provider_ref.is_some()
            && matches!(p.status.as_str(), "pending" | "processing" | "succeeded" | "failed" | "refunded")
    })
}

/// The id of the n-th deposit attempt of a booking: the same on every repeat of the request,
/// so the PaymentIntent's metadata (and so its idempotent request) is the same too.
fn attempt_id(booking_id: Uuid, n: usize) -> Uuid {
    let digest = Sha256::digest(format!("virel-deposit:{booking_id}:{n}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// `POST /bookings/{id}/deposit`: creates the PaymentIntent, records the pending deposit with
/// its PaymentIntent id and moves the booking to `deposit_required`, in one transaction. A
/// provider error changes nothing; calling it again returns the same payment.
///
/// It moves the booking (pending → deposit_required, as `POST /bookings/{id}/status` does), so
/// it needs `bookings:write`: FINANCE reads bookings only (SPEC §1).
pub async fn request_deposit(db: &Db, ctx: &Ctx, payments: &Payments, booking_id: Uuid) -> DomainResult<Deposit> {
    authorize(db, ctx, Permission::BookingsWrite, "booking").await?;
    let booking = bookings::load(&mut db.acquire().await?.conn(), booking_id).await?;
    let existing = deposits(&mut db.acquire().await?.conn(), booking_id).await?;
    if let Some(p) = live_deposit(&existing) {
        return Ok(Deposit { client_secret: p.client_secret.clone(), payment: p.clone(), created: false });
    }
    let provider = payments.provider()?;
    if booking.status != "deposit_required" {
        crate::machine::BOOKING.check(&booking.status, "deposit_required")?;
    }
    if booking.deposit_amount <= 0 {
        return Err(DomainError::GuardFailed {
            guard: "deposit_amount",
            message: "the booking has no deposit amount to request".into(),
        });
    }
    // A deposit requested without the provider (the plain status change) is the one to pay.
    let requested = existing.iter().find(|p| p.status == "requested" && p.provider_ref.is_none());
    let payment_id = match requested {
        Some(p) => p.id,
        None => attempt_id(booking_id, existing.iter().filter(|p| p.status == "canceled").count()),
    };
    let intent = provider
        .create_intent(IntentRequest {
            amount: booking.deposit_amount,
            currency: booking.deposit_currency.clone(),
            description: format!("Deposit for booking {booking_id}"),
            metadata: vec![
                ("booking_id".into(), booking_id.to_string()),
                ("payment_id".into(), payment_id.to_string()),
                ("type".into(), "deposit".into()),
            ],
            idempotency_key: format!("virel-deposit-{payment_id}"),
        })
        .await
        .inspect_err(
            |e| tracing::warn!(booking = %booking_id, error = %e, "deposit: the provider refused or failed"),
        )?;

    let mut tx = db.begin().await?;
    tx.lock_key(&format!("deposit:{booking_id}")).await?;
    let existing = deposits(&mut tx.conn(), booking_id).await?;
    if let Some(p) = live_deposit(&existing) {
        // Another request got there first (with the same PaymentIntent, by its idempotency key).
        return Ok(Deposit { client_secret: p.client_secret.clone(), payment: p.clone(), created: false });
    }
    let at = now();
    let before = existing.iter().find(|p| p.id == payment_id).cloned();
    match &before {
        Some(p) => {
            q_exec!(
                &mut tx.conn(),
                "UPDATE payments SET status = 'pending', provider_ref = $1, client_secret = $2, updated_at = $3,
                     version = version + 1
                 WHERE id = $4 AND version = $5",
                intent.id.clone(),
                intent.client_secret.clone(),
                at,
                p.id,
                p.version
            )?;
        }
        None => {
            q_exec!(
                &mut tx.conn(),
                "INSERT INTO payments (id, booking_id, kind, amount, currency, status, provider_ref, client_secret,
                     created_at, updated_at)
                 VALUES ($1, $2, 'deposit', $3, $4, 'pending', $5, $6, $7, $7)",
                payment_id,
                booking_id,
                booking.deposit_amount,
                booking.deposit_currency.clone(),
                intent.id.clone(),
                intent.client_secret.clone(),
                at
            )?;
        }
    }
    let booking = bookings::load(&mut tx.conn(), booking_id).await?;
    let booking = if booking.status == "deposit_required" {
        booking
    } else {
        // The pending deposit is in place, so the transition adds no `requested` one.
        bookings::transition_in(
            &mut tx,
            ctx,
            booking_id,
            &BookingTransition { status: "deposit_required".into(), ..Default::default() },
        )
        .await?
    };
    let payment = load(&mut tx.conn(), payment_id).await?;
    let mut conn = tx.conn();
    if before.is_none() {
        emit(&mut conn, ctx, "payment.requested", "payment", payment_id, payload(&payment, &booking)).await?;
    }
    write_audit(
        &mut conn,
        ctx,
        "payment.deposit_requested",
        "payment",
        Some(payment_id.to_string()),
        before.as_ref().map(snapshot),
        Some(snapshot(&payment)),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(booking = %booking_id, payment = %payment_id, intent = %intent.id, "deposit requested");
    Ok(Deposit { client_secret: payment.client_secret.clone(), payment, created: true })
}

/// The payload of `payment.*` events: what the rules read (`type`, `amount`, `booking`).
pub fn payload(p: &Payment, b: &Booking) -> Value {
    json!({
        "payment_id": p.id,
        "booking_id": p.booking_id,
        "type": p.kind,
        "amount": {"amount": p.amount, "currency": p.currency},
        "status": p.status,
        "error": p.error,
        "provider_ref": p.provider_ref,
        "refund_of": p.refund_of,
        "assignee_id": b.assignee_id,
        "booking": {"status": b.status, "start_at": b.start_at, "assignee_id": b.assignee_id},
    })
}

#[derive(Clone, Debug, Default)]
pub struct PaymentFilter {
    pub booking_id: Option<Uuid>,
    pub status: Option<String>,
    pub kind: Option<String>,
}

pub async fn list(db: &Db, ctx: &Ctx, f: PaymentFilter, page: PageReq) -> DomainResult<Page<Payment>> {
    authorize(db, ctx, Permission::PaymentsRead, "payment").await?;
    if let Some(s) = &f.status {
        one_of(s, PAYMENT_STATUSES, "status")?;
    }
    if let Some(k) = &f.kind {
        one_of(k, PAYMENT_KINDS, "type")?;
    }
    let rows = q_all!(
        &mut db.acquire().await?.conn(),
        Payment,
        "SELECT * FROM payments WHERE ($1 IS NULL OR booking_id = $1) AND ($2 IS NULL OR status = $2)
             AND ($3 IS NULL OR kind = $3) AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5",
        f.booking_id,
        f.status,
        f.kind,
        page.cursor,
        page.fetch()
    )?;
    Ok(Page::from_rows(rows, page.limit, |p| p.id))
}

pub async fn get(db: &Db, ctx: &Ctx, id: Uuid) -> DomainResult<Payment> {
    authorize(db, ctx, Permission::PaymentsRead, "payment").await?;
    load(&mut db.acquire().await?.conn(), id).await
}

/// The amount of `p` not yet refunded (refunds that failed or were canceled do not count).
async fn refundable(conn: &mut Conn<'_>, p: &Payment) -> DomainResult<i64> {
    let refunds = q_all!(
        conn,
        Payment,
        "SELECT * FROM payments WHERE refund_of = $1 AND status NOT IN ('failed', 'canceled')",
        p.id
    )?;
    Ok(p.amount - refunds.iter().map(|r| r.amount).sum::<i64>())
}

/// `POST /payments/{id}/refund`: records the refund (`requested`) and its event; the critical
/// queue's `stripe_refund` job makes it at Stripe, with the refund's id as idempotency key.
pub async fn request_refund(
    db: &Db,
    ctx: &Ctx,
    payments: &Payments,
    payment_id: Uuid,
    amount: Option<i64>,
    reason: Option<String>,
) -> DomainResult<Payment> {
    authorize(db, ctx, Permission::PaymentsRefund, "payment").await?;
    payments.provider()?;
    let reason = require_text(reason.as_deref(), "reason")?;
    let mut tx = db.begin().await?;
    if !tx.lock_row(LockTable::Payments, payment_id).await? {
        return Err(DomainError::NotFound { entity: "payment" });
    }
    let p = load(&mut tx.conn(), payment_id).await?;
    if p.kind == "refund" {
        return Err(DomainError::invalid("a refund cannot be refunded"));
    }
    if p.status != "succeeded" || p.provider_ref.is_none() {
        return Err(DomainError::GuardFailed {
            guard: "payment_succeeded",
            message: "only a succeeded payment made through the provider can be refunded".into(),
        });
    }
    let left = refundable(&mut tx.conn(), &p).await?;
    let amount = amount.unwrap_or(left);
    if amount <= 0 || amount > left {
        return Err(DomainError::invalid(format!("amount must be between 1 and {left} (what is left to refund)")));
    }
    let id = new_id();
    let at = now();
    q_exec!(
        &mut tx.conn(),
        "INSERT INTO payments (id, booking_id, kind, amount, currency, status, refund_of, reason, created_at, updated_at)
         VALUES ($1, $2, 'refund', $3, $4, 'requested', $5, $6, $7, $7)",
        id,
        p.booking_id,
        amount,
        p.currency.clone(),
        p.id,
        reason,
        at
    )?;
    let refund = load(&mut tx.conn(), id).await?;
    let booking = bookings::load(&mut tx.conn(), p.booking_id).await?;
    let mut conn = tx.conn();
    emit(&mut conn, ctx, "payment.refund_requested", "payment", id, payload(&refund, &booking)).await?;
    write_audit(
        &mut conn,
        ctx,
        "payment.refund_requested",
        "payment",
        Some(id.to_string()),
        None,
        Some(snapshot(&refund)),
    )
    .await?;
    tx.commit().await?;
    Ok(refund)
}

/// The `stripe_refund` job: makes the refund at Stripe (once, whatever the retries: the key is
/// the refund's id) and records what Stripe answered. Err(Unavailable) is worth a retry.
pub async fn run_refund(db: &Db, payments: &Payments, refund_id: Uuid) -> DomainResult<()> {
    let provider = payments.provider()?;
    let refund = load(&mut db.acquire().await?.conn(), refund_id).await?;
    if refund.provider_ref.is_some() || refund.status != "requested" {
        return Ok(());
    }
    let Some(of) = refund.refund_of else { return Err(DomainError::invalid("the refund names no payment")) };
    let original = load(&mut db.acquire().await?.conn(), of).await?;
    let Some(intent) = original.provider_ref.clone() else {
        return Err(DomainError::invalid("the refunded payment has no PaymentIntent"));
    };
    let answer = provider
        .create_refund(RefundRequest {
            payment_intent: intent,
            amount: Some(refund.amount),
            metadata: vec![
                ("refund_id".into(), refund_id.to_string()),
                ("payment_id".into(), original.id.to_string()),
                ("booking_id".into(), original.booking_id.to_string()),
            ],
            idempotency_key: format!("virel-refund-{refund_id}"),
        })
        .await;
    let ctx = Ctx::system();
    let mut tx = db.begin().await?;
    match answer {
        Ok(r) => {
            apply_refund(&mut tx, &ctx, Some(refund_id), &r).await?;
        }
        Err(ProviderError::Rejected { message, .. }) => {
            tx.lock_row(LockTable::Payments, refund_id).await?;
            let current = load(&mut tx.conn(), refund_id).await?;
            set_status(&mut tx, &ctx, &current, "failed", Some(message)).await?;
            refund_failed(&mut tx, &ctx, refund_id).await?;
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await
}

/// Status of a refund row from Stripe's refund status.
fn refund_status(stripe: &str) -> &'static str {
    match stripe {
        "succeeded" => "succeeded",
        "failed" => "failed",
        "canceled" => "canceled",
        _ => "pending",
    }
}

fn rank(status: &str) -> u8 {
    match status {
        "requested" => 0,
        "pending" | "processing" => 1,
        _ => 2,
    }
}

/// Writes a payment's new status (guarded by its version) and its audit entry.
pub(crate) async fn set_status(
    tx: &mut Tx,
    ctx: &Ctx,
    p: &Payment,
    status: &str,
    error: Option<String>,
) -> DomainResult<Payment> {
    let n = q_exec!(
        &mut tx.conn(),
        "UPDATE payments SET status = $1, error = $2, updated_at = $3, version = version + 1 WHERE id = $4 AND version = $5",
        status.to_string(),
        error,
        now(),
        p.id,
        p.version
    )?;
    if n == 0 {
        return Err(DomainError::VersionConflict { entity: "payment", current_version: None });
    }
    let after = load(&mut tx.conn(), p.id).await?;
    write_audit(
        &mut tx.conn(),
        ctx,
        "payment.status_changed",
        "payment",
        Some(p.id.to_string()),
        Some(snapshot(p)),
        Some(snapshot(&after)),
    )
    .await?;
    Ok(after)
}

/// Brings a refund row in line with a Stripe refund (from the refund job's answer or a
/// webhook, in any order). The row is found by its Stripe id, else by the refund id Virel put
/// in the metadata; a refund made in Stripe's dashboard gets a row of its own.
pub(crate) async fn apply_refund(tx: &mut Tx, ctx: &Ctx, hint: Option<Uuid>, r: &Refund) -> DomainResult<bool> {
    let md_id = r.metadata.get("refund_id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
    let mut row = by_provider_ref(&mut tx.conn(), &r.id).await?;
    if row.is_none()
        && let Some(id) = hint.or(md_id)
    {
        row = q_opt!(&mut tx.conn(), Payment, "SELECT * FROM payments WHERE id = $1 AND kind = 'refund'", id)?;
    }
    let row = match row {
        Some(row) => row,
        None => {
            let Some(pi) = &r.payment_intent else { return Ok(false) };
            let Some(original) = by_provider_ref(&mut tx.conn(), pi).await? else { return Ok(false) };
            let id = new_id();
            q_exec!(
                &mut tx.conn(),
                "INSERT INTO payments (id, booking_id, kind, amount, currency, status, refund_of, reason, provider_ref,
                     created_at, updated_at)
                 VALUES ($1, $2, 'refund', $3, $4, 'pending', $5, 'made at the provider', $6, $7, $7)",
                id,
                original.booking_id,
                r.amount,
                original.currency.clone(),
                original.id,
                r.id.clone(),
                now()
            )?;
            load(&mut tx.conn(), id).await?
        }
    };
    tx.lock_row(LockTable::Payments, row.id).await?;
    let mut row = load(&mut tx.conn(), row.id).await?;
    if row.provider_ref.is_none() {
        q_exec!(
            &mut tx.conn(),
            "UPDATE payments SET provider_ref = $1, status = CASE WHEN status = 'requested' THEN 'pending' ELSE status END,
                 updated_at = $2, version = version + 1
             WHERE id = $3",
            r.id.clone(),
            now(),
            row.id
        )?;
        row = load(&mut tx.conn(), row.id).await?;
    }
    let next = refund_status(&r.status);
    let moves =
        next != row.status && (rank(next) > rank(&row.status) || (row.status == "succeeded" && next == "failed"));
    if !moves {
        return Ok(true);
    }
    let row = set_status(tx, ctx, &row, next, r.failure_reason.clone()).await?;
    match next {
        "succeeded" => refunded(tx, ctx, &row).await?,
        "failed" | "canceled" => refund_failed(tx, ctx, row.id).await?,
        _ => {}
    }
    Ok(true)
}

/// A refund went through: `payment.refunded`, and the payment is `refunded` once nothing is
/// left of it.
async fn refunded(tx: &mut Tx, ctx: &Ctx, refund: &Payment) -> DomainResult<()> {
    let Some(of) = refund.refund_of else { return Ok(()) };
    tx.lock_row(LockTable::Payments, of).await?;
    let original = load(&mut tx.conn(), of).await?;
    let refunds =
        q_all!(&mut tx.conn(), Payment, "SELECT * FROM payments WHERE refund_of = $1 AND status = 'succeeded'", of)?;
    let total: i64 = refunds.iter().map(|r| r.amount).sum();
    let original = if total >= original.amount && original.status == "succeeded" {
        set_status(tx, ctx, &original, "refunded", None).await?
    } else {
        original
    };
    let booking = bookings::load(&mut tx.conn(), original.booking_id).await?;
    let mut p = payload(&original, &booking);
    p["refund_id"] = json!(refund.id);
    p["refunded"] = json!({"amount": refund.amount, "currency": refund.currency});
    p["refunded_total"] = json!(total);
    emit(&mut tx.conn(), ctx, "payment.refunded", "payment", original.id, p).await?;
    Ok(())
}

/// A refund failed at the provider: `payment.refund_failed` and a high exception for finance.
async fn refund_failed(tx: &mut Tx, ctx: &Ctx, refund_id: Uuid) -> DomainResult<()> {
    let refund = load(&mut tx.conn(), refund_id).await?;
    let booking = bookings::load(&mut tx.conn(), refund.booking_id).await?;
    emit(&mut tx.conn(), ctx, "payment.refund_failed", "payment", refund.id, payload(&refund, &booking)).await?;
    exceptions::insert(
        &mut tx.conn(),
        ctx,
        NewException {
            kind: "payment_failed".into(),
            title: Some(format!(
                "Refund of {} {} failed: {}",
                refund.amount,
                refund.currency,
                refund.error.as_deref().unwrap_or("no reason given")
            )),
            severity: "high".into(),
            subject_type: Some("payment".into()),
            subject_id: Some(refund.id),
            assignee_id: None,
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposit_attempt_ids_are_stable_and_distinct() {
        let b = Uuid::now_v7();
        assert_eq!(attempt_id(b, 0), attempt_id(b, 0));
        assert_ne!(attempt_id(b, 0), attempt_id(b, 1));
        assert_ne!(attempt_id(b, 0), attempt_id(Uuid::now_v7(), 0));
    }

    #[test]
    fn refund_statuses_only_move_forward() {
        assert!(rank("succeeded") > rank("pending"));
        assert!(rank("pending") > rank("requested"));
        assert_eq!(refund_status("requires_action"), "pending");
    }
}
