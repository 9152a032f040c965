-- Outgoing webhooks: the OWNER's subscribers (a URL, the event types they want, the secret
-- Virel signs with, never shown after creation) and one row per delivery of an event to a
-- subscriber, unique on (subscription, event), updated at every attempt.
CREATE TABLE webhook_subscriptions (
    id BLOB PRIMARY KEY,
    url TEXT NOT NULL,
    event_types TEXT NOT NULL,
    secret TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX webhook_subscriptions_enabled ON webhook_subscriptions (enabled);

CREATE TABLE webhooks_out (
    id BLOB PRIMARY KEY,
    subscription_id BLOB NOT NULL,
    event_id BLOB NOT NULL,
    event_type TEXT NOT NULL,
    url TEXT NOT NULL,
    -- pending, delivered, retrying, failed
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    response_code INTEGER,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    delivered_at TEXT,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX webhooks_out_status ON webhooks_out (status, id);
CREATE INDEX webhooks_out_subscription ON webhooks_out (subscription_id, id);
