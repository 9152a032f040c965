//! The state machines of inquiries, bookings, tasks and exceptions, as data.
//!
//! Each table lists every allowed (from, to) pair; anything else is refused with the allowed
//! targets. Guards (payments, overlap, reasons, times) are applied by the commands that use them.

pub struct Machine {
    pub entity: &'static str,
    pub states: &'static [&'static str],
    pub transitions: &'static [(&'static str, &'static str)],
    pub terminal: &'static [&'static str],
}

impl Machine {
    pub fn is_state(&self, s: &str) -> bool {
        self.states.contains(&s)
    }

    pub fn allowed_from(&self, from: &str) -> Vec<&'static str> {
        self.transitions.iter().filter(|(f, _)| *f == from).map(|(_, t)| *t).collect()
    }

    pub fn allows(&self, from: &str, to: &str) -> bool {
        self.transitions.iter().any(|(f, t)| *f == from && *t == to)
    }

    /// Ok when the pair is in the table, else the `invalid_transition` error with the targets.
    pub fn check(&self, from: &str, to: &str) -> Result<(), crate::DomainError> {
        if self.allows(from, to) {
            Ok(())
        } else {
            Err(crate::DomainError::InvalidTransition {
                entity: self.entity,
                from: from.to_string(),
                to: to.to_string(),
                allowed: self.allowed_from(from),
            })
        }
    }
}

pub const INQUIRY: Machine = Machine {
    entity: "inquiry",
    states: &["new", "qualified", "awaiting_client", "awaiting_deposit", "converted", "lost"],
    transitions: &[
        ("new", "qualified"),
        ("qualified", "awaiting_client"),
        ("awaiting_client", "awaiting_deposit"),
        ("awaiting_deposit", "converted"),
        ("new", "lost"),
        ("qualified", "lost"),
        ("awaiting_client", "lost"),
        ("awaiting_deposit", "lost"),
    ],
    terminal: &["converted", "lost"],
};

pub const BOOKING: Machine = Machine {
    entity: "booking",
    states: &["draft", "pending", "deposit_required", "confirmed", "in_progress", "completed", "cancelled", "no_show"],
    transitions: &[
        ("draft", "pending"),
        ("pending", "deposit_required"),
        ("deposit_required", "confirmed"),
        ("confirmed", "in_progress"),
        ("in_progress", "completed"),
        ("draft", "cancelled"),
        ("pending", "cancelled"),
        ("deposit_required", "cancelled"),
        ("confirmed", "cancelled"),
        ("confirmed", "no_show"),
    ],
    terminal: &["completed", "cancelled", "no_show"],
};

/// Booking states that hold the model's time: two of these may not overlap.
pub const BOOKING_HOLDS_TIME: &[&str] = &["pending", "deposit_required", "confirmed", "in_progress"];

pub const TASK: Machine = Machine {
    entity: "task",
    states: &["open", "in_progress", "done", "cancelled"],
    transitions: &[
        ("open", "in_progress"),
        ("in_progress", "done"),
        ("open", "cancelled"),
        ("in_progress", "cancelled"),
    ],
    terminal: &["done", "cancelled"],
};

pub const EXCEPTION: Machine = Machine {
    entity: "exception",
    states: &["open", "acknowledged", "resolved", "dismissed"],
    transitions: &[
        ("open", "acknowledged"),
        ("acknowledged", "resolved"),
        ("open", "dismissed"),
        ("acknowledged", "dismissed"),
    ],
    terminal: &["resolved", "dismissed"],
};

pub const TASK_TYPES: &[&str] =
    &["confirm_booking", "follow_up", "deposit_reminder", "notify_model", "safety_check", "contact_client", "custom"];
pub const PRIORITIES: &[&str] = &["critical", "high", "normal", "low"];
pub const EXCEPTION_TYPES: &[&str] = &[
    "payment_failed",
    "no_show_risk",
    "sla_breached",
    "double_booking",
    "notification_failed",
    "job_failed",
    "webhook_rejected",
    "webhook_failed",
    "blocked_client",
    "safety_check_missed",
];
pub const SEVERITIES: &[&str] = &["critical", "high", "medium", "low"];
pub const INQUIRY_SOURCES: &[&str] = &["web", "phone", "telegram", "email", "partner"];
pub const CHANNELS: &[&str] = &["telegram", "sms", "email", "phone"];
pub const SUBJECT_TYPES: &[&str] = &["inquiry", "booking", "client", "model", "task", "exception", "payment"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transition_names_known_states_and_terminals_have_no_exit() {
        for m in [&INQUIRY, &BOOKING, &TASK, &EXCEPTION] {
            for (f, t) in m.transitions {
                assert!(m.is_state(f) && m.is_state(t), "{} {f}->{t}", m.entity);
            }
            for s in m.terminal {
                assert!(m.allowed_from(s).is_empty(), "{} {s} is terminal", m.entity);
            }
        }
    }
}
