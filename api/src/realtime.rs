//! Live updates of the Action Center: a hub of WebSocket connections, each with its user's
//! context, fed by the changes the outbox relay announces (in this process, and through Redis
//! pub/sub from other processes). Each connection hears `item.upserted` for items it may see
//! and `item.removed` for items it saw that closed or moved out of its view.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures_util::StreamExt;
use poem_openapi::types::ToJSON;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;
use virel_domain::action_center::{self, Filter, Item};
use virel_domain::outbox::Change;
use virel_domain::{Ctx, Db};

use crate::dto::{CountsOut, ItemOut};

/// An item as the REST list shows it (`ItemOut`), for the live feed.
fn wire(item: Item) -> Value {
    ItemOut::from(item).to_json().unwrap_or(Value::Null)
}

/// Messages a connection may have waiting; a client that falls further behind is told to
/// `resync` (re-fetch its list) instead of being fed a silently diverging one.
pub const QUEUE_LIMIT: usize = 256;

/// The resync message.
pub const RESYNC: &str = r#"{"type":"resync"}"#;

/// The `snapshot` message for `ctx`: its open items and counts (and which items it holds).
pub async fn snapshot(db: &Db, ctx: &Ctx) -> virel_domain::DomainResult<(Value, Vec<(String, uuid::Uuid)>)> {
    let l = action_center::list(db, ctx, &Filter::default()).await?;
    let held = l.items.iter().map(|i| (i.kind.clone(), i.id)).collect();
    let items: Vec<Value> = l.items.into_iter().map(wire).collect();
    Ok((json!({"type": "snapshot", "items": items, "counts": CountsOut::from(&l.counts).to_json()}), held))
}

struct Conn {
    ctx: Ctx,
    tx: mpsc::Sender<String>,
    /// Set when a message could not be queued; the socket then sends `resync`.
    behind: std::sync::Arc<AtomicBool>,
    /// Items this connection was told about, to know when to tell it they are gone.
    seen: HashSet<(String, Uuid)>,
}

#[derive(Default)]
pub struct Hub {
    conns: Mutex<HashMap<u64, Conn>>,
    next: AtomicU64,
    started: AtomicBool,
    /// Events already pushed (a change can arrive both in-process and through Redis).
    recent: Mutex<VecDeque<Uuid>>,
}

impl Hub {
    pub fn connections(&self) -> usize {
        self.conns.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Registers a connection and sends it a snapshot of its Action Center: its id, its
    /// bounded queue, and the flag set when the queue overflowed (send `RESYNC` then).
    pub async fn join(&self, db: &Db, ctx: Ctx) -> (u64, mpsc::Receiver<String>, std::sync::Arc<AtomicBool>) {
        let (tx, rx) = mpsc::channel(QUEUE_LIMIT);
        let behind = std::sync::Arc::new(AtomicBool::new(false));
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut seen = HashSet::new();
        let snapshot = match snapshot(db, &ctx).await {
            Ok((v, items)) => {
                seen.extend(items);
                v
            }
            Err(e) => json!({"type": "error", "error": {"code": e.code(), "message": e.to_string()}}),
        };
        let _ = tx.try_send(snapshot.to_string());
        if let Ok(mut c) = self.conns.lock() {
            c.insert(id, Conn { ctx, tx, behind: behind.clone(), seen });
            metrics::gauge!("virel_websocket_connections").increment(1.0);
        }
        (id, rx, behind)
    }

    pub fn leave(&self, id: u64) {
        if let Ok(mut c) = self.conns.lock()
            && c.remove(&id).is_some()
        {
            metrics::gauge!("virel_websocket_connections").decrement(1.0);
        }
    }

    fn first_time(&self, event: Uuid) -> bool {
        let Ok(mut r) = self.recent.lock() else { return true };
        if r.contains(&event) {
            return false;
        }
        r.push_back(event);
        if r.len() > 4096 {
            r.pop_front();
        }
        true
    }

    /// Pushes one change to every connection allowed to see the item it touched.
    pub async fn on_change(&self, db: &Db, change: &Change) {
        if !matches!(change.subject_type.as_str(), "task" | "exception") || !self.first_time(change.event_id) {
            return;
        }
        if self.connections() == 0 {
            return;
        }
        let item = match action_center::item(db, &change.subject_type, change.subject_id).await {
            Ok(Some(i)) => i,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "live update: cannot read the item");
                return;
            }
        };
        self.push(&item);
    }

    fn push(&self, item: &Item) {
        let key = (item.kind.clone(), item.id);
        let upserted = json!({"type": "item.upserted", "item": wire(item.clone())}).to_string();
        let removed = json!({"type": "item.removed", "item": {"kind": item.kind, "id": item.id}}).to_string();
        let Ok(mut conns) = self.conns.lock() else { return };
        conns.retain(|_, c| {
            let msg = if item.open && action_center::visible_to(&c.ctx, item) {
                c.seen.insert(key.clone());
                Some(&upserted)
            } else if c.seen.remove(&key) {
                Some(&removed)
            } else {
                None
            };
            // A closed socket drops its connection; a full queue asks the client to resync.
            match msg.map(|m| c.tx.try_send(m.clone())) {
                None | Some(Ok(())) => true,
                Some(Err(mpsc::error::TrySendError::Full(_))) => {
                    c.behind.store(true, Ordering::SeqCst);
                    true
                }
                Some(Err(mpsc::error::TrySendError::Closed(_))) => false,
            }
        });
    }

    /// Starts listening (once): to this process's relay, and to Redis when `redis` names the
    /// URL and channel other processes publish on.
    pub fn start(self: &std::sync::Arc<Self>, db: Db, redis: Option<(String, String)>) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let (hub, db2) = (self.clone(), db.clone());
        tokio::spawn(async move {
            let mut rx = db2.shared().live.subscribe();
            loop {
                match rx.recv().await {
                    Ok(c) => hub.on_change(&db2, &c).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "live updates lagged");
                    }
                    Err(_) => break,
                }
            }
        });
        if let Some((url, channel)) = redis {
            let hub = self.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = listen_redis(&hub, &db, &url, &channel).await {
                        tracing::warn!(error = %e, "live updates from Redis interrupted; reconnecting");
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            });
        }
    }
}

async fn listen_redis(hub: &Hub, db: &Db, url: &str, channel: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let mut stream = pubsub.on_message();
    while let Some(msg) = stream.next().await {
        let payload: String = msg.get_payload()?;
        match serde_json::from_str::<Vec<Change>>(&payload) {
            Ok(changes) => {
                for c in &changes {
                    hub.on_change(db, c).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "unreadable live message"),
        }
    }
    Ok(())
}
