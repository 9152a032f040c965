//! SLA: how long an item may stay open (a policy per task or exception type, in wall-clock
//! or business hours of the agency's calendar), its state (ok, at_risk, breached), the clock
//! pausing while the subject waits on the client, and the escalation ladder the sweep climbs.

pub mod calendar;
pub mod clock;
pub mod policy;
pub mod sweep;

pub use calendar::Calendar;
pub use clock::{ClockOutcome, booking_clock, client_confirmed, pause_for_subject};
pub use policy::{Policy, PolicyPatch, deadline, list_policies, policy_for, seed_defaults, state, update_policy};
pub use sweep::{SweepOutcome, escalate, escalate_exception, sweep};
