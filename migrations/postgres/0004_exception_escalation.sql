-- The SLA ladder climbs for exceptions too (SPEC §7): each level fires once.
ALTER TABLE exceptions ADD COLUMN escalation_level BIGINT NOT NULL DEFAULT 0;
