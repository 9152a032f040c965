//! Virel's job kinds, one type each. `for_event` is the one place that decides which jobs a
//! committed domain event causes, and on which queue they run.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::kind::{Job, JobCx, JobError, JobKind, Queue, Registry, Retry, RetrySettings};
use crate::error::DomainResult;
use crate::rows::DomainEvent;
use crate::{Ctx, automation, sla};

/// Every built-in kind, registered.
pub fn registry() -> Registry {
    let mut r = Registry::empty();
    r.register::<Event>()
        .register::<SendNotification>()
        .register::<DelayedAction>()
        .register::<SlaSweep>()
        .register::<BookingClock>()
        .register::<Retention>()
        .register::<Custom>()
        .register::<super::payments::StripeEvent>()
        .register::<super::payments::StripeRefund>()
        .register::<super::payments::StripeReconcile>()
        .register::<super::availability::AvailabilityExpand>()
        .register::<super::webhooks::WebhookDelivery>();
    r
}

/// Who listens to committed events, read once per relay batch (`outbox::Batch::listeners`):
/// the triggers of the enabled automation rules and the enabled webhook subscriptions.
#[derive(Clone, Debug, Default)]
pub struct Listeners {
    pub rule_triggers: std::collections::HashSet<String>,
    pub subscribers: crate::webhooks::Subscribers,
}

/// The jobs a committed event causes: its automation rules (only when an enabled rule has
/// its type as trigger: a rule acts on the events relayed after it is saved), for a queued
/// notification the send itself, the payment jobs, and one delivery per enabled webhook
/// subscription that wants its type.
pub fn for_event(e: &DomainEvent, listeners: &Listeners) -> Vec<Job> {
    let mut jobs = Vec::new();
    if listeners.rule_triggers.contains(&e.kind) {
        jobs.push(Job::new(&Event { event_id: e.id, event_type: e.kind.clone() }));
    }
    if e.kind == "notification.queued" {
        let critical = e.payload.0.get("critical").and_then(Value::as_bool).unwrap_or(false);
        jobs.push(Job::new(&SendNotification { notification_id: e.subject_id, critical }));
    }
    jobs.extend(super::payments::for_event(e));
    jobs.extend(super::webhooks::for_event(e, &listeners.subscribers));
    jobs
}

/// React to a domain event: run the automation rules that match it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub event_id: Uuid,
    pub event_type: String,
}

impl JobKind for Event {
    const NAME: &'static str = "event";
    const QUEUE: Queue = Queue::Ops;

    /// SLA escalations, bookings about to start and safety checks are urgent.
    fn queue(&self) -> Queue {
        let t = self.event_type.as_str();
        if matches!(t, "task.sla_breached" | "booking.starting_soon") || t.starts_with("safety_check") {
            Queue::Critical
        } else {
            Queue::Ops
        }
    }

    async fn run(self, cx: JobCx) -> Result<(), JobError> {
        let out = automation::process_event(&cx.db, self.event_id).await?;
        if out.rules_matched > 0 || out.loop_stopped {
            tracing::debug!(event = %self.event_id, ?out, "automation");
        }
        Ok(())
    }
}

/// Send one queued notification through its channel.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SendNotification {
    pub notification_id: Uuid,
    /// Urgent (a missed safety check): sent from the critical queue.
    #[serde(default)]
    pub critical: bool,
}

impl JobKind for SendNotification {
    const NAME: &'static str = "notification";
    const QUEUE: Queue = Queue::Ops;

    fn retry(settings: &RetrySettings) -> Retry {
        settings.notification()
    }

    fn idempotency_key(&self) -> Option<String> {
        Some(format!("notification-{}", self.notification_id))
    }

    fn queue(&self) -> Queue {
        if self.critical { Queue::Critical } else { Queue::Ops }
    }

    async fn run(self, cx: JobCx) -> Result<(), JobError> {
        cx.notifier.send(&cx.db, self.notification_id).await
    }

    /// Out of attempts (a provider down for good): the notification is `failed` and raises
    /// its own `notification_failed` exception, with the reason.
    async fn on_dead(self, cx: JobCx, error: String) -> DomainResult<bool> {
        crate::commands::notifications::record_failure(&cx.db, self.notification_id, &error, true).await?;
        Ok(false)
    }
}

/// A delayed automation action that has come due (claimed by the scheduler).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DelayedAction {
    pub execution_id: Uuid,
}

impl JobKind for DelayedAction {
    const NAME: &'static str = "delayed_action";
    const QUEUE: Queue = Queue::Ops;

    async fn run(self, cx: JobCx) -> Result<(), JobError> {
        automation::run_delayed(&cx.db, self.execution_id).await?;
        Ok(())
    }
}

/// SLA: at-risk warnings and one escalation level per overdue item.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SlaSweep {}

impl JobKind for SlaSweep {
    const NAME: &'static str = "sla_sweep";
    const QUEUE: Queue = Queue::Critical;

    async fn run(self, cx: JobCx) -> Result<(), JobError> {
        let out = sla::sweep(&cx.db).await?;
        metrics::counter!("virel_sla_warnings_total").increment(out.warned as u64);
        // The first level is the breach itself; every level is an escalation.
        metrics::counter!("virel_sla_breaches_total").increment(out.escalated[0] as u64);
        for (level, n) in ["1", "2", "3"].into_iter().zip(out.escalated) {
            metrics::counter!("virel_sla_escalations_total", "level" => level).increment(n as u64);
        }
        if out.warned > 0 || out.escalated.iter().any(|n| *n > 0) {
            tracing::info!(?out, "SLA sweep");
        }
        Ok(())
    }
}

/// Bookings starting soon, and the safety checks at their start and end.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BookingClock {}

impl JobKind for BookingClock {
    const NAME: &'static str = "booking_clock";
    const QUEUE: Queue = Queue::Critical;

    async fn run(self, cx: JobCx) -> Result<(), JobError> {
        let out = sla::booking_clock(&cx.db).await?;
        if out.starting_soon > 0 || out.safety_checks > 0 {
            tracing::info!(?out, "booking clock");
        }
        Ok(())
    }
}

/// Housekeeping: purge what is past keeping, and forget finished queue entries.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Retention {}

impl JobKind for Retention {
    const NAME: &'static str = "retention";
    const QUEUE: Queue = Queue::Heavy;

    async fn run(self, cx: JobCx) -> Result<(), JobError> {
        crate::commands::maintenance::purge_expired(&cx.db, &Ctx::system()).await?;
        let n = cx.queues.vacuum(Duration::from_secs(3600)).await?;
        tracing::info!(finished_jobs_forgotten = n, "retention");
        Ok(())
    }
}

/// A job for a handler registered by name (extensions, diagnostics).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Custom {
    pub name: String,
    #[serde(default)]
    pub payload: Value,
}

impl JobKind for Custom {
    const NAME: &'static str = "custom";
    const QUEUE: Queue = Queue::Ops;

    fn label(&self) -> String {
        self.name.clone()
    }

    async fn run(self, cx: JobCx) -> Result<(), JobError> {
        match cx.custom.get(&self.name) {
            Some(h) => h(self.payload).await.map_err(JobError::Transient),
            None => Err(JobError::Permanent(format!("no handler registered for job kind {}", self.name))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_json_round_trips() {
        let j = Job::new(&Event { event_id: Uuid::now_v7(), event_type: "inquiry.created".into() });
        let v = serde_json::to_value(&j).unwrap();
        assert_eq!(v["kind"], "event");
        assert_eq!(v["queue"], "ops");
        let back: Job = serde_json::from_value(v).unwrap();
        assert_eq!(back, j);
        assert_eq!(back.args::<Event>().unwrap().event_type, "inquiry.created");
        // A kind without fields still round-trips.
        let j = Job::new(&SlaSweep {});
        assert_eq!(j.queue, Queue::Critical);
        let back: Job = serde_json::from_value(serde_json::to_value(&j).unwrap()).unwrap();
        assert!(back.args::<SlaSweep>().is_ok());
    }

    #[test]
    fn urgent_events_go_on_the_critical_queue() {
        let q = |t: &str| Event { event_id: Uuid::nil(), event_type: t.into() }.queue();
        for t in ["task.sla_breached", "booking.starting_soon", "safety_check.due", "safety_check_missed"] {
            assert_eq!(q(t), Queue::Critical, "{t}");
        }
        for t in ["inquiry.created", "booking.confirmed", "notification.queued"] {
            assert_eq!(q(t), Queue::Ops, "{t}");
        }
    }

    #[test]
    fn notifications_get_their_own_attempts() {
        let s = RetrySettings { attempts_default: 5, attempts_notification: 3, ..Default::default() };
        let r = registry();
        assert_eq!(r.retry(SendNotification::NAME, &s).attempts, 3);
        assert_eq!(r.retry(Event::NAME, &s).attempts, 5);
    }
}
