//! Jobs: the kinds (one type each, `kinds`), the envelope and the enqueue port (`kind`), and
//! what the queues leave in the database (`ledger`: dead jobs, counters, outbox lag).

pub mod availability;
pub mod kind;
pub mod kinds;
mod ledger;
pub mod payments;

pub use kind::{
    BoxFut, CustomHandler, Job, JobCx, JobError, JobKind, Notifier, Queue, QueueBackend, Registry, Retry, RetrySettings,
};
pub use ledger::*;
