//! Incoming Stripe webhooks: verified over the raw bytes before anything is read, kept in
//! `webhooks_in` unique on Stripe's event id (a replay does nothing), processed on the
//! critical queue, once per event and in any order. Reconciliation feeds missed events in
//! through the same door.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::FromRow;
use uuid::Uuid;

use super::exceptions::{self, NewException};
use super::payments::{self, apply_refund, by_provider_ref, set_status};
use super::{PageReq, authorize, emit, one_of};
use crate::commands::bookings;
use crate::error::{DomainError, DomainResult};
use crate::payments::{Payments, Refund, WebhookSecrets};
use crate::policy::Permission;
use crate::rows::{Page, Payment};
use crate::store::{Db, LockTable, Tx};
use crate::{Actor, Ctx, new_id, now, q_all, q_exec, q_opt};

pub const STATUSES: &[&str] = &["received", "processed", "unmatched", "ignored", "rejected"];

/// How many rejected deliveries within an hour make an operator look (`webhook_rejected`).
const REJECTIONS_BEFORE_EXCEPTION: i64 = 2;
/// What is kept of a rejected delivery's body: enough to look at, not a way to fill the disk.
const REJECTED_BODY_KEPT: usize = 16 * 1024;

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct WebhookIn {
    pub id: Uuid,
    pub provider: String,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub payload: String,
    pub status: String,
    pub source: String,
    pub error: Option<String>,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
}

/// What the webhook endpoint answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Received {
    /// Stored, to be processed on the critical queue.
    Accepted(Uuid),
    /// Seen before: acknowledged, nothing done.
    Replay,
    /// Not from Stripe (or stale): 400.
    Rejected(&'static str),
}

fn ctx() -> Ctx {
    Ctx::new(Actor::Webhook("stripe"))
}

/// `POST /webhooks/stripe`. `now` is Unix seconds.
pub async fn receive_stripe(
    db: &Db,
    secrets: Option<&WebhookSecrets>,
    signature: Option<&str>,
    raw: &[u8],
    now_secs: i64,
) -> DomainResult<Received> {
    let Some(secrets) = secrets else {
        return Err(DomainError::Unavailable("Stripe webhooks are disabled: no webhook secret is configured".into()));
    };
    let verdict = match signature {
        None => Err(crate::payments::SignatureError::Missing),
        Some(h) => secrets.verify(h, raw, now_secs),
    };
    if let Err(e) = verdict {
        reject(db, raw, e.as_str()).await?;
        return Ok(Received::Rejected(e.as_str()));
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Head {
        id: String,
        #[serde(rename = "type")]
        kind: String,
    }
    let head: Head = match serde_json::from_slice(raw) {
        Ok(h) => h,
        Err(_) => {
            reject(db, raw, "signed, but not a JSON event").await?;
            return Ok(Received::Rejected("the body is not a Stripe event"));
        }
    };
    if head.id.is_empty() || head.kind.is_empty() {
        reject(db, raw, "signed, but without an event id or type").await?;
        return Ok(Received::Rejected("the body is not a Stripe event"));
    }
    let text = String::from_utf8_lossy(raw).into_owned();
    match store(db, &head.id, &head.kind, text, "webhook").await? {
        Some(id) => Ok(Received::Accepted(id)),
        None => Ok(Received::Replay),
    }
}

/// Keeps a verified event (unless its id is known) and its `webhook.received` event, which
/// the outbox turns into the processing job on the critical queue. None: seen before.
async fn store(db: &Db, event_id: &str, event_type: &str, payload: String, source: &str) -> DomainResult<Option<Uuid>> {
    let id = new_id();
    let mut tx = db.begin().await?;
    let n = q_exec!(
        &mut tx.conn(),
        "INSERT INTO webhooks_in (id, provider, event_id, event_type, payload, status, source, received_at)
         VALUES ($1, 'stripe', $2, $3, $4, 'received', $5, $6)
         ON CONFLICT (provider, event_id) WHERE event_id IS NOT NULL DO NOTHING",
        id,
        event_id.to_string(),
        event_type.to_string(),
        payload,
        source.to_string(),
        now()
    )?;
    if n == 0 {
        return Ok(None);
    }
    emit(
        &mut tx.conn(),
        &ctx(),
        "webhook.received",
        "webhook",
        id,
        json!({"webhook_id": id, "provider": "stripe", "event_id": event_id, "event_type": event_type, "source": source}),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(id))
}

/// Keeps a refused delivery (nothing in it trusted: no event id, no type) and, when refusals
/// repeat within the hour, opens one `webhook_rejected` exception.
async fn reject(db: &Db, raw: &[u8], why: &str) -> DomainResult<()> {
    let kept = &raw[..raw.len().min(REJECTED_BODY_KEPT)];
    let mut tx = db.begin().await?;
    let at = now();
    q_exec!(
        &mut tx.conn(),
        "INSERT INTO webhooks_in (id, provider, payload, status, source, error, received_at)
         VALUES ($1, 'stripe', $2, 'rejected', 'webhook', $3, $4)",
        new_id(),
        String::from_utf8_lossy(kept).into_owned(),
        why.to_string(),
        at
    )?;
    #[derive(FromRow)]
    struct N {
        n: i64,
    }
    let recent = q_opt!(
        &mut tx.conn(),
        N,
        "SELECT COUNT(*) AS n FROM webhooks_in WHERE provider = 'stripe' AND status = 'rejected' AND received_at > $1",
        at - Duration::hours(1)
    )?
    .map(|r| r.n)
    .unwrap_or(0);
    if recent >= REJECTIONS_BEFORE_EXCEPTION {
        let open = q_opt!(
            &mut tx.conn(),
            N,
            "SELECT COUNT(*) AS n FROM exceptions WHERE type = 'webhook_rejected' AND status IN ('open', 'acknowledged')"
        )?
        .map(|r| r.n)
        .unwrap_or(0);
        if open == 0 {
            exceptions::insert(
                &mut tx.conn(),
                &ctx(),
                NewException {
                    kind: "webhook_rejected".into(),
                    title: Some(format!(
                        "Stripe webhooks are being refused ({recent} in the last hour; last: {why}): check STRIPE_WEBHOOK_SECRET"
                    )),
                    severity: "high".into(),
                    ..Default::default()
                },
            )
            .await?;
        }
    }
    tracing::warn!(reason = why, "Stripe webhook rejected");
    tx.commit().await
}

/// What processing made of an event.
enum Outcome {
    Processed,
    Unmatched(String),
    Ignored,
}

/// The processing job: applies one stored event, once (a second run finds it done).
pub async fn process(db: &Db, webhook_id: Uuid) -> DomainResult<()> {
    let mut tx = db.begin().await?;
    // Claims the row (PostgreSQL holds its lock until commit; SQLite serialises writers).
    let n = q_exec!(
        &mut tx.conn(),
        "UPDATE webhooks_in SET processed_at = $1 WHERE id = $2 AND status IN ('received', 'unmatched')",
        now(),
        webhook_id
    )?;
    if n == 0 {
        return Ok(());
    }
    let row = q_opt!(&mut tx.conn(), WebhookIn, "SELECT * FROM webhooks_in WHERE id = $1", webhook_id)?
        .ok_or(DomainError::NotFound { entity: "webhook" })?;
    let event: Value = serde_json::from_str(&row.payload).unwrap_or(Value::Null);
    let outcome = apply(&mut tx, &event).await?;
    let (status, error) = match outcome {
        Outcome::Processed => ("processed", None),
        Outcome::Unmatched(why) => ("unmatched", Some(why)),
        Outcome::Ignored => ("ignored", None),
    };
    q_exec!(
        &mut tx.conn(),
        "UPDATE webhooks_in SET status = $1, error = $2, processed_at = $3 WHERE id = $4",
        status,
        error.clone(),
        now(),
        webhook_id
    )?;
    tx.commit().await?;
    if let Some(e) = error {
        tracing::info!(webhook = %webhook_id, event = ?row.event_id, reason = %e, "Stripe event kept unmatched");
    }
    Ok(())
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

/// The payment a PaymentIntent event is about: by the PaymentIntent id, else by the payment
/// id Virel put in its metadata.
async fn payment_for_intent(tx: &mut Tx, obj: &Value) -> DomainResult<Option<Payment>> {
    if let Some(pi) = str_at(obj, &["id"])
        && let Some(p) = by_provider_ref(&mut tx.conn(), pi).await?
    {
        return Ok(Some(p));
    }
    let Some(pid) = str_at(obj, &["metadata", "payment_id"]).and_then(|s| Uuid::parse_str(s).ok()) else {
        return Ok(None);
    };
    Ok(q_opt!(&mut tx.conn(), Payment, "SELECT * FROM payments WHERE id = $1 AND kind <> 'refund'", pid)?)
}

async fn apply(tx: &mut Tx, event: &Value) -> DomainResult<Outcome> {
    let kind = str_at(event, &["type"]).unwrap_or_default();
    let obj = event.pointer("/data/object").cloned().unwrap_or(Value::Null);
    let ctx = ctx();
    match kind {
        "payment_intent.succeeded"
        | "payment_intent.payment_failed"
        | "payment_intent.canceled"
        | "payment_intent.processing" => {
            let Some(p) = payment_for_intent(tx, &obj).await? else {
                return Ok(Outcome::Unmatched(format!(
                    "no payment has PaymentIntent {}",
                    str_at(&obj, &["id"]).unwrap_or("?")
                )));
            };
            tx.lock_row(LockTable::Payments, p.id).await?;
            let p = payments::load(&mut tx.conn(), p.id).await?;
            // Stripe does not promise order: never move back from a final state.
            let (next, event_type, error) = match kind {
                "payment_intent.succeeded" if p.status != "succeeded" && p.status != "refunded" => {
                    ("succeeded", "payment.succeeded", None)
                }
                "payment_intent.payment_failed"
                    if matches!(p.status.as_str(), "requested" | "pending" | "processing" | "failed") =>
                {
                    let err = str_at(&obj, &["last_payment_error", "message"])
                        .or(str_at(&obj, &["last_payment_error", "decline_code"]))
                        .unwrap_or("the payment failed")
                        .to_string();
                    ("failed", "payment.failed", Some(err))
                }
                "payment_intent.canceled"
                    if matches!(p.status.as_str(), "requested" | "pending" | "processing" | "failed") =>
                {
                    ("canceled", "payment.canceled", None)
                }
                "payment_intent.processing" if matches!(p.status.as_str(), "requested" | "pending" | "failed") => {
                    ("processing", "payment.processing", None)
                }
                _ => return Ok(Outcome::Processed),
            };
            let after = set_status(tx, &ctx, &p, next, error).await?;
            let booking = bookings::load(&mut tx.conn(), after.booking_id).await?;
            emit(&mut tx.conn(), &ctx, event_type, "payment", after.id, payments::payload(&after, &booking)).await?;
            Ok(Outcome::Processed)
        }
        "charge.refunded" => {
            let mut matched = false;
            for r in obj.pointer("/refunds/data").and_then(Value::as_array).cloned().unwrap_or_default() {
                let r: Refund = serde_json::from_value(r).unwrap_or_default();
                if !r.id.is_empty() {
                    matched |= apply_refund(tx, &ctx, None, &r).await?;
                }
            }
            let known = match str_at(&obj, &["payment_intent"]) {
                Some(pi) => by_provider_ref(&mut tx.conn(), pi).await?.is_some(),
                None => false,
            };
            if matched || known {
                Ok(Outcome::Processed)
            } else {
                Ok(Outcome::Unmatched("no payment has this charge's PaymentIntent".into()))
            }
        }
        "refund.created" | "refund.updated" | "refund.failed" => {
            let r: Refund = serde_json::from_value(obj).unwrap_or_default();
            if apply_refund(tx, &ctx, None, &r).await? {
                Ok(Outcome::Processed)
            } else {
                Ok(Outcome::Unmatched(format!("no refund or payment matches refund {}", r.id)))
            }
        }
        "charge.dispute.created" => {
            let payment = match str_at(&obj, &["payment_intent"]) {
                Some(pi) => by_provider_ref(&mut tx.conn(), pi).await?,
                None => None,
            };
            let amount = obj.get("amount").and_then(Value::as_i64).unwrap_or(0);
            let currency = str_at(&obj, &["currency"]).unwrap_or("").to_ascii_uppercase();
            let reason = str_at(&obj, &["reason"]).unwrap_or("no reason given");
            exceptions::insert(
                &mut tx.conn(),
                &ctx,
                NewException {
                    kind: "payment_failed".into(),
                    title: Some(format!("Dispute opened at Stripe: {amount} {currency}, {reason}")),
                    severity: "high".into(),
                    subject_type: payment.as_ref().map(|_| "payment".to_string()),
                    subject_id: payment.as_ref().map(|p| p.id),
                    assignee_id: None,
                },
            )
            .await?;
            Ok(Outcome::Processed)
        }
        _ => Ok(Outcome::Ignored),
    }
}

/// The reconciliation job: lists Stripe's recent events and stores (then processes) any the
/// webhook never delivered; retries events kept unmatched in the last day. Returns how many
/// events were new.
pub async fn reconcile(db: &Db, payments: &Payments, window: Duration) -> DomainResult<usize> {
    let Some(provider) = payments.provider.as_ref() else { return Ok(0) };
    let since = (Utc::now() - window).timestamp();
    let mut after: Option<String> = None;
    let mut new = Vec::new();
    // At most 20 pages of 100: a backlog larger than that waits for the next run.
    for _ in 0..20 {
        let page = provider.list_events(since, after.clone()).await?;
        for e in &page.events {
            let (Some(id), Some(kind)) = (str_at(e, &["id"]), str_at(e, &["type"])) else { continue };
            after = Some(id.to_string());
            if let Some(w) = store(db, id, kind, e.to_string(), "reconciliation").await? {
                new.push(w);
            }
        }
        if !page.has_more || page.events.is_empty() {
            break;
        }
    }
    // Oldest first, the order Stripe made them in.
    for id in new.iter().rev() {
        process(db, *id).await?;
    }
    #[derive(FromRow)]
    struct Id {
        id: Uuid,
    }
    let unmatched = q_all!(
        &mut db.acquire().await?.conn(),
        Id,
        "SELECT id FROM webhooks_in WHERE status = 'unmatched' AND received_at > $1 ORDER BY id LIMIT 500",
        now() - Duration::days(1)
    )?;
    for u in unmatched {
        process(db, u.id).await?;
    }
    if !new.is_empty() {
        tracing::info!(events = new.len(), "reconciliation found Stripe events the webhook never delivered");
    }
    Ok(new.len())
}

/// `GET /webhooks/stripe/events`: what arrived, for finance and operators (unmatched and
/// rejected ones stay visible here).
pub async fn list(db: &Db, ctx: &Ctx, status: Option<String>, page: PageReq) -> DomainResult<Page<WebhookIn>> {
    authorize(db, ctx, Permission::PaymentsRead, "webhook").await?;
    if let Some(s) = &status {
        one_of(s, STATUSES, "status")?;
    }
    let rows = q_all!(
        &mut db.acquire().await?.conn(),
        WebhookIn,
        "SELECT * FROM webhooks_in WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        status,
        page.cursor,
        page.fetch()
    )?;
    Ok(Page::from_rows(rows, page.limit, |w| w.id))
}
