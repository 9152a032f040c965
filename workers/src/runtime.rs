//! What a worker process holds (database, queues, retry settings, the job kinds it knows,
//! custom handlers, counters), the one job handler every pool runs, and the apalis pools.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis::prelude::*;
use futures_util::FutureExt;
use serde_json::Value;
use tokio::sync::watch;
use virel_domain::Db;
use virel_domain::jobs::{
    self, Counts, CustomHandler, Job, JobCx, JobError, Notifier, Queue, QueueBackend, Registry, RetrySettings, kinds,
};
use virel_domain::payments::Payments;

use crate::WorkerConfig;
use crate::notify::Channels;
use crate::queue::Queues;

pub struct Runtime {
    pub db: Db,
    pub queues: Queues,
    pub retry: RetrySettings,
    /// The same queues, as the port job handlers see.
    port: Arc<dyn QueueBackend>,
    registry: Registry,
    notifier: Arc<dyn Notifier>,
    payments: Payments,
    webhooks: Arc<dyn virel_domain::webhooks::WebhookSender>,
    custom: Arc<HashMap<String, CustomHandler>>,
    counts: Mutex<HashMap<Queue, Counts>>,
}

impl Runtime {
    pub fn new(db: Db, queues: Queues, retry: RetrySettings) -> Runtime {
        Runtime {
            db,
            port: Arc::new(queues.clone()),
            queues,
            retry,
            registry: kinds::registry(),
            notifier: Arc::new(Channels::default()),
            payments: Payments::disabled(),
            webhooks: Arc::new(crate::providers::webhooks::HttpWebhooks::default()),
            custom: Arc::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_handler(mut self, name: &str, h: CustomHandler) -> Runtime {
        Arc::make_mut(&mut self.custom).insert(name.to_string(), h);
        self
    }

    pub fn with_notifier(mut self, n: Arc<dyn Notifier>) -> Runtime {
        self.notifier = n;
        self
    }

    /// The payment provider the job handlers use (payments are disabled without one).
    pub fn with_payments(mut self, p: Payments) -> Runtime {
        self.payments = p;
        self
    }

    /// The sender of outgoing webhooks (by default over HTTP with the address checks).
    pub fn with_webhooks(mut self, w: Arc<dyn virel_domain::webhooks::WebhookSender>) -> Runtime {
        self.webhooks = w;
        self
    }

    /// Adds to the per-minute counters, and to the Prometheus counters by queue and the
    /// kind of the job being processed (`JOB_KIND`; `backend` for the queue's own dead jobs).
    fn count(&self, queue: Queue, f: impl FnOnce(&mut Counts)) {
        let mut d = Counts::default();
        f(&mut d);
        let kind = JOB_KIND.try_with(|k| k.clone()).unwrap_or_else(|_| "backend".into());
        for (name, n) in [
            ("virel_jobs_processed_total", d.done),
            ("virel_jobs_failed_total", d.failed),
            ("virel_jobs_retried_total", d.retried),
            ("virel_jobs_dead_total", d.dead),
        ] {
            if n > 0 {
                metrics::counter!(name, "queue" => queue.as_str(), "kind" => kind.clone()).increment(n as u64);
            }
        }
        if let Ok(mut m) = self.counts.lock() {
            let c = m.entry(queue).or_default();
            c.done += d.done;
            c.failed += d.failed;
            c.retried += d.retried;
            c.dead += d.dead;
        }
    }

    /// Adds the counters gathered since the last flush to the per-minute rows.
    pub async fn flush_counts(&self) {
        let taken: Vec<(Queue, Counts)> = match self.counts.lock() {
            Ok(mut m) => m.drain().collect(),
            Err(_) => return,
        };
        let minute = jobs::minute_of(virel_domain::now());
        for (q, c) in taken {
            if let Err(e) = jobs::add_counts(&self.db, q.as_str(), minute, &c).await {
                tracing::warn!(error = %e, "cannot record job counters");
            }
        }
    }

    fn cx(&self, job: &Job) -> JobCx {
        JobCx {
            db: self.db.clone(),
            queues: self.port.clone(),
            notifier: self.notifier.clone(),
            payments: self.payments.clone(),
            webhooks: self.webhooks.clone(),
            custom: self.custom.clone(),
            job_id: job.id,
            attempt: job.attempt,
        }
    }

    /// Records the jobs the backend gave up on by itself (see `Queues::claim_backend_dead`)
    /// as dead, visible and retryable, raising their exceptions.
    pub async fn sweep_backend_dead(&self) {
        let found = match self.queues.claim_backend_dead(100).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "cannot look for jobs the queue gave up on");
                return;
            }
        };
        for d in found {
            let job: Option<Job> = serde_json::from_value(d.raw.clone()).ok();
            let message = format!("the queue gave up on it after {} runs: {}", d.attempts, d.error);
            let (label, raise) = match &job {
                Some(j) => {
                    let raise = AssertUnwindSafe(self.registry.on_dead(j, self.cx(j), message.clone()))
                        .catch_unwind()
                        .await
                        .map(|r| r.unwrap_or(true))
                        .unwrap_or(true);
                    (self.registry.label(j), raise)
                }
                None => ("unreadable".to_string(), true),
            };
            tracing::error!(queue = %d.queue, id = %d.id, kind = %label, error = %d.error, "the queue gave up on a job");
            let recorded =
                jobs::record_dead(&self.db, d.queue.as_str(), &label, d.raw.clone(), d.attempts, &message, raise).await;
            match recorded {
                Ok(_) => self.count(d.queue, |c| c.dead += 1),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record a job the queue gave up on; kept in the queue");
                    if let Err(e) = self.queues.unclaim_backend_dead(&d).await {
                        tracing::error!(error = %e, job = ?d, "a job the queue gave up on could not be put back");
                    }
                }
            }
        }
    }

    /// Runs one job to an outcome: done; failed and pushed again after a backoff; or dead
    /// (kept, reported, retryable) once its attempts are spent or retrying cannot help.
    /// A handler that panics has failed an attempt like any other: the pool carries on.
    /// `backend_attempt` is the backend's own count (1 on its first delivery): when Virel
    /// could not record an outcome, the backend runs the same job again, and those runs count
    /// against the kind's attempts too.
    pub async fn process(&self, mut job: Job, backend_attempt: usize) -> Result<(), BoxDynError> {
        job.attempt = job.attempt.max((backend_attempt as u32).saturating_sub(1));
        let queue = job.queue;
        let run = AssertUnwindSafe(self.registry.run(&job, self.cx(&job))).catch_unwind();
        let failure = match run.await {
            Ok(Ok(())) => {
                self.count(queue, |c| c.done += 1);
                return Ok(());
            }
            Ok(Err(f)) => f,
            Err(panic) => JobError::Transient(format!("the handler panicked: {}", panic_message(&panic))),
        };
        let attempts = job.attempt + 1;
        let (message, permanent, at_least) = match failure {
            JobError::Transient(m) => (m, false, Duration::ZERO),
            JobError::Permanent(m) => (m, true, Duration::ZERO),
            JobError::RetryAfter(d, m) => (m, false, d),
        };
        self.count(queue, |c| c.failed += 1);
        let retry = self.registry.retry(&job.kind, &self.retry);
        if !permanent && attempts < retry.attempts {
            // A provider's rate limit says how long to wait at least.
            let (lo, hi) = retry.window(attempts);
            let (lo, hi) = (lo.max(at_least), hi.max(at_least));
            tracing::warn!(job = %job.id, kind = %job.kind, attempt = attempts, ?lo, ?hi, error = %message, "job failed; retrying");
            let next = Job { attempt: attempts, ..job.clone() };
            // If the queue is down too, the error goes to apalis, which keeps the job.
            self.queues.push_between(next, lo, hi).await.map_err(|e| Box::new(e) as BoxDynError)?;
            self.count(queue, |c| c.retried += 1);
            return Ok(());
        }
        tracing::error!(job = %job.id, kind = %job.kind, attempts, error = %message, "job is dead");
        let raise =
            match AssertUnwindSafe(self.registry.on_dead(&job, self.cx(&job), message.clone())).catch_unwind().await {
                Ok(Ok(raise)) => raise,
                Ok(Err(e)) => {
                    tracing::warn!(job = %job.id, error = %e, "dead-job hook failed");
                    true
                }
                Err(_) => true,
            };
        let json = serde_json::to_value(&job).unwrap_or(Value::Null);
        let label = self.registry.label(&job);
        jobs::record_dead(&self.db, queue.as_str(), &label, json, attempts as i64, &message, raise)
            .await
            .map_err(|e| Box::new(e) as BoxDynError)?;
        self.count(queue, |c| c.dead += 1);
        Ok(())
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

tokio::task_local! {
    /// The kind of the job this task is processing, for the metrics' labels.
    static JOB_KIND: String;
}

async fn handle(job: Job, rt: Data<Arc<Runtime>>, attempt: Attempt) -> Result<(), BoxDynError> {
    let (queue, kind) = (job.queue.as_str(), job.kind.clone());
    let waited = (virel_domain::now() - job.enqueued_at).to_std().unwrap_or_default();
    metrics::histogram!("virel_job_wait_seconds", "queue" => queue, "kind" => kind.clone())
        .record(waited.as_secs_f64());
    let started = std::time::Instant::now();
    let res = JOB_KIND.scope(kind.clone(), rt.process(job, attempt.current())).await;
    metrics::histogram!("virel_job_run_seconds", "queue" => queue, "kind" => kind)
        .record(started.elapsed().as_secs_f64());
    res
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
        let n = cfg.concurrency.get(&q).copied().unwrap_or(1);
        let (rt, stop, poll, host) = (rt.clone(), stop.clone(), cfg.liveness.poll, cfg.host.clone());
        pools.spawn(supervise(rt, q, n, poll, host, stop));
    }
    tracing::info!(queues = ?cfg.queues, backend = rt.queues_name(), "worker pools started");
    let flusher = {
        let rt = rt.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            // Every 2 s the counters; every 10 s the jobs the backend gave up on.
            let mut ticks = 0u32;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {
                        rt.flush_counts().await;
                        ticks += 1;
                        if ticks % 5 == 1 {
                            rt.sweep_backend_dead().await;
                        }
                    }
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
    q: Queue,
    n: usize,
    poll: Duration,
    host: String,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut pause = Duration::from_secs(1);
    loop {
        // Unique per start: a restarted worker must not be mistaken for its dead predecessor.
        let instance = uuid::Uuid::now_v7().simple().to_string();
        let worker = format!("{q}-{host}-{}", &instance[20..]);
        let monitor = Monitor::new().shutdown_timeout(Duration::from_secs(30));
        let monitor = match &rt.queues {
            Queues::Redis { storages, .. } => {
                let s = storages.get(&q).cloned().ok_or_else(|| anyhow::anyhow!("no queue {q}"))?;
                register_pool!(monitor, s, worker, n, rt.clone(), poll)
            }
            Queues::Sqlite { storages, .. } => {
                let s = storages.get(&q).cloned().ok_or_else(|| anyhow::anyhow!("no queue {q}"))?;
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
        tracing::warn!(queue = %q, error = ?res.err(), ?pause, "worker pool stopped unexpectedly; restarting");
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { return Ok(()) },
        }
        pause = (pause * 2).min(Duration::from_secs(15));
    }
}

impl Runtime {
    pub fn queues_name(&self) -> &'static str {
        self.queues.name()
    }
}
