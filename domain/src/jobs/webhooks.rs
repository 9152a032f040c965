//! The outgoing-webhook job kind: one delivery of one domain event to one subscriber, on the
//! ops queue, signed, through the `WebhookSender` port (the workers' HTTP client, which checks
//! the resolved address and connects to the address it checked).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::kind::{Job, JobCx, JobError, JobKind, Queue};
use crate::error::DomainResult;
use crate::rows::DomainEvent;
use crate::webhooks::{self, EVENT_ID_HEADER, EVENT_TYPE_HEADER, OutgoingRequest, SIGNATURE_HEADER, SendError};
use crate::{q_opt, webhooks::Subscribers};

/// One delivery job per enabled subscription that wants the event's type.
pub fn for_event(e: &DomainEvent, subscribers: &Subscribers) -> Vec<Job> {
    subscribers
        .wanting(&e.kind)
        .map(|subscription_id| Job::new(&WebhookDelivery { subscription_id, event_id: e.id }))
        .collect()
}

/// POST one event to one subscriber. Any 2xx answer delivers it; another answer or no answer
/// is retried with the standard backoff; a refused target is dead at once.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WebhookDelivery {
    pub subscription_id: Uuid,
    pub event_id: Uuid,
}

impl JobKind for WebhookDelivery {
    const NAME: &'static str = "webhook_delivery";
    const QUEUE: Queue = Queue::Ops;

    fn idempotency_key(&self) -> Option<String> {
        Some(format!("webhook-{}-{}", self.subscription_id, self.event_id))
    }

    async fn run(self, cx: JobCx) -> Result<(), JobError> {
        // Deleted or disabled since the event: nothing to send.
        let Some(sub) = webhooks::find(&cx.db, self.subscription_id).await? else { return Ok(()) };
        if !sub.enabled {
            return Ok(());
        }
        let event = q_opt!(
            &mut cx.db.acquire().await?.conn(),
            DomainEvent,
            "SELECT * FROM domain_events WHERE id = $1",
            self.event_id
        )?
        .ok_or_else(|| JobError::Permanent(format!("event {} no longer exists", self.event_id)))?;
        let delivery = webhooks::start_delivery(&cx.db, &sub, &event).await?;
        if delivery.status == "delivered" {
            return Ok(());
        }
        let body = serde_json::to_vec(&webhooks::body_of(&event))
            .map_err(|e| JobError::Permanent(format!("cannot encode the event: {e}")))?;
        let t = crate::now().timestamp();
        let req = OutgoingRequest {
            url: sub.url.clone(),
            headers: vec![
                (SIGNATURE_HEADER.into(), webhooks::signature_header(&sub.secret, t, &body)),
                (EVENT_ID_HEADER.into(), event.id.to_string()),
                (EVENT_TYPE_HEADER.into(), event.kind.clone()),
                ("Content-Type".into(), "application/json".into()),
                ("User-Agent".into(), "Virel-Webhooks/1".into()),
            ],
            body,
            allow_private: cx.db.settings().webhook_allow_private,
        };
        match cx.webhooks.post(req).await {
            Ok(code) if (200..300).contains(&code) => {
                webhooks::record_attempt(&cx.db, delivery.id, "delivered", Some(code), None).await?;
                Ok(())
            }
            Ok(code) => {
                let msg = format!("the subscriber answered HTTP {code}");
                webhooks::record_attempt(&cx.db, delivery.id, "retrying", Some(code), Some(&msg)).await?;
                Err(JobError::Transient(msg))
            }
            Err(SendError::Refused(m)) => {
                let msg = format!("refused: {m}");
                webhooks::record_attempt(&cx.db, delivery.id, "failed", None, Some(&msg)).await?;
                Err(JobError::Permanent(msg))
            }
            Err(SendError::Transport(m)) => {
                webhooks::record_attempt(&cx.db, delivery.id, "retrying", None, Some(&m)).await?;
                Err(JobError::Transient(m))
            }
        }
    }

    /// Out of attempts (or refused): the delivery is `failed` and a `webhook_failed`
    /// exception tells the OWNER, instead of the generic `job_failed`.
    async fn on_dead(self, cx: JobCx, error: String) -> DomainResult<bool> {
        webhooks::delivery_dead(&cx.db, self.subscription_id, self.event_id, &error).await?;
        Ok(false)
    }
}
