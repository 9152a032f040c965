//! Inquiries: a client's request, qualified by an operator and converted into a booking.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::types::Json;
use uuid::Uuid;

use super::bookings::{self, NewBookingRow};
use super::clients::{self, NewClient};
use super::exceptions::{self, NewException};
use super::{Money, PageReq, authorize, check_version, emit, one_of, snapshot, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::machine::{INQUIRY, INQUIRY_SOURCES};
use crate::policy::Permission;
use crate::rows::{Booking, Inquiry, Page};
use crate::store::{Conn, Db, Tx};
use crate::{Ctx, new_id, now, q_all, q_exec, q_opt};

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
pub struct NewInquiry {
    pub source: String,
    pub client_id: Option<Uuid>,
    pub client: Option<NewClient>,
    pub requested_start: Option<DateTime<Utc>>,
    pub duration_minutes: Option<i64>,
    pub location: Option<String>,
    pub model_id: Option<Uuid>,
    pub budget: Option<Money>,
    pub preferences: Option<Value>,
    pub notes: Option<String>,
    pub assignee_id: Option<Uuid>,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
pub struct Proposal {
    pub model_id: Uuid,
    pub start_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
pub struct InquiryTransition {
    pub status: String,
    pub reason: Option<String>,
    pub proposal: Option<Proposal>,
    pub version: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
pub struct Convert {
    pub model_id: Option<Uuid>,
    pub price: Money,
    pub deposit: Option<Money>,
    pub start_at: Option<DateTime<Utc>>,
    pub duration_minutes: Option<i64>,
    pub location: Option<String>,
}

pub async fn load(conn: &mut Conn<'_>, id: Uuid) -> DomainResult<Inquiry> {
    q_opt!(conn, Inquiry, "SELECT * FROM inquiries WHERE id = $1", id)?
        .ok_or(DomainError::NotFound { entity: "inquiry" })
}

pub fn validate_duration(d: i64) -> DomainResult<()> {
    if !(15..=24 * 60).contains(&d) {
        return Err(crate::validate::refuse("duration_minutes", "duration_minutes must be between 15 and 1440"));
    }
    Ok(())
}

pub async fn create(db: &Db, ctx: &Ctx, input: NewInquiry) -> DomainResult<Inquiry> {
    authorize(db, ctx, Permission::InquiriesWrite, "inquiry").await?;
    crate::validate::input(&input)?;
    one_of(&input.source, INQUIRY_SOURCES, "source")?;
    crate::validate::opt_time("requested_start", input.requested_start)?;
    if let Some(d) = input.duration_minutes {
        validate_duration(d)?;
    }
    if let Some(b) = &input.budget {
        b.validate("budget", &db.settings().currencies)?;
    }
    if !matches!(input.preferences, None | Some(Value::Object(_))) {
        return Err(DomainError::invalid("preferences must be an object"));
    }
    let mut tx = db.begin().await?;
    let existing = match (&input.client_id, &input.client) {
        (None, Some(c)) => clients::find_duplicate(&mut tx, c).await?,
        _ => None,
    };
    let mut conn = tx.conn();
    let client = match (input.client_id, &input.client) {
        (Some(id), None) => {
            clients::load(&mut conn, id).await.map_err(|_| DomainError::NotFound { entity: "client" })?
        }
        (None, Some(c)) => match existing {
            Some(existing) => existing,
            None => clients::insert(&mut conn, ctx, c).await?,
        },

        (Some(_), Some(_)) => {
            return Err(DomainError::invalid("give either client_id or client, not both"));
        }
        (None, None) => return Err(DomainError::invalid("client_id or client is required")),
    };
    if let Some(m) = input.model_id {
        super::models::load(&mut conn, m).await.map_err(|_| DomainError::NotFound { entity: "model" })?;
    }
    if let Some(a) = input.assignee_id {
        super::users::load(&mut conn, a).await.map_err(|_| DomainError::NotFound { entity: "user" })?;
    }
    // A blocked client's inquiry is recorded (nothing is lost) but closed at once.
    let (status, lost_reason) = if client.blocked {
        ("lost", Some(format!("client is blocked: {}", client.blocked_reason.clone().unwrap_or_default())))
    } else {
        ("new", None)
    };
    let id = new_id();
    let at = now();
    q_exec!(
        &mut conn,
        "INSERT INTO inquiries (id, source, client_id, requested_start, duration_minutes, location, preferences,
             budget_amount, budget_currency, model_id, assignee_id, status, lost_reason, notes, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)",
        id,
        input.source.clone(),
        client.id,
        input.requested_start,
        input.duration_minutes,
        input.location.clone(),
        Json(input.preferences.clone().unwrap_or_else(|| json!({}))),
        input.budget.as_ref().map(|b| b.amount),
        input.budget.as_ref().map(|b| b.currency.clone()),
        input.model_id,
        input.assignee_id,
        status,
        lost_reason.clone(),
        input.notes.clone(),
        at
    )?;
    let row = load(&mut conn, id).await?;
    emit(&mut conn, ctx, "inquiry.created", "inquiry", id, event_payload(&row, &client)).await?;
    write_audit(&mut conn, ctx, "inquiry.created", "inquiry", Some(id.to_string()), None, Some(snapshot(&row))).await?;
    if client.blocked {
        // Lost like any other loss: the same two events and payload as a transition to lost.
        let payload = json!({"inquiry_id": id, "from": "new", "to": "lost", "reason": lost_reason,
                             "source": row.source, "client_id": row.client_id});
        emit(&mut conn, ctx, "inquiry.status_changed", "inquiry", id, payload.clone()).await?;
        emit(&mut conn, ctx, "inquiry.lost", "inquiry", id, payload).await?;
        exceptions::insert(
            &mut conn,
            ctx,
            NewException {
                kind: "blocked_client".into(),
                title: Some(format!("Inquiry from blocked client {}", client.name)),
                severity: "high".into(),
                subject_type: Some("inquiry".into()),
                subject_id: Some(id),
                assignee_id: None,
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(row)
}

fn event_payload(i: &Inquiry, client: &crate::rows::Client) -> Value {
    json!({
        "inquiry_id": i.id,
        "source": i.source,
        "status": i.status,
        "client_id": i.client_id,
        "client": {"id": client.id, "blocked": client.blocked, "preferred_channel": client.preferred_channel},
        "model_id": i.model_id,
        "requested_start": i.requested_start,
        "duration_minutes": i.duration_minutes,
        "budget": i.budget_amount.map(|a| json!({"amount": a, "currency": i.budget_currency})),
    })
}

pub async fn get(db: &Db, ctx: &Ctx, id: Uuid) -> DomainResult<Inquiry> {
    authorize(db, ctx, Permission::InquiriesRead, "inquiry").await?;
    load(&mut db.acquire().await?.conn(), id).await
}

pub async fn list(
    db: &Db,
    ctx: &Ctx,
    status: Option<String>,
    client_id: Option<Uuid>,
    page: PageReq,
) -> DomainResult<Page<Inquiry>> {
    authorize(db, ctx, Permission::InquiriesRead, "inquiry").await?;
    if let Some(s) = &status {
        one_of(s, INQUIRY.states, "status")?;
    }
    let rows = q_all!(
        &mut db.acquire().await?.conn(),
        Inquiry,
        "SELECT * FROM inquiries WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR client_id = $2)
             AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
        status,
        client_id,
        page.cursor,
        page.fetch()
    )?;
    Ok(Page::from_rows(rows, page.limit, |i| i.id))
}

/// Moves an inquiry through its state machine (all targets but `converted`, which only
/// `convert_to_booking` reaches).
pub async fn transition(db: &Db, ctx: &Ctx, id: Uuid, t: InquiryTransition) -> DomainResult<Inquiry> {
    authorize(db, ctx, Permission::InquiriesWrite, "inquiry").await?;
    if !INQUIRY.is_state(&t.status) {
        return Err(DomainError::invalid(format!("status must be one of: {}", INQUIRY.states.join(", "))));
    }
    let mut tx = db.begin().await?;
    let after = transition_in(&mut tx, ctx, id, &t).await?;
    tx.commit().await?;
    Ok(after)
}

/// The inquiry transition inside a caller's transaction.
pub async fn transition_in(tx: &mut Tx, ctx: &Ctx, id: Uuid, t: &InquiryTransition) -> DomainResult<Inquiry> {
    crate::validate::input(t)?;
    crate::validate::opt_time("proposal.start_at", t.proposal.as_ref().map(|p| p.start_at))?;
    if !INQUIRY.is_state(&t.status) {
        return Err(DomainError::invalid(format!("status must be one of: {}", INQUIRY.states.join(", "))));
    }
    let mut conn = tx.conn();
    let before = load(&mut conn, id).await?;
    check_version("inquiry", t.version, before.version)?;
    INQUIRY.check(&before.status, &t.status)?;
    let mut proposal = before.proposal.clone();
    let mut lost_reason = before.lost_reason.clone();
    match t.status.as_str() {
        "converted" => {
            return Err(DomainError::GuardFailed {
                guard: "convert_to_booking",
                message: "an inquiry is converted only by POST /inquiries/{id}/convert-to-booking".into(),
            });
        }
        "awaiting_client" => {
            let p = match (&t.proposal, before.model_id, before.requested_start) {
                (Some(p), _, _) => json!({"model_id": p.model_id, "start_at": p.start_at}),
                (None, Some(m), Some(s)) => json!({"model_id": m, "start_at": s}),
                _ => {
                    return Err(DomainError::GuardFailed {
                        guard: "proposal_recorded",
                        message: "a proposal (model_id and start_at) is required to await the client".into(),
                    });
                }
            };
            if let Some(p) = &t.proposal {
                super::models::load(&mut conn, p.model_id)
                    .await
                    .map_err(|_| DomainError::NotFound { entity: "model" })?;
            }
            proposal = Some(Json(p));
        }
        "lost" => {
            lost_reason = Some(super::require_text(t.reason.as_deref(), "reason")?);
        }
        _ => {}
    }
    let n = q_exec!(
        &mut conn,
        "UPDATE inquiries SET status = $1, proposal = $2, lost_reason = $3, updated_at = $4, version = version + 1
         WHERE id = $5 AND version = $6 AND status = $7",
        t.status.clone(),
        proposal,
        lost_reason,
        now(),
        id,
        before.version,
        before.status.clone()
    )?;
    if n == 0 {
        return Err(DomainError::VersionConflict { entity: "inquiry", current_version: None });
    }
    let after = load(&mut conn, id).await?;
    let payload = json!({"inquiry_id": id, "from": before.status, "to": after.status, "reason": t.reason, "source": after.source, "client_id": after.client_id});
    emit(&mut conn, ctx, "inquiry.status_changed", "inquiry", id, payload.clone()).await?;
    if after.status == "lost" {
        emit(&mut conn, ctx, "inquiry.lost", "inquiry", id, payload).await?;
    }
    // The SLA clocks of its tasks stop while the inquiry waits on the client.
    if after.status == "awaiting_client" || before.status == "awaiting_client" {
        crate::sla::pause_for_subject(&mut conn, ctx, "inquiry", id, after.status == "awaiting_client").await?;
    }

    write_audit(
        &mut conn,
        ctx,
        "inquiry.status_changed",
        "inquiry",
        Some(id.to_string()),
        Some(snapshot(&before)),
        Some(snapshot(&after)),
    )
    .await?;
    Ok(after)
}

/// awaiting_deposit → converted, creating the booking (pending) in the same transaction.
pub async fn convert_to_booking(db: &Db, ctx: &Ctx, id: Uuid, c: Convert) -> DomainResult<Booking> {
    authorize(db, ctx, Permission::InquiriesWrite, "inquiry").await?;
    authorize(db, ctx, Permission::BookingsWrite, "booking").await?;
    crate::validate::input(&c)?;
    crate::validate::opt_time("start_at", c.start_at)?;
    c.price.validate("price", &db.settings().currencies)?;
    if let Some(d) = &c.deposit {
        d.validate("deposit", &db.settings().currencies)?;
    }
    let mut tx = db.begin().await?;
    let before = load(&mut tx.conn(), id).await?;
    INQUIRY.check(&before.status, "converted")?;
    let proposal = before.proposal.as_ref().map(|p| p.0.clone()).unwrap_or(Value::Null);
    let proposed_model = proposal.get("model_id").and_then(|v| v.as_str()).and_then(|s| Uuid::parse_str(s).ok());
    let proposed_start = proposal
        .get("start_at")
        .and_then(|v| v.as_str())
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc));
    let model_id = c
        .model_id
        .or(proposed_model)
        .or(before.model_id)
        .ok_or_else(|| DomainError::invalid("model_id is required: the inquiry names no model"))?;
    let start_at = c
        .start_at
        .or(proposed_start)
        .or(before.requested_start)
        .ok_or_else(|| DomainError::invalid("start_at is required: the inquiry has no requested start"))?;
    let duration = c
        .duration_minutes
        .or(before.duration_minutes)
        .ok_or_else(|| DomainError::invalid("duration_minutes is required: the inquiry has none"))?;
    let deposit = c.deposit.clone().unwrap_or(Money { amount: 0, currency: c.price.currency.clone() });
    let booking = bookings::insert(
        &mut tx,
        ctx,
        NewBookingRow {
            client_id: before.client_id,
            model_id,
            inquiry_id: Some(id),
            start_at,
            duration_minutes: duration,
            location: c.location.clone().or(before.location.clone()),
            price: c.price.clone(),
            deposit,
            status: "pending",
            assignee_id: before.assignee_id,
        },
    )
    .await?;
    let mut conn = tx.conn();
    let n = q_exec!(
        &mut conn,
        "UPDATE inquiries SET status = 'converted', booking_id = $1, updated_at = $2, version = version + 1
         WHERE id = $3 AND version = $4 AND status = $5",
        booking.id,
        now(),
        id,
        before.version,
        before.status.clone()
    )?;
    if n == 0 {
        return Err(DomainError::VersionConflict { entity: "inquiry", current_version: None });
    }
    let after = load(&mut conn, id).await?;
    let payload = json!({"inquiry_id": id, "from": before.status, "to": "converted", "booking_id": booking.id, "client_id": after.client_id});
    emit(&mut conn, ctx, "inquiry.status_changed", "inquiry", id, payload.clone()).await?;
    emit(&mut conn, ctx, "inquiry.converted", "inquiry", id, payload).await?;
    write_audit(
        &mut conn,
        ctx,
        "inquiry.converted",
        "inquiry",
        Some(id.to_string()),
        Some(snapshot(&before)),
        Some(snapshot(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(booking)
}
