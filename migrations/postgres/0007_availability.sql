-- Availability (SPEC §11): one rules row per model (weekly windows in her time zone, one-off
-- blocks and extra windows, as JSON), and the slots the scheduler expands them into.
-- expanded_from / expanded_through: the local dates (YYYY-MM-DD) whose weekly windows are in
-- availability_slots; outside them free windows are computed from the rules directly.

CREATE TABLE availability_rules (
    model_id UUID PRIMARY KEY REFERENCES models(id),
    time_zone TEXT NOT NULL,
    weekly JSONB NOT NULL DEFAULT '[]',
    blocks JSONB NOT NULL DEFAULT '[]',
    extra JSONB NOT NULL DEFAULT '[]',
    expanded_from TEXT,
    expanded_through TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);

-- source: weekly (expanded from a weekly window) or extra (a one-off extra window).
CREATE TABLE availability_slots (
    id UUID PRIMARY KEY,
    model_id UUID NOT NULL REFERENCES models(id),
    start_at TIMESTAMPTZ NOT NULL,
    end_at TIMESTAMPTZ NOT NULL,
    source TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX availability_slots_model_time ON availability_slots (model_id, start_at);
CREATE INDEX availability_slots_time ON availability_slots (start_at);
CREATE INDEX bookings_holding_time ON bookings (start_at)
    WHERE status IN ('pending', 'deposit_required', 'confirmed', 'in_progress');
