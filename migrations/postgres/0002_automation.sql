-- Automation rules, their executions (unique per rule, event and action: a redelivered event
-- never runs an action twice), notifications, and dead jobs kept for inspection and retry.

CREATE TABLE automation_rules (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    trigger TEXT NOT NULL,
    conditions JSONB NOT NULL,
    actions JSONB NOT NULL,
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX automation_rules_trigger ON automation_rules (trigger);

-- action_index -1 is the evaluation of the conditions (matched / skipped); 0.. are actions
-- (succeeded / failed / scheduled / queued / skipped).
CREATE TABLE automation_executions (
    id UUID PRIMARY KEY,
    rule_id UUID NOT NULL,
    event_id UUID NOT NULL,
    action_index BIGINT NOT NULL,
    status TEXT NOT NULL,
    actions_result JSONB,
    error TEXT,
    duration_ms BIGINT NOT NULL DEFAULT 0,
    run_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (rule_id, event_id, action_index)
);
CREATE INDEX automation_executions_due ON automation_executions (status, run_at);
CREATE INDEX automation_executions_rule ON automation_executions (rule_id, id);

CREATE TABLE notifications (
    id UUID PRIMARY KEY,
    channel TEXT NOT NULL,
    recipient TEXT,
    template TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    provider_id TEXT,
    subject_type TEXT,
    subject_id UUID,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE dead_jobs (
    id UUID PRIMARY KEY,
    queue TEXT NOT NULL,
    kind TEXT NOT NULL,
    job JSONB NOT NULL,
    attempts BIGINT NOT NULL,
    error TEXT NOT NULL,
    died_at TIMESTAMPTZ NOT NULL,
    retried_at TIMESTAMPTZ
);
CREATE INDEX dead_jobs_queue ON dead_jobs (queue, id);

-- Per-minute job outcomes per queue, for the queue dashboard (done, failed, retried, dead).
CREATE TABLE job_stats (
    queue TEXT NOT NULL,
    minute TIMESTAMPTZ NOT NULL,
    done BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    retried BIGINT NOT NULL DEFAULT 0,
    dead BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, minute)
);
