//! The heart of Virel: entities, state machines, permissions, and the commands that change
//! state, each writing the row, its audit entry and its domain events in one transaction.
//! No HTTP and no queue here: the API, the workers and the scheduler all call into this crate.

pub mod action_center;
pub mod automation;
pub mod availability;
pub mod commands;
pub mod ctx;
pub mod error;
pub mod idempotency;
pub mod jobs;
pub mod machine;
pub mod matching;
pub mod outbox;
pub mod payments;
pub mod policy;
pub mod rows;
pub mod seed;
pub mod settings;
pub mod sla;
pub mod store;
pub mod validate;

pub use ctx::{Actor, Ctx};
pub use error::{DomainError, DomainResult};
pub use store::Db;

use chrono::{DateTime, SubsecRound, Utc};

/// The current time at the precision both engines store (microseconds), so a value written
/// and read back compares equal.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}
