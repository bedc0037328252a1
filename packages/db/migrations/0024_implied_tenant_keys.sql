-- Events, steps and approvals each reference their task by (tenant_id, task_id), and tasks
-- reference tenants (ON DELETE CASCADE all the way): a row of theirs cannot name a tenant that does
-- not exist, and deleting a tenant still deletes them, through their task. Their own foreign key to
-- tenants was a second check of the same fact on every insert (an index probe of tenants, planned
-- each time, on the loop's busiest tables), so it goes.
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_tenant_id_fkey;
ALTER TABLE steps DROP CONSTRAINT IF EXISTS steps_tenant_id_fkey;
ALTER TABLE approvals DROP CONSTRAINT IF EXISTS approvals_tenant_id_fkey;
