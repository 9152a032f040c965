-- Payments through Stripe (SPEC §9): the PaymentIntent's client secret for the frontend,
-- refunds as payments of kind 'refund' pointing at the payment they refund, the provider's
-- last word; and every incoming webhook, verified or not, unique on the provider's event id.
ALTER TABLE payments ADD COLUMN client_secret TEXT;
ALTER TABLE payments ADD COLUMN refund_of UUID REFERENCES payments(id);
ALTER TABLE payments ADD COLUMN reason TEXT;
ALTER TABLE payments ADD COLUMN error TEXT;
CREATE UNIQUE INDEX payments_provider_ref ON payments (provider_ref) WHERE provider_ref IS NOT NULL;
CREATE INDEX payments_status ON payments (status, id);

CREATE TABLE webhooks_in (
    id UUID PRIMARY KEY,
    provider TEXT NOT NULL,
    -- NULL for a rejected delivery: nothing in it is trusted.
    event_id TEXT,
    event_type TEXT,
    payload TEXT NOT NULL,
    -- received, processed, unmatched, ignored, rejected
    status TEXT NOT NULL,
    -- webhook or reconciliation
    source TEXT NOT NULL,
    error TEXT,
    received_at TIMESTAMPTZ NOT NULL,
    processed_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX webhooks_in_event ON webhooks_in (provider, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX webhooks_in_status ON webhooks_in (status, id);
