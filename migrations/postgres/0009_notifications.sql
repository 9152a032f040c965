-- Notifications for real: contact fields for models and staff, the delivery ledger's own
-- columns (who the recipient is, the variables, the fallback chain, the Contact note), and
-- stored, editable message templates.

ALTER TABLE models ADD COLUMN phone TEXT;
ALTER TABLE models ADD COLUMN email TEXT;
ALTER TABLE models ADD COLUMN telegram TEXT;
ALTER TABLE models ADD COLUMN preferred_channel TEXT;

ALTER TABLE users ADD COLUMN phone TEXT;
ALTER TABLE users ADD COLUMN telegram TEXT;
ALTER TABLE users ADD COLUMN preferred_channel TEXT;

-- recipient_kind: client, model or user; recipient_id: that row. recipient holds the
-- address on the channel (never a role name or "assignee").
ALTER TABLE notifications ADD COLUMN recipient_kind TEXT;
ALTER TABLE notifications ADD COLUMN recipient_id UUID;
ALTER TABLE notifications ADD COLUMN title TEXT;
ALTER TABLE notifications ADD COLUMN vars JSONB NOT NULL DEFAULT '{}';
ALTER TABLE notifications ADD COLUMN fallback_of UUID;
ALTER TABLE notifications ADD COLUMN note_on_outcome BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE notifications ADD COLUMN critical BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE notifications ADD COLUMN sent_at TIMESTAMPTZ;
ALTER TABLE notifications ADD COLUMN delivered_at TIMESTAMPTZ;
CREATE INDEX notifications_status ON notifications (status, id);
CREATE INDEX notifications_subject ON notifications (subject_type, subject_id);
CREATE INDEX notifications_provider ON notifications (channel, provider_id);

-- channel and locale are '' when the template serves every channel or locale.
CREATE TABLE notification_templates (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    channel TEXT NOT NULL DEFAULT '',
    locale TEXT NOT NULL DEFAULT '',
    subject TEXT,
    body TEXT NOT NULL,
    bot TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    UNIQUE (name, channel, locale)
);
