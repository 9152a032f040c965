-- One automation action's SQL, as the worker issues it for the pipeline benchmark's rule
-- (inquiry.created, source = phone -> create_task follow_up): read the event and the rules,
-- record the verdict, then in one transaction claim the action, check the subject, look up
-- the SLA policy, insert the task, its audit entry and its task.created event (which fires
-- the outbox NOTIFY trigger), and mark the action done. `pgbench -f` runs it against the
-- benchmark's own database (the tables, indexes and triggers of the migrations) in the same
-- run, as the machine's limit for this work. Only the queue round trips are missing.
\set e random(1, 999999999999)
\set s random(1, 999999999999)
SELECT * FROM domain_events WHERE id = lpad(to_hex(:e::bigint), 32, '0')::uuid;
SELECT * FROM automation_rules WHERE trigger = 'inquiry.created' AND enabled = true ORDER BY id;
SELECT status FROM automation_executions
 WHERE rule_id = '00000000-0000-0000-0000-0000000000b1' AND event_id = lpad(to_hex(:e::bigint), 32, '0')::uuid AND action_index = -1;
BEGIN;
INSERT INTO automation_executions (id, rule_id, event_id, action_index, status, duration_ms, created_at, updated_at)
VALUES (gen_random_uuid(), '00000000-0000-0000-0000-0000000000b1', lpad(to_hex(:e::bigint), 32, '0')::uuid, -1, 'matched', 0, now(), now())
ON CONFLICT DO NOTHING;
COMMIT;
BEGIN;
INSERT INTO automation_executions (id, rule_id, event_id, action_index, status, duration_ms, created_at, updated_at)
VALUES (gen_random_uuid(), '00000000-0000-0000-0000-0000000000b1', lpad(to_hex(:e::bigint), 32, '0')::uuid, 0, 'running', 0, now(), now())
ON CONFLICT DO NOTHING;
SELECT id FROM inquiries WHERE id = lpad(to_hex(:s::bigint), 32, '0')::uuid;
SELECT * FROM sla_policies WHERE kind = 'task' AND (item_type = 'follow_up' OR item_type = '*')
 ORDER BY CASE WHEN item_type = '*' THEN 1 ELSE 0 END LIMIT 1;
INSERT INTO tasks (id, type, title, priority, status, subject_type, subject_id, due_at, created_by, created_at, updated_at, sla_started_at)
VALUES (gen_random_uuid(), 'follow_up', 'Call the client back', 'normal', 'open', 'inquiry', lpad(to_hex(:s::bigint), 32, '0')::uuid,
        now() + interval '15 minutes', 'automation:00000000-0000-0000-0000-0000000000b1', now(), now(), now());
INSERT INTO audit_log (id, actor, action, entity_type, entity_id, before, after, ip, request_id, at)
VALUES (gen_random_uuid(), 'automation:00000000-0000-0000-0000-0000000000b1', 'task.created', 'task', 'pgbench', NULL,
        '{"type": "follow_up", "title": "Call the client back", "priority": "normal", "status": "open"}'::jsonb, NULL, NULL, now());
INSERT INTO domain_events (id, type, subject_type, subject_id, payload, actor, causation_id, depth, occurred_at, dispatched_at)
VALUES (gen_random_uuid(), 'task.created', 'task', gen_random_uuid(), '{"type": "follow_up", "priority": "normal"}'::jsonb,
        'automation:00000000-0000-0000-0000-0000000000b1', lpad(to_hex(:e::bigint), 32, '0')::uuid, 1, now(), now());
UPDATE automation_executions SET status = 'succeeded', actions_result = '{"task_id": null}'::jsonb, duration_ms = 1, updated_at = now()
 WHERE rule_id = '00000000-0000-0000-0000-0000000000b1' AND event_id = lpad(to_hex(:e::bigint), 32, '0')::uuid AND action_index = 0;
COMMIT;
