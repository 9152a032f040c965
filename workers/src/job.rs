//! A job: what to do, on which queue, how many attempts it gets and how long to wait between
//! them. Everything a reader needs about a job kind stands in `JobKind`'s impl.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Job {
    pub id: Uuid,
    #[serde(flatten)]
    pub kind: JobKind,
    /// Attempts already made (0 on the first run).
    #[serde(default)]
    pub attempt: u32,
    pub enqueued_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobKind {
    /// React to a domain event: automation rules, and the event's own follow-up (a queued
    /// notification is sent).
    Event { event_id: Uuid, event_type: String },
    /// A delayed automation action that has come due.
    DelayedAction { execution_id: Uuid },
    /// Housekeeping: purge what is past keeping.
    Retention,
    /// SLA: at-risk warnings and one escalation level per overdue task.
    SlaSweep,
    /// Bookings starting soon, and the safety checks at their start and end.
    BookingClock,
    /// A job for a handler registered by name (extensions, diagnostics).
    Custom {
        name: String,
        #[serde(default)]
        payload: Value,
    },
}

impl JobKind {
    pub fn name(&self) -> &str {
        match self {
            JobKind::Event { event_type, .. } if event_type == "notification.queued" => "notification",
            JobKind::Event { .. } => "event",
            JobKind::DelayedAction { .. } => "delayed_action",
            JobKind::Retention => "retention",
            JobKind::SlaSweep => "sla_sweep",
            JobKind::BookingClock => "booking_clock",
            JobKind::Custom { name, .. } => name,
        }
    }

    pub fn queue(&self) -> &'static str {
        match self {
            JobKind::Event { event_type, .. } if is_critical(event_type) => "critical",
            JobKind::SlaSweep | JobKind::BookingClock => "critical",

            JobKind::Event { .. } | JobKind::DelayedAction { .. } | JobKind::Custom { .. } => "ops",
            JobKind::Retention => "heavy",
        }
    }
}

/// SLA escalations and safety checks go on the critical queue; everything else that events
/// cause (automation, notifications) on ops.
fn is_critical(event_type: &str) -> bool {
    matches!(event_type, "task.sla_breached" | "booking.starting_soon") || event_type.starts_with("safety_check")
}

impl Job {
    pub fn new(kind: JobKind) -> Job {
        Job { id: Uuid::now_v7(), kind, attempt: 0, enqueued_at: chrono::Utc::now() }
    }
}

/// Attempts and backoff per job kind (SPEC §7: 3 attempts for notifications, 5 for others;
/// base 2 s, cap 10 min), overridable from the environment.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub attempts_default: u32,
    pub attempts_notification: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts_default: 5,
            attempts_notification: 3,
            base: Duration::from_secs(2),
            cap: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    pub fn attempts(&self, kind: &JobKind) -> u32 {
        match kind.name() {
            "notification" => self.attempts_notification,
            _ => self.attempts_default,
        }
        .max(1)
    }

    /// Exponential backoff with full jitter over the upper half: the n-th retry waits between
    /// half of and the whole of `base * 2^(n-1)`, never more than `cap`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let ceiling = exp.min(self.cap);
        let half = ceiling / 2;
        let jitter = rand::thread_rng().gen_range(0..=half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        for retry in 1..=12 {
            let d = p.backoff(retry);
            let ceiling = (p.base * 2u32.pow(retry - 1)).min(p.cap);
            assert!(d >= ceiling / 2 && d <= ceiling, "retry {retry}: {d:?} vs {ceiling:?}");
        }
        assert!(p.backoff(30) <= p.cap);
    }

    #[test]
    fn job_json_round_trips() {
        let j = Job::new(JobKind::Event { event_id: Uuid::now_v7(), event_type: "inquiry.created".into() });
        let v = serde_json::to_value(&j).unwrap();
        assert_eq!(v["kind"], "event");
        assert_eq!(serde_json::from_value::<Job>(v).unwrap(), j);
    }
}
