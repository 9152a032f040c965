//! Worker pools for the three queues (critical, ops, heavy) on apalis, over Redis or SQLite,
//! and the outbox relay that feeds them. Handlers stay thin: parse the job, call a domain
//! command, decide between done, retry (with backoff) and dead.

pub mod job;
pub mod notify;
pub mod queue;
mod relay;
mod runtime;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use job::{Job, JobKind, RetryPolicy};
pub use queue::{Liveness, Queues};
pub use relay::run_relay;
pub use runtime::{CustomHandler, Runtime};
use virel_domain::jobs::QUEUES;

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub queues: Vec<&'static str>,
    pub concurrency: HashMap<&'static str, usize>,
    pub retry: RetryPolicy,
    pub liveness: Liveness,
}

fn env_num<T: std::str::FromStr>(name: &str) -> anyhow::Result<Option<T>> {
    match std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| anyhow::anyhow!("{name} must be a number (got {v:?})")),
    }
}

impl WorkerConfig {
    /// The queues to consume (all three when `names` is empty), with concurrency, retry and
    /// liveness settings from the environment (see the README).
    pub fn from_env(names: &[String]) -> anyhow::Result<WorkerConfig> {
        let mut queues = Vec::new();
        for n in names {
            let q = QUEUES
                .iter()
                .find(|q| **q == n.trim())
                .ok_or_else(|| anyhow::anyhow!("unknown queue {n:?}: expected critical, ops or heavy"))?;
            if !queues.contains(q) {
                queues.push(*q);
            }
        }
        if queues.is_empty() {
            queues = QUEUES.to_vec();
        }
        let mut concurrency = HashMap::new();
        for (q, default) in [("critical", 8), ("ops", 16), ("heavy", 2)] {
            let n: usize = env_num(&format!("VIREL_CONCURRENCY_{}", q.to_uppercase()))?.unwrap_or(default);
            concurrency.insert(q, n.max(1));
        }
        let d = RetryPolicy::default();
        let retry = RetryPolicy {
            attempts_default: env_num("VIREL_RETRY_ATTEMPTS")?.unwrap_or(d.attempts_default),
            attempts_notification: env_num("VIREL_RETRY_ATTEMPTS_NOTIFICATION")?.unwrap_or(d.attempts_notification),
            base: env_num("VIREL_RETRY_BASE_MS")?.map(Duration::from_millis).unwrap_or(d.base),
            cap: env_num("VIREL_RETRY_CAP_MS")?.map(Duration::from_millis).unwrap_or(d.cap),
        };
        let l = Liveness::default();
        let liveness = Liveness {
            heartbeat: env_num("VIREL_HEARTBEAT_MS")?.map(Duration::from_millis).unwrap_or(l.heartbeat),
            missed_heartbeats: env_num("VIREL_MISSED_HEARTBEATS")?.unwrap_or(l.missed_heartbeats),
            poll: env_num("VIREL_POLL_MS")?.map(Duration::from_millis).unwrap_or(l.poll),
        };
        Ok(WorkerConfig { queues, concurrency, retry, liveness })
    }
}

/// Builds the runtime for `queues` and runs the chosen pools and the outbox relay until `stop`.
pub async fn run(rt: Arc<Runtime>, cfg: WorkerConfig, stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
    let relay = tokio::spawn(run_relay(rt.clone(), stop.clone()));
    let res = runtime::run_pools(rt, &cfg, stop).await;
    let _ = relay.await;
    res
}
