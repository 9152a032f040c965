//! The outbox: `domain_events` rows not yet dispatched are handed to the queues and marked
//! dispatched in one transaction per batch. A relay that dies mid-batch leaves the batch
//! undispatched, so it is sent again (handlers are idempotent); none is ever lost.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::DomainResult;
use crate::rows::DomainEvent;
use crate::store::{Db, Pool, Tx};
use crate::{now, q_all, q_exec};

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

/// A batch of undispatched events, oldest first: push each to its queue, then `commit` marks
/// them dispatched. Dropping the batch (a failed push, a crash) leaves them undispatched, so
/// they are sent again. On PostgreSQL the batch is held in an open transaction and concurrent
/// relays take disjoint batches (SKIP LOCKED). On SQLite it is read outside a transaction, so
/// the database's one write lock is not held while the jobs go to the queue file (writers
/// would wait behind every push); the dispatch mark is a short write transaction after the
/// push. The embedded mode runs one relay per file; were there two, a batch could be sent
/// twice, which the handlers' idempotency absorbs.
pub struct Batch {
    tx: Option<Tx>,
    db: Db,
    pub events: Vec<DomainEvent>,
}

pub async fn claim(db: &Db, limit: i64) -> DomainResult<Batch> {
    if matches!(db.pool(), Pool::Pg(_)) {
        let mut tx = db.begin().await?;
        let events = q_all!(
            &mut tx.conn(),
            DomainEvent,
            "SELECT * FROM domain_events WHERE dispatched_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit
        )?;
        return Ok(Batch { tx: Some(tx), db: db.clone(), events });
    }
    let mut h = db.acquire().await?;
    let events = q_all!(
        &mut h.conn(),
        DomainEvent,
        "SELECT * FROM domain_events WHERE dispatched_at IS NULL ORDER BY id LIMIT $1",
        limit
    )?;
    Ok(Batch { tx: None, db: db.clone(), events })
}

impl Batch {
    /// Who listens, read with the batch (two queries per batch), for `kinds::for_event`: an
    /// event whose type no enabled rule has as trigger causes no automation job. A rule saved
    /// (or enabled) after this read acts on later batches.
    pub async fn listeners(&mut self) -> DomainResult<crate::jobs::kinds::Listeners> {
        #[derive(sqlx::FromRow)]
        struct Trigger {
            trigger: String,
        }
        let mut handle = None;
        let mut conn = match &mut self.tx {
            Some(tx) => tx.conn(),
            None => handle.insert(self.db.acquire().await?).conn(),
        };
        let triggers =
            q_all!(&mut conn, Trigger, "SELECT DISTINCT trigger FROM automation_rules WHERE enabled = $1", true)?;
        Ok(crate::jobs::kinds::Listeners {
            rule_triggers: triggers.into_iter().map(|t| t.trigger).collect(),
            subscribers: crate::webhooks::enabled_subscribers(&mut conn).await?,
        })
    }

    /// Marks every event of the batch dispatched, commits, and returns the changes for live
    /// views (already sent to this app's live channel).
    pub async fn commit(mut self) -> DomainResult<Vec<Change>> {
        let mut tx = match self.tx.take() {
            Some(tx) => tx,
            None => self.db.begin().await?,
        };
        let at = now();
        // Sixteen rows a statement (the last chunk repeats its last id): few round trips, one
        // SQL text for both engines.
        for chunk in self.events.chunks(16) {
            let id = |i: usize| chunk.get(i).unwrap_or(&chunk[chunk.len() - 1]).id;
            q_exec!(
                &mut tx.conn(),
                "UPDATE domain_events SET dispatched_at = $1
                 WHERE id IN ($2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                at,
                id(0),
                id(1),
                id(2),
                id(3),
                id(4),
                id(5),
                id(6),
                id(7),
                id(8),
                id(9),
                id(10),
                id(11),
                id(12),
                id(13),
                id(14),
                id(15)
            )?;
        }

        tx.commit_quiet().await?;
        let changes: Vec<Change> = self.events.iter().map(Change::from).collect();
        for c in &changes {
            let _ = self.db.shared().live.send(c.clone());
        }
        Ok(changes)
    }
}

/// Wakes this process's relay when another process commits events (PostgreSQL LISTEN on the
/// channel `emit` notifies); returns at once on SQLite, where one process owns the file.
pub async fn listen_for_commits(db: &Db) {
    let Pool::Pg(pool) = db.pool() else { return };
    loop {
        let listener = async {
            let mut l = sqlx::postgres::PgListener::connect_with(pool).await?;
            l.listen("virel_outbox").await?;
            loop {
                l.recv().await?;
                db.shared().wake.notify_one();
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        if let Err(e) = listener.await {
            tracing::warn!(error = %e, "outbox listener interrupted; polling meanwhile");
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
