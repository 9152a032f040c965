-- Outgoing webhooks: the OWNER's subscribers (a URL, the event types they want, the secret
-- Virel signs with, never shown after creation) and one row per delivery of an event to a
-- subscriber, unique on (subscription, event), updated at every attempt.
CREATE TABLE webhook_subscriptions (
    id UUID PRIMARY KEY,
    url TEXT NOT NULL,
    event_types JSONB NOT NULL,
    secret TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX webhook_subscriptions_enabled ON webhook_subscriptions (enabled);

CREATE TABLE webhooks_out (
    id UUID PRIMARY KEY,
    subscription_id UUID NOT NULL,
    event_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    url TEXT NOT NULL,
    -- pending, delivered, retrying, failed
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    response_code BIGINT,
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    delivered_at TIMESTAMPTZ,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX webhooks_out_status ON webhooks_out (status, id);
CREATE INDEX webhooks_out_subscription ON webhooks_out (subscription_id, id);
