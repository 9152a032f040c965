//! The payment job kinds, all on the critical queue: processing a stored Stripe event, making
//! a refund at Stripe, and the reconciliation that lists Stripe's recent events.

use chrono::Duration;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::kind::{Job, JobCx, JobError, JobKind, Queue};
use crate::commands::{payments, webhooks_in};
use crate::error::{DomainError, DomainResult};
use crate::rows::DomainEvent;

/// The jobs payment events cause (added to the automation job by `kinds::for_event`).
pub fn for_event(e: &DomainEvent) -> Vec<Job> {
    match e.kind.as_str() {
        "webhook.received" => vec![Job::new(&StripeEvent { webhook_id: e.subject_id })],
        "payment.refund_requested" => vec![Job::new(&StripeRefund { refund_id: e.subject_id })],
        _ => vec![],
    }
}

/// A lost race on a payment row is worth another go; the rest as usual.
fn job_error(e: DomainError) -> JobError {
    match e {
        DomainError::VersionConflict { .. } | DomainError::Duplicate(_) => JobError::Transient(e.to_string()),
        other => other.into(),
    }
}

/// Apply one stored Stripe event (idempotent per event id: a second run finds it done).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StripeEvent {
    pub webhook_id: Uuid,
}

impl JobKind for StripeEvent {
    const NAME: &'static str = "stripe_event";
    const QUEUE: Queue = Queue::Critical;

    async fn run(self, cx: JobCx) -> Result<(), JobError> {
        webhooks_in::process(&cx.db, self.webhook_id).await.map_err(job_error)
    }
}

/// Make a requested refund at Stripe. The refund's id is the idempotency key, so however
/// often the job runs, Stripe makes one refund.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StripeRefund {
    pub refund_id: Uuid,
}

impl JobKind for StripeRefund {
    const NAME: &'static str = "stripe_refund";
    const QUEUE: Queue = Queue::Critical;

    fn idempotency_key(&self) -> Option<String> {
        Some(format!("virel-refund-{}", self.refund_id))
    }

    async fn run(self, cx: JobCx) -> Result<(), JobError> {
        match payments::run_refund(&cx.db, &cx.payments, self.refund_id).await {
            Ok(()) => Ok(()),
            Err(DomainError::Unavailable(m)) => Err(JobError::Transient(m)),
            Err(e) => Err(job_error(e)),
        }
    }

    async fn on_dead(self, _cx: JobCx, error: String) -> DomainResult<bool> {
        tracing::error!(refund = %self.refund_id, %error, "the refund could not be made at Stripe");
        Ok(true)
    }
}

/// List Stripe's events of the last three days and process any the webhook never delivered.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StripeReconcile {}

impl JobKind for StripeReconcile {
    const NAME: &'static str = "stripe_reconcile";
    const QUEUE: Queue = Queue::Critical;

    async fn run(self, cx: JobCx) -> Result<(), JobError> {
        match webhooks_in::reconcile(&cx.db, &cx.payments, Duration::days(3)).await {
            Ok(_) => Ok(()),
            Err(DomainError::Unavailable(m)) => Err(JobError::Transient(m)),
            Err(e) => Err(job_error(e)),
        }
    }
}
