-- Virel core schema (SQLite). The PostgreSQL twin lives in migrations/postgres.
-- BLOBs are 16-byte BLOBs and times RFC 3339 TEXT, as sqlx encodes them.

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
    id BLOB PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    on_duty INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE refresh_tokens (
    id BLOB PRIMARY KEY,
    user_id BLOB NOT NULL REFERENCES users(id),
    family_id BLOB NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    expires_at TEXT NOT NULL,
    used_at TEXT,
    revoked_at TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE clients (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    phone TEXT,
    email TEXT,
    telegram TEXT,
    preferred_channel TEXT,
    notes TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    blocked INTEGER NOT NULL DEFAULT 0,
    blocked_reason TEXT,
    bookings_count INTEGER NOT NULL DEFAULT 0,
    no_shows_count INTEGER NOT NULL DEFAULT 0,
    spend_amount INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX clients_phone ON clients (phone);
CREATE INDEX clients_email ON clients (lower(email));

CREATE TABLE models (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    base_location TEXT,
    rates TEXT NOT NULL DEFAULT '[]',
    languages TEXT NOT NULL DEFAULT '[]',
    attributes TEXT NOT NULL DEFAULT '{}',
    profile_text TEXT,
    seo_slug TEXT UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE model_stats (
    model_id BLOB PRIMARY KEY REFERENCES models(id),
    bookings_count INTEGER NOT NULL DEFAULT 0,
    completed_count INTEGER NOT NULL DEFAULT 0,
    rating_sum INTEGER NOT NULL DEFAULT 0,
    rating_count INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE model_media (
    id BLOB PRIMARY KEY,
    model_id BLOB NOT NULL REFERENCES models(id),
    url TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE inquiries (
    id BLOB PRIMARY KEY,
    source TEXT NOT NULL,
    client_id BLOB NOT NULL REFERENCES clients(id),
    requested_start TEXT,
    duration_minutes INTEGER,
    location TEXT,
    preferences TEXT NOT NULL DEFAULT '{}',
    budget_amount INTEGER,
    budget_currency TEXT,
    model_id BLOB REFERENCES models(id),
    assignee_id BLOB REFERENCES users(id),
    status TEXT NOT NULL,
    proposal TEXT,
    lost_reason TEXT,
    notes TEXT,
    booking_id BLOB,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX inquiries_status ON inquiries (status, id);

CREATE TABLE bookings (
    id BLOB PRIMARY KEY,
    client_id BLOB NOT NULL REFERENCES clients(id),
    model_id BLOB NOT NULL REFERENCES models(id),
    inquiry_id BLOB REFERENCES inquiries(id),
    start_at TEXT NOT NULL,
    end_at TEXT NOT NULL,
    location TEXT,
    price_amount INTEGER NOT NULL,
    price_currency TEXT NOT NULL,
    deposit_amount INTEGER NOT NULL DEFAULT 0,
    deposit_currency TEXT NOT NULL,
    status TEXT NOT NULL,
    assignee_id BLOB REFERENCES users(id),
    cancellation_reason TEXT,
    override_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    CHECK (end_at > start_at)
);
CREATE INDEX bookings_model_time ON bookings (model_id, start_at, end_at);
CREATE INDEX bookings_status ON bookings (status, id);

CREATE TABLE payments (
    id BLOB PRIMARY KEY,
    booking_id BLOB NOT NULL REFERENCES bookings(id),
    kind TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    provider_ref TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX payments_booking ON payments (booking_id);

CREATE TABLE tasks (
    id BLOB PRIMARY KEY,
    type TEXT NOT NULL,
    title TEXT NOT NULL,
    priority TEXT NOT NULL,
    status TEXT NOT NULL,
    assignee_id BLOB REFERENCES users(id),
    subject_type TEXT,
    subject_id BLOB,
    due_at TEXT,
    escalation_level INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX tasks_status ON tasks (status, id);
CREATE INDEX tasks_subject ON tasks (subject_type, subject_id);

CREATE TABLE exceptions (
    id BLOB PRIMARY KEY,
    type TEXT NOT NULL,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    subject_type TEXT,
    subject_id BLOB,
    assignee_id BLOB REFERENCES users(id),
    resolution TEXT,
    due_at TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX exceptions_status ON exceptions (status, id);
CREATE INDEX exceptions_subject ON exceptions (subject_type, subject_id);

CREATE TABLE notes (
    id BLOB PRIMARY KEY,
    subject_type TEXT NOT NULL,
    subject_id BLOB NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX notes_subject ON notes (subject_type, subject_id);

CREATE TABLE audit_log (
    id BLOB PRIMARY KEY,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT,
    before TEXT,
    after TEXT,
    ip TEXT,
    request_id TEXT,
    at TEXT NOT NULL
);
CREATE INDEX audit_entity ON audit_log (entity_type, entity_id, id);
CREATE INDEX audit_action_at ON audit_log (action, at);

CREATE TABLE domain_events (
    id BLOB PRIMARY KEY,
    type TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject_id BLOB NOT NULL,
    payload TEXT NOT NULL,
    actor TEXT NOT NULL,
    causation_id BLOB,
    depth INTEGER NOT NULL DEFAULT 0,
    occurred_at TEXT NOT NULL,
    dispatched_at TEXT
);
CREATE INDEX domain_events_undispatched ON domain_events (id) WHERE dispatched_at IS NULL;
CREATE INDEX domain_events_subject ON domain_events (subject_type, subject_id, id);

CREATE TABLE idempotency_keys (
    key TEXT NOT NULL,
    actor TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (actor, key)
);

-- Leader leases (the scheduler) and the ticks already fired, so no tick fires twice.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

CREATE TABLE schedule_runs (
    schedule TEXT NOT NULL,
    tick_at TEXT NOT NULL,
    run_by TEXT NOT NULL,
    PRIMARY KEY (schedule, tick_at)
);

-- Append-only: no role of the application may rewrite history.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
