//! Worker pools for the three queues (critical, ops, heavy).

use tokio::sync::watch;
use virel_domain::Db;

pub const QUEUES: [&str; 3] = ["critical", "ops", "heavy"];

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub queues: Vec<&'static str>,
}

impl WorkerConfig {
    /// The queues to consume (all three when `names` is empty).
    pub fn from_env(names: &[String]) -> anyhow::Result<WorkerConfig> {
        let mut queues = Vec::new();
        for n in names {
            let q = QUEUES.iter().find(|q| **q == n.trim()).ok_or_else(|| {
                anyhow::anyhow!("unknown queue {n:?}: expected critical, ops or heavy")
            })?;
            queues.push(*q);
        }
        if queues.is_empty() {
            queues = QUEUES.to_vec();
        }
        Ok(WorkerConfig { queues })
    }
}

pub async fn run(
    _db: Db,
    cfg: WorkerConfig,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    tracing::info!(queues = ?cfg.queues, "workers started");
    let _ = stop.wait_for(|s| *s).await;
    Ok(())
}
