-- Virel core schema (PostgreSQL). The SQLite twin lives in migrations/sqlite.

CREATE TABLE roles (
    name TEXT PRIMARY KEY
);

CREATE TABLE permissions (
    name TEXT PRIMARY KEY
);

CREATE TABLE role_permissions (
    role TEXT NOT NULL REFERENCES roles(name),
    permission TEXT NOT NULL REFERENCES permissions(name),
    PRIMARY KEY (role, permission)
);

CREATE TABLE users (
    id UUID PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    on_duty BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);

CREATE TABLE refresh_tokens (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(id),
    family_id UUID NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE clients (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    phone TEXT,
    email TEXT,
    telegram TEXT,
    preferred_channel TEXT,
    notes TEXT,
    tags JSONB NOT NULL DEFAULT '[]',
    blocked BOOLEAN NOT NULL DEFAULT FALSE,
    blocked_reason TEXT,
    bookings_count BIGINT NOT NULL DEFAULT 0,
    no_shows_count BIGINT NOT NULL DEFAULT 0,
    spend_amount BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX clients_phone ON clients (phone);
CREATE INDEX clients_email ON clients (lower(email));

CREATE TABLE models (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    base_location TEXT,
    rates JSONB NOT NULL DEFAULT '[]',
    languages JSONB NOT NULL DEFAULT '[]',
    attributes JSONB NOT NULL DEFAULT '{}',
    profile_text TEXT,
    seo_slug TEXT UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);

CREATE TABLE model_stats (
    model_id UUID PRIMARY KEY REFERENCES models(id),
    bookings_count BIGINT NOT NULL DEFAULT 0,
    completed_count BIGINT NOT NULL DEFAULT 0,
    rating_sum BIGINT NOT NULL DEFAULT 0,
    rating_count BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE model_media (
    id UUID PRIMARY KEY,
    model_id UUID NOT NULL REFERENCES models(id),
    url TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE inquiries (
    id UUID PRIMARY KEY,
    source TEXT NOT NULL,
    client_id UUID NOT NULL REFERENCES clients(id),
    requested_start TIMESTAMPTZ,
    duration_minutes BIGINT,
    location TEXT,
    preferences JSONB NOT NULL DEFAULT '{}',
    budget_amount BIGINT,
    budget_currency TEXT,
    model_id UUID REFERENCES models(id),
    assignee_id UUID REFERENCES users(id),
    status TEXT NOT NULL,
    proposal JSONB,
    lost_reason TEXT,
    notes TEXT,
    booking_id UUID,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX inquiries_status ON inquiries (status, id);

CREATE TABLE bookings (
    id UUID PRIMARY KEY,
    client_id UUID NOT NULL REFERENCES clients(id),
    model_id UUID NOT NULL REFERENCES models(id),
    inquiry_id UUID REFERENCES inquiries(id),
    start_at TIMESTAMPTZ NOT NULL,
    end_at TIMESTAMPTZ NOT NULL,
    location TEXT,
    price_amount BIGINT NOT NULL,
    price_currency TEXT NOT NULL,
    deposit_amount BIGINT NOT NULL DEFAULT 0,
    deposit_currency TEXT NOT NULL,
    status TEXT NOT NULL,
    assignee_id UUID REFERENCES users(id),
    cancellation_reason TEXT,
    override_reason TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    CHECK (end_at > start_at)
);
CREATE INDEX bookings_model_time ON bookings (model_id, start_at, end_at);
CREATE INDEX bookings_status ON bookings (status, id);

CREATE TABLE payments (
    id UUID PRIMARY KEY,
    booking_id UUID NOT NULL REFERENCES bookings(id),
    kind TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    provider_ref TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX payments_booking ON payments (booking_id);

CREATE TABLE tasks (
    id UUID PRIMARY KEY,
    type TEXT NOT NULL,
    title TEXT NOT NULL,
    priority TEXT NOT NULL,
    status TEXT NOT NULL,
    assignee_id UUID REFERENCES users(id),
    subject_type TEXT,
    subject_id UUID,
    due_at TIMESTAMPTZ,
    escalation_level BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX tasks_status ON tasks (status, id);
CREATE INDEX tasks_subject ON tasks (subject_type, subject_id);

CREATE TABLE exceptions (
    id UUID PRIMARY KEY,
    type TEXT NOT NULL,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    subject_type TEXT,
    subject_id UUID,
    assignee_id UUID REFERENCES users(id),
    resolution TEXT,
    due_at TIMESTAMPTZ,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX exceptions_status ON exceptions (status, id);
CREATE INDEX exceptions_subject ON exceptions (subject_type, subject_id);

CREATE TABLE notes (
    id UUID PRIMARY KEY,
    subject_type TEXT NOT NULL,
    subject_id UUID NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX notes_subject ON notes (subject_type, subject_id);

CREATE TABLE audit_log (
    id UUID PRIMARY KEY,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT,
    before JSONB,
    after JSONB,
    ip TEXT,
    request_id TEXT,
    at TIMESTAMPTZ NOT NULL
);
CREATE INDEX audit_entity ON audit_log (entity_type, entity_id, id);
CREATE INDEX audit_action_at ON audit_log (action, at);

CREATE TABLE domain_events (
    id UUID PRIMARY KEY,
    type TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject_id UUID NOT NULL,
    payload JSONB NOT NULL,
    actor TEXT NOT NULL,
    causation_id UUID,
    depth BIGINT NOT NULL DEFAULT 0,
    occurred_at TIMESTAMPTZ NOT NULL,
    dispatched_at TIMESTAMPTZ
);
CREATE INDEX domain_events_undispatched ON domain_events (id) WHERE dispatched_at IS NULL;
CREATE INDEX domain_events_subject ON domain_events (subject_type, subject_id, id);

CREATE TABLE idempotency_keys (
    key TEXT NOT NULL,
    actor TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (actor, key)
);

-- Leader leases (the scheduler) and the ticks already fired, so no tick fires twice.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE schedule_runs (
    schedule TEXT NOT NULL,
    tick_at TIMESTAMPTZ NOT NULL,
    run_by TEXT NOT NULL,
    PRIMARY KEY (schedule, tick_at)
);

-- Append-only: no role of the application may rewrite history.
CREATE FUNCTION virel_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION virel_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION virel_append_only();

