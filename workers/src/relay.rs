//! The outbox relay: committed domain events go onto the queues. It wakes on every commit in
//! this process and, on PostgreSQL, on other processes' commits (LISTEN/NOTIFY); it also polls
//! as a safety net, and resumes where it stopped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use virel_domain::outbox;

use virel_domain::jobs::{Job, Queue, kinds};

use crate::runtime::Runtime;

const BATCH: i64 = 200;
const POLL: Duration = Duration::from_millis(100);

pub async fn run_relay(rt: Arc<Runtime>, mut stop: watch::Receiver<bool>) {
    let listener = tokio::spawn({
        let db = rt.db.clone();
        async move { outbox::listen_for_commits(&db).await }
    });
    relay_loop(&rt, &mut stop).await;
    listener.abort();
}

async fn relay_loop(rt: &Arc<Runtime>, stop: &mut watch::Receiver<bool>) {
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            break;
        }
        let res = relay_once(rt).await;

        match res {
            Ok(n) if n as i64 == BATCH => {
                failures = 0;
                continue;
            }
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                // Events stay in the outbox; they go out when the queue is back.
                if failures == 1 || failures.is_multiple_of(30) {
                    tracing::warn!(error = %e, "outbox relay cannot dispatch; retrying");
                }
            }
        }
        let wait = if failures > 0 { Duration::from_secs(1) } else { POLL };
        tokio::select! {
            _ = rt.db.shared().wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            changed = stop.changed() => if changed.is_err() { break },
        }
    }
}

/// Moves one batch from the outbox to the queues.
pub async fn relay_once(rt: &Runtime) -> virel_domain::DomainResult<usize> {
    let mut batch = outbox::claim(&rt.db, BATCH).await?;
    if batch.events.is_empty() {
        return Ok(0);
    }
    let listeners = batch.listeners().await?;
    let mut by_queue: std::collections::HashMap<Queue, Vec<Job>> = Default::default();
    for job in batch.events.iter().flat_map(|e| kinds::for_event(e, &listeners)) {
        by_queue.entry(job.queue).or_default().push(job);
    }
    for (queue, jobs) in by_queue {
        rt.queues.push_many(queue, jobs).await?;
    }

    let relayed = batch.events.len();
    let changes = batch.commit().await?;
    metrics::histogram!("virel_relay_batch_size").record(relayed as f64);
    metrics::counter!("virel_relay_events_total").increment(relayed as u64);
    // Live views in other processes hear of the changes through Redis; a lost message costs
    // only freshness (a reconnecting view gets a snapshot), never data.
    if let Err(e) = rt.queues.publish_live(&changes).await {
        tracing::warn!(error = %e, "cannot publish live changes");
    }
    Ok(changes.len())
}
