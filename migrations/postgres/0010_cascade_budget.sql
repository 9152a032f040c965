-- The automation cascade budget counts the deep chained events of the last minute.
CREATE INDEX domain_events_cascade ON domain_events (occurred_at) WHERE depth >= 2;
