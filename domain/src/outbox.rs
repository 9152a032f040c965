//! The outbox: `domain_events` rows not yet dispatched are handed to the queues and marked
//! dispatched in one transaction per batch. A relay that dies mid-batch leaves the batch
//! undispatched, so it is sent again (handlers are idempotent); none is ever lost.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};
use uuid::Uuid;

use crate::error::DomainResult;
use crate::rows::DomainEvent;
use crate::store::{Db, Tx};
use crate::{now, q_all, q_exec};

/// Woken by every commit in this process, so an in-process relay dispatches at once instead
/// of waiting for its next poll.
pub static WAKE: Notify = Notify::const_new();

/// A committed event, as live views (the Action Center's WebSocket) hear of it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Change {
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub subject_type: String,
    pub subject_id: Uuid,
}

impl From<&DomainEvent> for Change {
    fn from(e: &DomainEvent) -> Change {
        Change { event_id: e.id, kind: e.kind.clone(), subject_type: e.subject_type.clone(), subject_id: e.subject_id }
    }
}

/// Changes relayed by this process, for live views in this process (the embedded mode);
/// across processes they go through Redis pub/sub as well.
pub static LIVE: LazyLock<broadcast::Sender<Change>> = LazyLock::new(|| broadcast::channel(4096).0);

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
    /// Marks every event of the batch dispatched, commits, and returns the changes for live
    /// views (already sent to this process's `LIVE` channel).
    pub async fn commit(mut self) -> DomainResult<Vec<Change>> {
        let at = now();
        for e in &self.events {
            q_exec!(&mut self.tx.conn(), "UPDATE domain_events SET dispatched_at = $1 WHERE id = $2", at, e.id)?;
        }
        self.tx.commit_quiet().await?;
        let changes: Vec<Change> = self.events.iter().map(Change::from).collect();
        for c in &changes {
            let _ = LIVE.send(c.clone());
        }
        Ok(changes)
    }
}
