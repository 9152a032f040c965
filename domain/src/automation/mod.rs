//! The automation engine: rules triggered by domain events, evaluated by workers (never inside
//! a request), acting through the same commands as people with actor `automation:<rule id>`.
//! Each evaluation and each action is recorded in `automation_executions`, unique on
//! (rule, event, action index), in the same transaction as the action's effect: an event
//! delivered twice never acts twice.

pub mod actions;
pub mod crud;
pub mod defaults;
pub mod delayed;
pub mod dry_run;
pub mod engine;
pub mod rules;

pub use crud::{
    Execution, Rule, RuleInput, create_rule, delete_rule, get_rule, list_executions, list_rules, load_rule, update_rule,
};
pub use defaults::seed_defaults;
pub use delayed::{claim_due_actions, requeue_stale_claims, run_delayed};
pub use dry_run::{DryRun, SampleEvent, dry_run};
pub use engine::{EventOutcome, envelope, process_event};
pub use rules::{Action, Condition, MAX_DEPTH};
