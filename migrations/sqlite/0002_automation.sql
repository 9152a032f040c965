-- Automation rules, their executions (unique per rule, event and action: a redelivered event
-- never runs an action twice), notifications, and dead jobs kept for inspection and retry.

CREATE TABLE automation_rules (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    trigger TEXT NOT NULL,
    conditions TEXT NOT NULL,
    actions TEXT NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX automation_rules_trigger ON automation_rules (trigger);

-- action_index -1 is the evaluation of the conditions (matched / skipped); 0.. are actions
-- (succeeded / failed / scheduled / queued / skipped).
CREATE TABLE automation_executions (
    id BLOB PRIMARY KEY,
    rule_id BLOB NOT NULL,
    event_id BLOB NOT NULL,
    action_index INTEGER NOT NULL,
    status TEXT NOT NULL,
    actions_result TEXT,
    error TEXT,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    run_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (rule_id, event_id, action_index)
);
CREATE INDEX automation_executions_due ON automation_executions (status, run_at);
CREATE INDEX automation_executions_rule ON automation_executions (rule_id, id);

CREATE TABLE notifications (
    id BLOB PRIMARY KEY,
    channel TEXT NOT NULL,
    recipient TEXT,
    template TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    provider_id TEXT,
    subject_type TEXT,
    subject_id BLOB,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE dead_jobs (
    id BLOB PRIMARY KEY,
    queue TEXT NOT NULL,
    kind TEXT NOT NULL,
    job TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    died_at TEXT NOT NULL,
    retried_at TEXT
);
CREATE INDEX dead_jobs_queue ON dead_jobs (queue, id);

-- Per-minute job outcomes per queue, for the queue dashboard (done, failed, retried, dead).
CREATE TABLE job_stats (
    queue TEXT NOT NULL,
    minute TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    retried INTEGER NOT NULL DEFAULT 0,
    dead INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, minute)
);
