-- SLA policies and the clock fields of tasks, exceptions and bookings.

CREATE TABLE sla_policies (
    id UUID PRIMARY KEY,
    kind TEXT NOT NULL,
    item_type TEXT NOT NULL,
    name TEXT NOT NULL,
    minutes BIGINT NOT NULL,
    business_hours BOOLEAN NOT NULL DEFAULT FALSE,
    calendar JSONB NOT NULL,
    pause_on_awaiting_client BOOLEAN NOT NULL DEFAULT TRUE,
    at_risk_percent BIGINT NOT NULL DEFAULT 20,
    escalation_secs JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    UNIQUE (kind, item_type)
);

-- sla_started_at: when the SLA window opened; paused_at: the clock is stopped (the subject
-- waits on the client); sla_warned_at: the at-risk warning went out; acknowledged_at: someone
-- took it (stops the escalation ladder).
ALTER TABLE tasks ADD COLUMN sla_started_at TIMESTAMPTZ;
ALTER TABLE tasks ADD COLUMN paused_at TIMESTAMPTZ;
ALTER TABLE tasks ADD COLUMN sla_warned_at TIMESTAMPTZ;
ALTER TABLE tasks ADD COLUMN acknowledged_at TIMESTAMPTZ;
ALTER TABLE exceptions ADD COLUMN sla_started_at TIMESTAMPTZ;
ALTER TABLE exceptions ADD COLUMN paused_at TIMESTAMPTZ;
ALTER TABLE exceptions ADD COLUMN sla_warned_at TIMESTAMPTZ;

-- What the scheduler already did for a booking: the starting-soon event and the safety checks
-- at start and end; and when the client confirmed on the day.
ALTER TABLE bookings ADD COLUMN starting_soon_at TIMESTAMPTZ;
ALTER TABLE bookings ADD COLUMN safety_start_at TIMESTAMPTZ;
ALTER TABLE bookings ADD COLUMN safety_end_at TIMESTAMPTZ;
ALTER TABLE bookings ADD COLUMN client_confirmed_at TIMESTAMPTZ;

CREATE INDEX tasks_open_due ON tasks (status, due_at);
CREATE INDEX exceptions_open_due ON exceptions (status, due_at);
CREATE INDEX bookings_clock ON bookings (status, start_at);
