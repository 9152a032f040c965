//! The store: one SQL text for PostgreSQL and SQLite, run through whichever pool is configured.
//!
//! Both engines accept `$N` placeholders and encode `Uuid`, `DateTime<Utc>` and `Json<T>`
//! natively, so every query is written once and the `q_*!` macros below expand it for each
//! driver. Engine differences live in the migrations and in the few methods of this module.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};

use tokio::sync::{Notify, broadcast};

use crate::error::DomainError;
use crate::outbox::Change;
use crate::settings::Settings;

/// The domain's handle: a connection pool on one of the two engines, and what the parts of
/// one app share through it (its settings, the relay's wake-up, the live-change channel).
/// Clones share all of it; two apps that each `connect` share nothing, even in one process.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    shared: Arc<Shared>,
}

#[derive(Clone, Debug)]
pub enum Pool {
    Pg(PgPool),
    Lite(SqlitePool),
}

/// Owned by one app and handed to its parts with the `Db`.
pub struct Shared {
    pub settings: Settings,
    /// Woken by every commit of this app, so its outbox relay dispatches at once instead of
    /// waiting for its next poll.
    pub wake: Notify,
    /// Changes relayed by this app, for its live views (the Action Center's WebSocket);
    /// across processes they go through Redis pub/sub as well.
    pub live: broadcast::Sender<Change>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("pool", &self.pool).field("settings", &self.shared.settings).finish()
    }
}

/// An open transaction. Dropping it without `commit` rolls it back.
pub struct Tx {
    inner: TxInner,
    shared: Arc<Shared>,
}

enum TxInner {
    Pg(Transaction<'static, Postgres>),
    Lite(Transaction<'static, Sqlite>),
}

/// A borrowed connection, the thing the query macros run on.
pub enum Conn<'a> {
    Pg(&'a mut PgConnection),
    Lite(&'a mut SqliteConnection),
}

/// A pooled connection for reads outside a transaction.
pub enum Handle {
    Pg(sqlx::pool::PoolConnection<Postgres>),
    Lite(sqlx::pool::PoolConnection<Sqlite>),
}

impl Db {
    /// Connects to `url` with the default settings (tests and tools).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, DomainError> {
        Db::connect_with(url, max_connections, Settings::default()).await
    }

    /// Connects to `url`: `postgres://...` or `sqlite://path` (created when missing).
    pub async fn connect_with(url: &str, max_connections: u32, settings: Settings) -> Result<Db, DomainError> {
        let pool = Pool::connect(url, max_connections).await?;
        let shared = Arc::new(Shared { settings, wake: Notify::new(), live: broadcast::channel(4096).0 });
        Ok(Db { pool, shared })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The same pool with other settings, for an app being set up (tests): the result shares
    /// the pool but not the wake-up or the live channel, so call it before anything runs.
    pub fn with_settings(self, settings: Settings) -> Db {
        let shared = Arc::new(Shared { settings, wake: Notify::new(), live: broadcast::channel(4096).0 });
        Db { pool: self.pool, shared }
    }

    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }
}

/// How long a request waits for a PostgreSQL connection before it fails with
/// `DomainError::Unavailable` (503 with `Retry-After`): while the database is unreachable
/// requests fail fast instead of hanging, and a blip shorter than this is ridden out.
/// The message of a 503 whose transaction was sent to COMMIT when the connection was lost.
pub const COMMIT_OUTCOME_UNKNOWN: &str =
    "the database connection was lost while committing; the change may have been saved: read it back before retrying";

pub const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a pooled PostgreSQL connection may sit idle before it is pinged when taken out.
const PG_PING_IDLE: Duration = Duration::from_secs(1);

impl Pool {
    async fn connect(url: &str, max_connections: u32) -> Result<Pool, DomainError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url).map_err(DomainError::from)?;
            // sqlx pings a connection when it goes back to the pool and, by default, again when
            // it is taken out: two extra round trips per transaction, a third of the statements
            // of an automation action. A connection is only pinged on the way out when it sat
            // idle for a while (a restarted server leaves idle ones dead); one just returned
            // passed its release ping.
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(PG_ACQUIRE_TIMEOUT)
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= PG_PING_IDLE {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                })
                .connect_with(opts)
                .await?;
            Ok(Pool::Pg(pool))
        } else if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(DomainError::from)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30));
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await?;
            Ok(Pool::Lite(pool))
        } else {
            Err(DomainError::Invalid(format!(
                "DATABASE_URL must start with postgres:// or sqlite: (got {})",
                url.split(':').next().unwrap_or("")
            )))
        }
    }
}

impl Db {
    pub fn engine(&self) -> &'static str {
        match self.pool {
            Pool::Pg(_) => "postgres",
            Pool::Lite(_) => "sqlite",
        }
    }

    /// Applies the engine's migrations (`migrations/postgres` or `migrations/sqlite`).
    pub async fn migrate(&self) -> Result<(), DomainError> {
        match &self.pool {
            Pool::Pg(p) => sqlx::migrate!("../migrations/postgres").run(p).await,
            Pool::Lite(p) => sqlx::migrate!("../migrations/sqlite").run(p).await,
        }
        .map_err(|e| DomainError::Internal(format!("migration failed: {e}")))
    }

    /// How many of this build's migrations the database has not applied (all of them when it
    /// has no schema yet): the scaled mode's processes refuse to start on a schema that
    /// `virel migrate` has not brought up to date.
    pub async fn pending_migrations(&self) -> Result<usize, DomainError> {
        let known = match &self.pool {
            Pool::Pg(_) => sqlx::migrate!("../migrations/postgres").migrations.len(),
            Pool::Lite(_) => sqlx::migrate!("../migrations/sqlite").migrations.len(),
        };
        let sql = "SELECT COUNT(*) FROM _sqlx_migrations WHERE success";
        let applied: Result<i64, sqlx::Error> = match &self.pool {
            Pool::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            Pool::Lite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        };
        let applied = match applied {
            Ok(n) => n.max(0) as usize,
            // No migrations table: nothing applied yet (42P01 is PostgreSQL's undefined_table).
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("42P01") || e.message().contains("no such table") =>
            {
                0
            }
            Err(e) => return Err(e.into()),
        };
        Ok(known.saturating_sub(applied))
    }

    /// Starts a write transaction. On SQLite it is `BEGIN IMMEDIATE`: writers queue for the
    /// database lock up front instead of failing when a read lock cannot be upgraded, which is
    /// also what makes check-then-write guards (booking overlap) race-free there.
    pub async fn begin(&self) -> Result<Tx, DomainError> {
        let inner = match &self.pool {
            Pool::Pg(p) => TxInner::Pg(p.begin().await?),
            Pool::Lite(p) => TxInner::Lite(p.begin_with("BEGIN IMMEDIATE").await?),
        };
        Ok(Tx { inner, shared: self.shared.clone() })
    }

    pub async fn acquire(&self) -> Result<Handle, DomainError> {
        Ok(match &self.pool {
            Pool::Pg(p) => Handle::Pg(p.acquire().await?),
            Pool::Lite(p) => Handle::Lite(p.acquire().await?),
        })
    }

    pub async fn ping(&self) -> bool {
        let res = match &self.pool {
            Pool::Pg(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
            Pool::Lite(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
        };
        res.is_ok()
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Pg(p) => p.close().await,
            Pool::Lite(p) => p.close().await,
        }
    }
}

impl Tx {
    pub fn conn(&mut self) -> Conn<'_> {
        match &mut self.inner {
            TxInner::Pg(t) => Conn::Pg(t),
            TxInner::Lite(t) => Conn::Lite(t),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.inner, TxInner::Pg(_))
    }

    /// Commits, and wakes this app's outbox relay: the commit may have written events.
    pub async fn commit(self) -> Result<(), DomainError> {
        let shared = self.shared.clone();
        self.commit_quiet().await?;
        shared.wake.notify_one();
        Ok(())
    }

    /// Commits without waking the relay (the relay's own transactions).
    pub async fn commit_quiet(self) -> Result<(), DomainError> {
        let done = match self.inner {
            TxInner::Pg(t) => t.commit().await,
            TxInner::Lite(t) => t.commit().await,
        };
        // A connection lost during COMMIT leaves the outcome unknown (the server may have
        // committed before the reply was lost): say so rather than "nothing was written".
        done.map_err(|e| match DomainError::from(e) {
            DomainError::Unavailable(_) => DomainError::Unavailable(COMMIT_OUTCOME_UNKNOWN.into()),
            other => other,
        })
    }

    /// Takes the row lock that serialises writers of one parent row (a model's bookings).
    /// PostgreSQL locks the row until commit; SQLite already holds the database write lock.
    pub async fn lock_row(&mut self, table: LockTable, id: uuid::Uuid) -> Result<bool, DomainError> {
        let n = match (&mut self.inner, table) {
            (TxInner::Pg(t), LockTable::Models) => sqlx::query("SELECT id FROM models WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut **t)
                .await?
                .is_some(),
            (TxInner::Lite(t), LockTable::Models) => {
                sqlx::query("SELECT id FROM models WHERE id = $1").bind(id).fetch_optional(&mut **t).await?.is_some()
            }
            (TxInner::Pg(t), LockTable::Payments) => sqlx::query("SELECT id FROM payments WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut **t)
                .await?
                .is_some(),
            (TxInner::Lite(t), LockTable::Payments) => {
                sqlx::query("SELECT id FROM payments WHERE id = $1").bind(id).fetch_optional(&mut **t).await?.is_some()
            }
        };
        Ok(n)
    }
}

impl Tx {
    /// Serialises transactions that work on the same natural key (a client's phone or email),
    /// where no row exists yet to lock: a transaction-scoped advisory lock on PostgreSQL;
    /// SQLite's write lock already serialises writers.
    pub async fn lock_key(&mut self, key: &str) -> Result<(), DomainError> {
        if let TxInner::Pg(t) = &mut self.inner {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(key).execute(&mut **t).await?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
pub enum LockTable {
    Models,
    Payments,
}

impl Handle {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Handle::Pg(c) => Conn::Pg(c),
            Handle::Lite(c) => Conn::Lite(c),
        }
    }
}

/// `q_all!(conn, Type, "SQL", binds...)` → `Result<Vec<Type>, DomainError>`.
#[macro_export]
macro_rules! q_all {
    ($conn:expr, $t:ty, $sql:expr $(, $b:expr)* $(,)?) => {
        match &mut *$conn {
            $crate::store::Conn::Pg(c) => sqlx::query_as::<sqlx::Postgres, $t>($sql)$(.bind($b))*.fetch_all(&mut **c).await,
            $crate::store::Conn::Lite(c) => sqlx::query_as::<sqlx::Sqlite, $t>($sql)$(.bind($b))*.fetch_all(&mut **c).await,
        }.map_err($crate::error::DomainError::from)
    };
}

/// `q_opt!(conn, Type, "SQL", binds...)` → `Result<Option<Type>, DomainError>`.
#[macro_export]
macro_rules! q_opt {
    ($conn:expr, $t:ty, $sql:expr $(, $b:expr)* $(,)?) => {
        match &mut *$conn {
            $crate::store::Conn::Pg(c) => sqlx::query_as::<sqlx::Postgres, $t>($sql)$(.bind($b))*.fetch_optional(&mut **c).await,
            $crate::store::Conn::Lite(c) => sqlx::query_as::<sqlx::Sqlite, $t>($sql)$(.bind($b))*.fetch_optional(&mut **c).await,
        }.map_err($crate::error::DomainError::from)
    };
}

/// `q_one!(conn, Type, "SQL", binds...)` → `Result<Type, DomainError>`.
#[macro_export]
macro_rules! q_one {
    ($conn:expr, $t:ty, $sql:expr $(, $b:expr)* $(,)?) => {
        match &mut *$conn {
            $crate::store::Conn::Pg(c) => sqlx::query_as::<sqlx::Postgres, $t>($sql)$(.bind($b))*.fetch_one(&mut **c).await,
            $crate::store::Conn::Lite(c) => sqlx::query_as::<sqlx::Sqlite, $t>($sql)$(.bind($b))*.fetch_one(&mut **c).await,
        }.map_err($crate::error::DomainError::from)
    };
}

/// `q_exec!(conn, "SQL", binds...)` → `Result<u64 (rows affected), DomainError>`.
#[macro_export]
macro_rules! q_exec {
    ($conn:expr, $sql:expr $(, $b:expr)* $(,)?) => {
        match &mut *$conn {
            $crate::store::Conn::Pg(c) => sqlx::query::<sqlx::Postgres>($sql)$(.bind($b))*.execute(&mut **c).await.map(|r| r.rows_affected()),
            $crate::store::Conn::Lite(c) => sqlx::query::<sqlx::Sqlite>($sql)$(.bind($b))*.execute(&mut **c).await.map(|r| r.rows_affected()),
        }.map_err($crate::error::DomainError::from)
    };
}
