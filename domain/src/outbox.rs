//! The outbox: `domain_events` rows not yet dispatched are handed to the queues and marked
//! dispatched in one transaction per batch. A relay that dies mid-batch leaves the batch
//! undispatched, so it is sent again (handlers are idempotent); none is ever lost.

use tokio::sync::Notify;

use crate::error::DomainResult;
use crate::rows::DomainEvent;
use crate::store::{Db, Tx};
use crate::{now, q_all, q_exec};

/// Woken by every commit in this process, so an in-process relay dispatches at once instead
/// of waiting for its next poll.
pub static WAKE: Notify = Notify::const_new();

/// A batch of undispatched events, oldest first, held in an open transaction: push each to
/// its queue, then `commit` marks them dispatched. Dropping the batch (a failed push, a crash)
/// leaves them undispatched. On PostgreSQL concurrent relays take disjoint batches
/// (SKIP LOCKED); on SQLite the write transaction serialises them.
pub struct Batch {
    tx: Tx,
    pub events: Vec<DomainEvent>,
}

pub async fn claim(db: &Db, limit: i64) -> DomainResult<Batch> {
    let mut tx = db.begin().await?;
    let events = match &mut tx {
        Tx::Pg(_) => q_all!(
            &mut tx.conn(),
            DomainEvent,
            "SELECT * FROM domain_events WHERE dispatched_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit
        )?,
        Tx::Lite(_) => q_all!(
            &mut tx.conn(),
            DomainEvent,
            "SELECT * FROM domain_events WHERE dispatched_at IS NULL ORDER BY id LIMIT $1",
            limit
        )?,
    };
    Ok(Batch { tx, events })
}

impl Batch {
    /// Marks every event of the batch dispatched and commits.
    pub async fn commit(mut self) -> DomainResult<usize> {
        let at = now();
        for e in &self.events {
            q_exec!(&mut self.tx.conn(), "UPDATE domain_events SET dispatched_at = $1 WHERE id = $2", at, e.id)?;
        }
        self.tx.commit_quiet().await?;
        Ok(self.events.len())
    }
}
