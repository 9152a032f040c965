-- Relays in other processes wake when events are committed: the notification is raised by the
-- database itself, once per INSERT statement on domain_events and delivered once per
-- transaction (PostgreSQL collapses identical notifications of a transaction), instead of a
-- `SELECT pg_notify` round trip per emitted event.
CREATE FUNCTION virel_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('virel_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER domain_events_notify
    AFTER INSERT ON domain_events
    FOR EACH STATEMENT EXECUTE FUNCTION virel_outbox_notify();
