-- Live updates for the web dashboard: every change of a task's, step's or approval's state is
-- announced on the `steward_changes` channel by a trigger, inside the transaction that made it
-- (PostgreSQL delivers a NOTIFY on commit, and never for a rolled-back transaction). The payload
-- holds ids only — the tenant, what changed, its id and its task — so nothing confidential travels
-- on the channel; the server routes it to that tenant's subscribers, which read the row through RLS.

CREATE FUNCTION steward_notify_change() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  kind text;
  task uuid;
BEGIN
  -- Each branch names only the columns its table has (PL/pgSQL resolves fields when it runs them).
  IF TG_TABLE_NAME = 'tasks' THEN
    kind := 'task';
    task := NEW.id;
  ELSIF TG_TABLE_NAME = 'steps' THEN
    kind := 'step';
    task := NEW.task_id;
  ELSE
    kind := 'approval';
    task := NEW.task_id;
  END IF;
  PERFORM pg_notify('steward_changes', json_build_object(
    'tenantId', NEW.tenant_id, 'kind', kind, 'id', NEW.id, 'taskId', task)::text);
  RETURN NULL;
END
$$;

CREATE TRIGGER tasks_notify_insert AFTER INSERT ON tasks
  FOR EACH ROW EXECUTE FUNCTION steward_notify_change();
CREATE TRIGGER tasks_notify_update AFTER UPDATE ON tasks
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION steward_notify_change();

CREATE TRIGGER steps_notify_insert AFTER INSERT ON steps
  FOR EACH ROW EXECUTE FUNCTION steward_notify_change();
CREATE TRIGGER steps_notify_update AFTER UPDATE ON steps
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.attempts IS DISTINCT FROM NEW.attempts)
  EXECUTE FUNCTION steward_notify_change();

CREATE TRIGGER approvals_notify_insert AFTER INSERT ON approvals
  FOR EACH ROW EXECUTE FUNCTION steward_notify_change();
CREATE TRIGGER approvals_notify_update AFTER UPDATE ON approvals
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION steward_notify_change();

-- Web push: a user's browsers that asked to be told about new approvals. The VAPID key pair is
-- derived from the installation's master key (nothing to store, the same in every process).
CREATE TABLE push_subscriptions (
  tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id          uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  endpoint    text NOT NULL CHECK (length(endpoint) <= 2000),
  p256dh      text NOT NULL CHECK (length(p256dh) <= 200),
  auth        text NOT NULL CHECK (length(auth) <= 100),
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, endpoint)
);
CREATE INDEX push_subscriptions_user_idx ON push_subscriptions (tenant_id, user_id);

-- One notification per approval, even with several server processes (the first to insert sends).
CREATE TABLE push_notified (
  tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  approval_id  uuid NOT NULL,
  sent_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, approval_id)
);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['push_subscriptions', 'push_notified'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY %I ON %I AS PERMISSIVE FOR ALL USING (true) WITH CHECK (true)', t || '_base', t);
    EXECUTE format(
      'CREATE POLICY %I ON %I AS RESTRICTIVE FOR ALL '
      'USING (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid) '
      'WITH CHECK (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)',
      t || '_tenant_isolation', t);
  END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON push_subscriptions TO steward_app;
GRANT SELECT, INSERT ON push_notified TO steward_app;
