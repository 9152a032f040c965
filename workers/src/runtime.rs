//! What a worker process holds (database, queues, retry policy, custom handlers, counters),
//! the one job handler every pool runs, and the apalis pools themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis::prelude::*;
use serde_json::Value;
use tokio::sync::watch;
use virel_domain::automation::{self, actions::is_transient};
use virel_domain::commands::maintenance;
use virel_domain::jobs::{self, BoxFut, Counts};
use virel_domain::{Ctx, Db, DomainError};

use crate::job::{Job, JobKind, RetryPolicy};
use crate::queue::Queues;
use crate::{WorkerConfig, notify};

/// A handler registered by name for `JobKind::Custom` jobs. Err is a failure to retry.
pub type CustomHandler = Arc<dyn Fn(Value) -> BoxFut<'static, Result<(), String>> + Send + Sync>;

pub struct Runtime {
    pub db: Db,
    pub queues: Queues,
    pub retry: RetryPolicy,
    custom: HashMap<String, CustomHandler>,
    counts: Mutex<HashMap<&'static str, Counts>>,
}

enum Failure {
    /// Worth another attempt (the database or a provider was down).
    Transient(String),
    /// Retrying cannot help.
    Permanent(String),
}

impl From<DomainError> for Failure {
    fn from(e: DomainError) -> Failure {
        if is_transient(&e) { Failure::Transient(e.to_string()) } else { Failure::Permanent(e.to_string()) }
    }
}

impl Runtime {
    pub fn new(db: Db, queues: Queues, retry: RetryPolicy) -> Runtime {
        Runtime { db, queues, retry, custom: HashMap::new(), counts: Mutex::new(HashMap::new()) }
    }

    pub fn with_handler(mut self, name: &str, h: CustomHandler) -> Runtime {
        self.custom.insert(name.to_string(), h);
        self
    }

    fn count(&self, queue: &'static str, f: impl FnOnce(&mut Counts)) {
        if let Ok(mut m) = self.counts.lock() {
            f(m.entry(queue).or_default());
        }
    }

    /// Adds the counters gathered since the last flush to the per-minute rows.
    pub async fn flush_counts(&self) {
        let taken: Vec<(&'static str, Counts)> = match self.counts.lock() {
            Ok(mut m) => m.drain().collect(),
            Err(_) => return,
        };
        let minute = jobs::minute_of(virel_domain::now());
        for (q, c) in taken {
            if let Err(e) = jobs::add_counts(&self.db, q, minute, &c).await {
                tracing::warn!(error = %e, "cannot record job counters");
            }
        }
    }

    async fn execute(&self, job: &Job) -> Result<(), Failure> {
        match &job.kind {
            JobKind::Event { event_id, event_type } => {
                let out = automation::process_event(&self.db, *event_id).await?;
                if out.rules_matched > 0 || out.loop_stopped {
                    tracing::debug!(event = %event_id, ?out, "automation");
                }
                if event_type == "notification.queued" {
                    let id = self.notification_of(*event_id).await?;
                    notify::send(&self.db, id).await?;
                }
                Ok(())
            }
            JobKind::DelayedAction { execution_id } => {
                automation::run_delayed(&self.db, *execution_id).await?;
                Ok(())
            }
            JobKind::SlaSweep => {
                let out = virel_domain::sla::sweep(&self.db).await?;
                if out.warned > 0 || out.escalated.iter().any(|n| *n > 0) {
                    tracing::info!(?out, "SLA sweep");
                }
                Ok(())
            }
            JobKind::BookingClock => {
                let out = virel_domain::sla::booking_clock(&self.db).await?;
                if out.starting_soon > 0 || out.safety_checks > 0 {
                    tracing::info!(?out, "booking clock");
                }
                Ok(())
            }
            JobKind::Retention => {
                maintenance::purge_expired(&self.db, &Ctx::system()).await?;
                let n = self.queues.vacuum(Duration::from_secs(3600)).await?;
                tracing::info!(finished_jobs_forgotten = n, "retention");
                Ok(())
            }
            JobKind::Custom { name, payload } => match self.custom.get(name) {
                Some(h) => h(payload.clone()).await.map_err(Failure::Transient),
                None => Err(Failure::Permanent(format!("no handler registered for job kind {name}"))),
            },
        }
    }

    async fn notification_of(&self, event_id: uuid::Uuid) -> Result<uuid::Uuid, Failure> {
        let e = virel_domain::commands::events::load(&self.db, event_id).await?;
        Ok(e.subject_id)
    }

    /// Runs one job to an outcome: done; failed and pushed again after a backoff; or dead
    /// (kept, reported, retryable) once its attempts are spent or retrying cannot help.
    pub async fn process(&self, job: Job) -> Result<(), BoxDynError> {
        let queue = job.kind.queue();
        let failure = match self.execute(&job).await {
            Ok(()) => {
                self.count(queue, |c| c.done += 1);
                return Ok(());
            }
            Err(f) => f,
        };
        let attempts = job.attempt + 1;
        let (message, permanent) = match failure {
            Failure::Transient(m) => (m, false),
            Failure::Permanent(m) => (m, true),
        };
        self.count(queue, |c| c.failed += 1);
        if !permanent && attempts < self.retry.attempts(&job.kind) {
            let delay = self.retry.backoff(attempts);
            tracing::warn!(job = %job.id, kind = job.kind.name(), attempt = attempts, ?delay, error = %message, "job failed; retrying");
            let next = Job { attempt: attempts, ..job.clone() };
            // If the queue is down too, the error goes to apalis, which keeps the job.
            self.queues.push(queue, next, Some(delay)).await.map_err(|e| Box::new(e) as BoxDynError)?;
            self.count(queue, |c| c.retried += 1);
            return Ok(());
        }
        tracing::error!(job = %job.id, kind = job.kind.name(), attempts, error = %message, "job is dead");
        let raise = job.kind.name() != "notification";
        let json = serde_json::to_value(&job).unwrap_or(Value::Null);
        jobs::record_dead(&self.db, queue, job.kind.name(), json, attempts as i64, &message, raise)
            .await
            .map_err(|e| Box::new(e) as BoxDynError)?;
        self.count(queue, |c| c.dead += 1);
        Ok(())
    }
}

async fn handle(job: Job, rt: Data<Arc<Runtime>>) -> Result<(), BoxDynError> {
    rt.process(job).await
}

/// One apalis worker per queue, with its concurrency, under one monitor that shuts down
/// gracefully: on stop no new jobs are taken and jobs in hand finish (or go back on the queue
/// after `shutdown_timeout`, through the backend's orphan recovery).
macro_rules! register_pool {
    ($monitor:expr, $storage:expr, $worker:expr, $n:expr, $rt:expr, $poll:expr) => {{
        let (storage, worker, n, rt, poll) = ($storage, $worker, $n, $rt, $poll);
        $monitor.register(move |_restarts| {
            WorkerBuilder::new(worker.clone())
                .backend(storage.clone().poll_with_interval(poll))
                .concurrency(n)
                .data(rt.clone())
                .build(handle)
        })
    }};
}

pub async fn run_pools(rt: Arc<Runtime>, cfg: &WorkerConfig, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut pools = tokio::task::JoinSet::new();
    for q in cfg.queues.clone() {
        let n = cfg.concurrency.get(q).copied().unwrap_or(1);
        let (rt, stop, poll) = (rt.clone(), stop.clone(), cfg.liveness.poll);
        pools.spawn(supervise(rt, q, n, poll, stop));
    }
    tracing::info!(queues = ?cfg.queues, backend = rt.queues_name(), "worker pools started");
    let flusher = {
        let rt = rt.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => rt.flush_counts().await,
                    changed = stop.changed() => if changed.is_err() { break },
                }
                if *stop.borrow() {
                    break;
                }
            }
        })
    };
    let mut result = Ok(());
    while let Some(r) = pools.join_next().await {
        if let Ok(Err(e)) = r {
            result = Err(e);
        }
    }
    let _ = flusher.await;
    rt.flush_counts().await;
    tracing::info!("worker pools stopped");
    result
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Runs one queue's pool until `stop`; when the backend fails under it (Redis restarted or
/// unreachable), starts it again under a new worker name after a growing pause (1 s up to
/// 15 s). The jobs the failed worker held come back through the backend's orphan recovery.
async fn supervise(
    rt: Arc<Runtime>,
    q: &'static str,
    n: usize,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "virel".into());
    let mut pause = Duration::from_secs(1);
    loop {
        // Unique per start: a restarted worker must not be mistaken for its dead predecessor.
        let instance = uuid::Uuid::now_v7().simple().to_string();
        let worker = format!("{q}-{host}-{}", &instance[20..]);
        let monitor = Monitor::new().shutdown_timeout(Duration::from_secs(30));
        let monitor = match &rt.queues {
            Queues::Redis { storages, .. } => {
                let s = storages.get(q).cloned().ok_or_else(|| anyhow::anyhow!("no queue {q}"))?;
                register_pool!(monitor, s, worker, n, rt.clone(), poll)
            }
            Queues::Sqlite { storages, .. } => {
                let s = storages.get(q).cloned().ok_or_else(|| anyhow::anyhow!("no queue {q}"))?;
                register_pool!(monitor, s, worker, n, rt.clone(), poll)
            }
        };
        // `run` returns when the worker ends (a backend failure) as well as after a shutdown,
        // unlike `run_with_signal`, which would also wait for the signal.
        let ctx = monitor.context();
        let run = monitor.run();
        tokio::pin!(run);
        let started = std::time::Instant::now();
        let res = tokio::select! {
            r = &mut run => r,
            _ = stopped(stop.clone()) => {
                let _ = ctx.shutdown();
                return match tokio::time::timeout(Duration::from_secs(35), run).await {
                    Ok(r) => r.map_err(|e| anyhow::anyhow!("{q} pool: {e}")),
                    Err(_) => Err(anyhow::anyhow!("{q} pool: jobs still running after 35 s; they return to the queue")),
                };
            }
        };
        if *stop.borrow() {
            return res.map_err(|e| anyhow::anyhow!("{q} pool: {e}"));
        }
        if started.elapsed() > Duration::from_secs(60) {
            pause = Duration::from_secs(1);
        }
        tracing::warn!(queue = q, error = ?res.err(), ?pause, "worker pool stopped unexpectedly; restarting");
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { return Ok(()) },
        }
        pause = (pause * 2).min(Duration::from_secs(15));
    }
}

impl Runtime {
    pub fn queues_name(&self) -> &'static str {
        use virel_domain::jobs::QueueBackend;
        self.queues.name()
    }
}
