-- The AI employee loop: events -> tasks -> plan steps -> approvals -> execution.
-- Every table is a tenant table: tenant_id leads the primary key, RLS is enabled and forced,
-- and a restrictive policy pins rows to app.tenant_id.

CREATE TABLE tasks (
  tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id                   uuid NOT NULL DEFAULT gen_random_uuid(),
  title                text NOT NULL CHECK (length(title) <= 300),
  status               text NOT NULL DEFAULT 'needs_action' CHECK (status IN
                         ('needs_action', 'planning', 'pending_approval', 'approved', 'executing',
                          'done', 'rejected', 'failed', 'cancelled')),
  source               text NOT NULL,
  event_id             uuid,
  created_by_type      text NOT NULL,
  created_by_id        text,
  plan_summary         text,
  planner              text,
  needs_action_reason  text,
  error                jsonb,
  cancel_requested     boolean NOT NULL DEFAULT false,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  finished_at          timestamptz,
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX tasks_status_idx ON tasks (tenant_id, status, created_at);
CREATE INDEX tasks_created_idx ON tasks (tenant_id, created_at, id);

CREATE TABLE events (
  tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id           uuid NOT NULL DEFAULT gen_random_uuid(),
  source       text NOT NULL CHECK (source ~ '^[a-z][a-z0-9_.-]{0,49}$'),
  type         text NOT NULL CHECK (length(type) BETWEEN 1 AND 100),
  external_id  text CHECK (length(external_id) <= 500),
  sender       text,
  subject      text,
  body         text,
  data         jsonb NOT NULL DEFAULT '{}'::jsonb,
  task_id      uuid NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  -- Deferred: intake inserts the event first (ON CONFLICT on the dedupe key), then its task.
  FOREIGN KEY (tenant_id, task_id) REFERENCES tasks (tenant_id, id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED
);
-- Deduplication: the same (source, externalId) twice is the same event and the same task.
CREATE UNIQUE INDEX events_dedupe_key ON events (tenant_id, source, external_id) WHERE external_id IS NOT NULL;

CREATE TABLE steps (
  tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id                uuid NOT NULL DEFAULT gen_random_uuid(),
  task_id           uuid NOT NULL,
  key               text NOT NULL,
  position          integer NOT NULL,
  kind              text NOT NULL DEFAULT 'action' CHECK (kind IN ('action', 'compensation')),
  compensates       uuid,
  tool              text NOT NULL,
  args              jsonb NOT NULL,
  action_hash       text NOT NULL,
  depends_on        text[] NOT NULL DEFAULT '{}',
  risk              text NOT NULL CHECK (risk IN ('low', 'medium', 'high', 'critical')),
  compensation      jsonb,
  needs_approval    boolean NOT NULL DEFAULT false,
  approval_reasons  text[] NOT NULL DEFAULT '{}',
  status            text NOT NULL DEFAULT 'pending' CHECK (status IN
                      ('pending', 'awaiting_approval', 'ready', 'running', 'succeeded', 'failed',
                       'dead', 'skipped', 'cancelled', 'compensated')),
  attempts          integer NOT NULL DEFAULT 0,
  max_attempts      integer NOT NULL DEFAULT 5,
  retryable         boolean NOT NULL DEFAULT true,
  next_attempt_at   timestamptz,
  lease_expires_at  timestamptz,
  idempotency_key   text NOT NULL,
  result            jsonb,
  error             jsonb,
  started_at        timestamptz,
  finished_at       timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, task_id, key),
  FOREIGN KEY (tenant_id, task_id) REFERENCES tasks (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX steps_task_idx ON steps (tenant_id, task_id, position);
CREATE INDEX steps_running_idx ON steps (lease_expires_at) WHERE status = 'running';
CREATE INDEX steps_dead_idx ON steps (tenant_id, updated_at) WHERE status = 'dead';

CREATE TABLE approvals (
  tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id                 uuid NOT NULL DEFAULT gen_random_uuid(),
  task_id            uuid NOT NULL,
  step_id            uuid,
  scope              text NOT NULL CHECK (scope IN ('step', 'plan')),
  action_hash        text NOT NULL,
  action             jsonb NOT NULL,
  preview            jsonb NOT NULL DEFAULT '[]'::jsonb,
  reasons            text[] NOT NULL DEFAULT '{}',
  status             text NOT NULL DEFAULT 'pending' CHECK (status IN
                       ('pending', 'approved', 'rejected', 'expired', 'superseded', 'cancelled')),
  quorum             integer NOT NULL DEFAULT 1 CHECK (quorum BETWEEN 1 AND 10),
  forbid_self        boolean NOT NULL DEFAULT true,
  requested_by_type  text NOT NULL,
  requested_by_id    text,
  expires_at         timestamptz NOT NULL,
  decided_at         timestamptz,
  used_at            timestamptz,
  superseded_by      uuid,
  created_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, task_id) REFERENCES tasks (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX approvals_status_idx ON approvals (tenant_id, status, created_at);
CREATE INDEX approvals_task_idx ON approvals (tenant_id, task_id);

CREATE TABLE approval_decisions (
  tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id           uuid NOT NULL DEFAULT gen_random_uuid(),
  approval_id  uuid NOT NULL,
  actor_type   text NOT NULL,
  actor_id     text NOT NULL,
  actor_label  text,
  decision     text NOT NULL CHECK (decision IN ('approve', 'reject')),
  comment      text CHECK (length(comment) <= 2000),
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, approval_id, actor_type, actor_id),
  FOREIGN KEY (tenant_id, approval_id) REFERENCES approvals (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE playbooks (
  tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id           uuid NOT NULL DEFAULT gen_random_uuid(),
  name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  description  text NOT NULL DEFAULT '',
  enabled      boolean NOT NULL DEFAULT true,
  priority     integer NOT NULL DEFAULT 100,
  conditions   jsonb NOT NULL DEFAULT '{}'::jsonb,
  steps        jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name)
);

-- Recipients and payees a tenant has already sent to (for the "new recipient" approval rule).
CREATE TABLE known_recipients (
  tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  value          text NOT NULL,
  first_seen_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, value)
);

-- In-app notifications (the notify.user tool).
CREATE TABLE notifications (
  tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id          uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id     uuid,
  role        text,
  title       text NOT NULL CHECK (length(title) <= 300),
  body        text NOT NULL DEFAULT '' CHECK (length(body) <= 10000),
  task_id     uuid,
  idempotency_key text,
  read_at     timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX notifications_idempotency_key ON notifications (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['tasks', 'events', 'steps', 'approvals', 'approval_decisions', 'playbooks',
                           'known_recipients', 'notifications'] LOOP
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

GRANT SELECT, INSERT, UPDATE ON tasks, events, steps, approvals TO steward_app;
GRANT SELECT, INSERT ON approval_decisions, known_recipients TO steward_app;
GRANT SELECT, INSERT, UPDATE ON notifications TO steward_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON playbooks TO steward_app;
