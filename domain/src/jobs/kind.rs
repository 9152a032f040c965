//! What a job is: a kind (a type implementing `JobKind`, which states in one place its name,
//! queue, retry policy, idempotency key and handler), the envelope the queues carry, and the
//! port through which anything enqueues without knowing the queue library.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::LiveQueue;
use crate::error::{DomainError, DomainResult};
use crate::store::Db;

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The three queues, each with its own worker pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Queue {
    /// Payments, SLA escalations, safety checks: small and urgent.
    Critical,
    /// Automation actions and notifications.
    Ops,
    /// Housekeeping and bulk work.
    Heavy,
}

impl Queue {
    pub const ALL: [Queue; 3] = [Queue::Critical, Queue::Ops, Queue::Heavy];

    pub fn as_str(self) -> &'static str {
        match self {
            Queue::Critical => "critical",
            Queue::Ops => "ops",
            Queue::Heavy => "heavy",
        }
    }

    pub fn parse(s: &str) -> Option<Queue> {
        Queue::ALL.into_iter().find(|q| q.as_str() == s)
    }
}

impl std::fmt::Display for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The configured retry settings (SPEC §7: 5 attempts, 3 for notifications; base 2 s, cap
/// 10 min), from which each kind picks its policy.
#[derive(Clone, Debug)]
pub struct RetrySettings {
    pub attempts_default: u32,
    pub attempts_notification: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            attempts_default: 5,
            attempts_notification: 3,
            base: Duration::from_secs(2),
            cap: Duration::from_secs(600),
        }
    }
}

impl RetrySettings {
    /// The policy of most kinds.
    pub fn standard(&self) -> Retry {
        Retry { attempts: self.attempts_default.max(1), base: self.base, cap: self.cap }
    }

    /// The policy of notification sends.
    pub fn notification(&self) -> Retry {
        Retry { attempts: self.attempts_notification.max(1), ..self.standard() }
    }
}

/// How many times a job runs before it is dead, and how long it waits between runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retry {
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Retry {
    /// The window of the n-th retry's wait: from half of to the whole of `base * 2^(n-1)`,
    /// never more than `cap` (exponential backoff; the queues draw the
    /// instant inside it, `workers::queue::run_at_in`).
    pub fn window(&self, retry: u32) -> (Duration, Duration) {
        let exp = self.base.saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let ceiling = exp.min(self.cap);
        (ceiling / 2, ceiling)
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq)]
pub enum JobError {
    /// Worth another attempt (the database or a provider was down).
    Transient(String),
    /// Retrying cannot help: the job is dead at once.
    Permanent(String),
    /// Worth another attempt, but not before this long (a provider's rate limit, such as
    /// Telegram's `retry_after`): the retry waits for the longer of this and the backoff.
    RetryAfter(Duration, String),
}

impl JobError {
    pub fn message(&self) -> &str {
        match self {
            JobError::Transient(m) | JobError::Permanent(m) | JobError::RetryAfter(_, m) => m,
        }
    }
}

impl From<DomainError> for JobError {
    fn from(e: DomainError) -> JobError {
        if crate::automation::actions::is_transient(&e) {
            JobError::Transient(e.to_string())
        } else {
            JobError::Permanent(e.to_string())
        }
    }
}

/// A kind of job. The type is the job's arguments (serialised into the queue); the impl says
/// everything else about it.
pub trait JobKind: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stable name, stored with the job and in `dead_jobs.kind`.
    const NAME: &'static str;
    /// The queue it runs on.
    const QUEUE: Queue;

    /// Attempts and backoff, from the configured settings.
    fn retry(settings: &RetrySettings) -> Retry {
        settings.standard()
    }

    /// A key that stays the same across retries of this job, for providers' idempotency
    /// (Stripe's and Resend's `Idempotency-Key`) and for logs. None where the handler's own
    /// writes already make a second run harmless.
    fn idempotency_key(&self) -> Option<String> {
        None
    }

    /// What operators see as the job's kind (the dead-jobs list): `NAME` unless the kind
    /// has a better name for this instance.
    fn label(&self) -> String {
        Self::NAME.to_string()
    }

    /// Where this instance goes, when it is not always `QUEUE`.
    fn queue(&self) -> Queue {
        Self::QUEUE
    }

    /// The handler: thin, calling domain commands.
    fn run(self, cx: JobCx) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Called once when the job is dead (attempts spent, or a permanent failure), before it
    /// is kept in `dead_jobs`. Returns whether a generic `job_failed` exception should tell an
    /// operator; a kind that raises its own (a notification's `notification_failed`) says no.
    fn on_dead(self, cx: JobCx, error: String) -> impl Future<Output = DomainResult<bool>> + Send {
        let _ = (cx, error);
        async { Ok(true) }
    }
}

/// The envelope the queues carry: the kind's name and arguments, and the bookkeeping.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Job {
    pub id: Uuid,
    /// `JobKind::NAME`.
    pub kind: String,
    pub queue: Queue,
    /// The kind's own fields.
    #[serde(flatten)]
    pub args: Map<String, Value>,
    /// Attempts already made (0 on the first run).
    #[serde(default)]
    pub attempt: u32,
    pub enqueued_at: DateTime<Utc>,
}

impl Job {
    pub fn new<K: JobKind>(kind: &K) -> Job {
        let args = match serde_json::to_value(kind) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        Job {
            id: Uuid::now_v7(),
            kind: K::NAME.to_string(),
            queue: kind.queue(),
            args,
            attempt: 0,
            enqueued_at: Utc::now(),
        }
    }

    /// The kind's arguments back as its type.
    pub fn args<K: JobKind>(&self) -> Result<K, JobError> {
        serde_json::from_value(Value::Object(self.args.clone()))
            .map_err(|e| JobError::Permanent(format!("unreadable {} job: {e}", self.kind)))
    }
}

/// The queues as the domain, the API and the scheduler see them; the workers crate
/// implements it on its queue backend (Redis or SQLite).
pub trait QueueBackend: Send + Sync {
    fn name(&self) -> &'static str;
    /// Puts a job on its queue, to run now or after `delay` (rounded up to whole seconds).
    fn push(&self, job: Job, delay: Option<Duration>) -> BoxFut<'_, DomainResult<()>>;
    /// Several jobs onto one queue at once (one round trip where the backend allows), to run now.
    fn push_many(&self, queue: Queue, jobs: Vec<Job>) -> BoxFut<'_, DomainResult<()>>;
    fn live(&self, queue: Queue) -> BoxFut<'_, DomainResult<LiveQueue>>;
    /// Forgets finished jobs older than `age`; returns how many.
    fn vacuum(&self, age: Duration) -> BoxFut<'_, DomainResult<u64>>;

    /// Pushes a job (its JSON, as stored in `dead_jobs`) back onto a queue, to run now with
    /// its attempts reset.
    fn requeue(&self, queue: Queue, job: Value) -> BoxFut<'_, DomainResult<()>> {
        Box::pin(async move {
            let mut job: Job =
                serde_json::from_value(job).map_err(|e| DomainError::Internal(format!("dead job JSON: {e}")))?;
            job.attempt = 0;
            job.queue = queue;
            job.enqueued_at = Utc::now();
            self.push(job, None).await
        })
    }
}

/// Sends a queued notification through its channel's provider (the workers own the provider
/// clients). The error says whether to retry, when, or not at all.
pub trait Notifier: Send + Sync {
    fn send(&self, db: &Db, notification_id: Uuid) -> BoxFut<'_, Result<(), JobError>>;
}

/// A handler registered by name for `Custom` jobs (extensions, diagnostics, tests).
/// Err is a failure worth retrying.
pub type CustomHandler = Arc<dyn Fn(Value) -> BoxFut<'static, Result<(), String>> + Send + Sync>;

/// What a handler gets: the database and the ports of the app it runs in.
#[derive(Clone)]
pub struct JobCx {
    pub db: Db,
    pub queues: Arc<dyn QueueBackend>,
    pub notifier: Arc<dyn Notifier>,
    /// The payment provider (None: payments disabled).
    pub payments: crate::payments::Payments,
    /// Sends outgoing webhooks (the workers' HTTP client).
    pub webhooks: Arc<dyn crate::webhooks::WebhookSender>,
    pub custom: Arc<HashMap<String, CustomHandler>>,
    pub job_id: Uuid,
    /// Attempts made before this one.
    pub attempt: u32,
}

type Runner = fn(&Job, JobCx) -> BoxFut<'static, Result<(), JobError>>;
type DeadHook = fn(&Job, JobCx, String) -> BoxFut<'static, DomainResult<bool>>;

fn run_as<K: JobKind>(job: &Job, cx: JobCx) -> BoxFut<'static, Result<(), JobError>> {
    let args = job.args::<K>();
    Box::pin(async move { args?.run(cx).await })
}

fn dead_as<K: JobKind>(job: &Job, cx: JobCx, error: String) -> BoxFut<'static, DomainResult<bool>> {
    let args = job.args::<K>();
    Box::pin(async move {
        match args {
            Ok(k) => k.on_dead(cx, error).await,
            Err(_) => Ok(true),
        }
    })
}

fn label_as<K: JobKind>(job: &Job) -> String {
    job.args::<K>().map(|k| k.label()).unwrap_or_else(|_| job.kind.clone())
}

struct Entry {
    label: fn(&Job) -> String,
    retry: fn(&RetrySettings) -> Retry,
    run: Runner,
    dead: DeadHook,
}

/// The kinds a worker knows, by name.
pub struct Registry {
    kinds: HashMap<&'static str, Entry>,
}

impl Registry {
    pub fn empty() -> Registry {
        Registry { kinds: HashMap::new() }
    }

    pub fn register<K: JobKind>(&mut self) -> &mut Registry {
        self.kinds
            .insert(K::NAME, Entry { label: label_as::<K>, retry: K::retry, run: run_as::<K>, dead: dead_as::<K> });
        self
    }

    /// What operators see as the job's kind.
    pub fn label(&self, job: &Job) -> String {
        self.kinds.get(job.kind.as_str()).map(|e| (e.label)(job)).unwrap_or_else(|| job.kind.clone())
    }

    /// Attempts and backoff for a job of kind `name` (the standard policy for an unknown one).
    pub fn retry(&self, name: &str, settings: &RetrySettings) -> Retry {
        self.kinds.get(name).map(|e| (e.retry)(settings)).unwrap_or_else(|| settings.standard())
    }

    /// Runs `job` with its kind's handler.
    pub fn run(&self, job: &Job, cx: JobCx) -> BoxFut<'static, Result<(), JobError>> {
        match self.kinds.get(job.kind.as_str()) {
            Some(e) => (e.run)(job, cx),
            None => {
                let msg = format!("no handler for job kind {:?}", job.kind);
                Box::pin(async move { Err(JobError::Permanent(msg)) })
            }
        }
    }

    /// Runs the kind's dead hook; true when a generic `job_failed` exception should be raised.
    pub fn on_dead(&self, job: &Job, cx: JobCx, error: String) -> BoxFut<'static, DomainResult<bool>> {
        match self.kinds.get(job.kind.as_str()) {
            Some(e) => (e.dead)(job, cx, error),
            None => Box::pin(async { Ok(true) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetrySettings::default().standard();
        for retry in 1..=12 {
            let ceiling = (p.base * 2u32.pow(retry - 1)).min(p.cap);
            assert_eq!(p.window(retry), (ceiling / 2, ceiling), "retry {retry}");
        }
        assert!(p.window(30).1 <= p.cap);
    }

    #[test]
    fn queue_names_round_trip() {
        for q in Queue::ALL {
            assert_eq!(Queue::parse(q.as_str()), Some(q));
        }
        assert_eq!(Queue::parse("nope"), None);
    }
}
