//! Worker pools for the three queues (critical, ops, heavy) on apalis, over Redis or SQLite,
//! and the outbox relay that feeds them. Handlers stay thin: parse the job, call a domain
//! command, decide between done, retry (with backoff) and dead.

pub mod notify;
pub mod providers;
pub mod queue;
mod relay;
mod runtime;

use std::collections::HashMap;
use std::sync::Arc;

pub use queue::{BackendDead, Liveness, Queues};
pub use relay::run_relay;
pub use runtime::Runtime;
pub use virel_domain::jobs::{CustomHandler, Job, Queue, RetrySettings};

/// What a worker process runs: which queues, how many jobs at once on each, the retry
/// settings and the liveness of its workers.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub queues: Vec<Queue>,
    pub concurrency: HashMap<Queue, usize>,
    pub retry: RetrySettings,
    pub liveness: Liveness,
    /// This machine's name, part of each worker's name in the queue backend.
    pub host: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            queues: Queue::ALL.to_vec(),
            concurrency: [(Queue::Critical, 8), (Queue::Ops, 16), (Queue::Heavy, 2)].into_iter().collect(),
            retry: RetrySettings::default(),
            liveness: Liveness::default(),
            host: "virel".into(),
        }
    }
}

/// Builds the runtime for `queues` and runs the chosen pools and the outbox relay until `stop`.
pub async fn run(rt: Arc<Runtime>, cfg: WorkerConfig, stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
    let relay = tokio::spawn(run_relay(rt.clone(), stop.clone()));
    let res = runtime::run_pools(rt, &cfg, stop).await;
    let _ = relay.await;
    res
}
