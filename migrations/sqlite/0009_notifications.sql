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
ALTER TABLE notifications ADD COLUMN recipient_id BLOB;
ALTER TABLE notifications ADD COLUMN title TEXT;
ALTER TABLE notifications ADD COLUMN vars TEXT NOT NULL DEFAULT '{}';
ALTER TABLE notifications ADD COLUMN fallback_of BLOB;
ALTER TABLE notifications ADD COLUMN note_on_outcome INTEGER NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN critical INTEGER NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN sent_at TEXT;
ALTER TABLE notifications ADD COLUMN delivered_at TEXT;
CREATE INDEX notifications_status ON notifications (status, id);
CREATE INDEX notifications_subject ON notifications (subject_type, subject_id);
CREATE INDEX notifications_provider ON notifications (channel, provider_id);

-- channel and locale are '' when the template serves every channel or locale.
CREATE TABLE notification_templates (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    channel TEXT NOT NULL DEFAULT '',
    locale TEXT NOT NULL DEFAULT '',
    subject TEXT,
    body TEXT NOT NULL,
    bot TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    UNIQUE (name, channel, locale)
);
