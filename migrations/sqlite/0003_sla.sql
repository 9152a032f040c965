-- SLA policies and the clock fields of tasks, exceptions and bookings.

CREATE TABLE sla_policies (
    id BLOB PRIMARY KEY,
    kind TEXT NOT NULL,
    item_type TEXT NOT NULL,
    name TEXT NOT NULL,
    minutes INTEGER NOT NULL,
    business_hours INTEGER NOT NULL DEFAULT 0,
    calendar TEXT NOT NULL,
    pause_on_awaiting_client INTEGER NOT NULL DEFAULT 1,
    at_risk_percent INTEGER NOT NULL DEFAULT 20,
    escalation_secs TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    UNIQUE (kind, item_type)
);

-- sla_started_at: when the SLA window opened; paused_at: the clock is stopped (the subject
-- waits on the client); sla_warned_at: the at-risk warning went out; acknowledged_at: someone
-- took it (stops the escalation ladder).
ALTER TABLE tasks ADD COLUMN sla_started_at TEXT;
ALTER TABLE tasks ADD COLUMN paused_at TEXT;
ALTER TABLE tasks ADD COLUMN sla_warned_at TEXT;
ALTER TABLE tasks ADD COLUMN acknowledged_at TEXT;
ALTER TABLE exceptions ADD COLUMN sla_started_at TEXT;
ALTER TABLE exceptions ADD COLUMN paused_at TEXT;
ALTER TABLE exceptions ADD COLUMN sla_warned_at TEXT;

-- What the scheduler already did for a booking: the starting-soon event and the safety checks
-- at start and end; and when the client confirmed on the day.
ALTER TABLE bookings ADD COLUMN starting_soon_at TEXT;
ALTER TABLE bookings ADD COLUMN safety_start_at TEXT;
ALTER TABLE bookings ADD COLUMN safety_end_at TEXT;
ALTER TABLE bookings ADD COLUMN client_confirmed_at TEXT;

CREATE INDEX tasks_open_due ON tasks (status, due_at);
CREATE INDEX exceptions_open_due ON exceptions (status, due_at);
CREATE INDEX bookings_clock ON bookings (status, start_at);
