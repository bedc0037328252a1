-- A step held back by its tenant's limit of concurrently running steps (STEWARD_TENANT_CONCURRENCY,
-- settings.maxConcurrentSteps) waits `ready` with throttled_at set, oldest first: each step that
-- leaves `running` wakes the oldest one (its run-step job is moved to now) instead of every held-back
-- step re-queueing itself on a timer. A late backstop job stays queued for each one in any case.
ALTER TABLE steps ADD COLUMN throttled_at timestamptz;
CREATE INDEX steps_throttled_idx ON steps (tenant_id, throttled_at) WHERE throttled_at IS NOT NULL;

-- The planner reads a task's event by task (once per task), and deleting a task cascades to its
-- events: without this index both scan every event of the tenant.
CREATE INDEX events_task_idx ON events (tenant_id, task_id);
