-- Watchers: leader leases, inbound webhooks (with a replay store) and schedules.

-- Leases for leader election between Steward processes (one folder watcher, one scheduler).
-- Not tenant data: only reachable under system access (app.system = 'on', withSystemAccess).
CREATE TABLE leases (
  name         text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
  holder       text NOT NULL CHECK (length(holder) BETWEEN 1 AND 200),
  expires_at   timestamptz NOT NULL,
  acquired_at  timestamptz NOT NULL DEFAULT now(),
  renewed_at   timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE leases ENABLE ROW LEVEL SECURITY;
ALTER TABLE leases FORCE ROW LEVEL SECURITY;
CREATE POLICY leases_system ON leases USING (app_is_system()) WITH CHECK (app_is_system());
GRANT SELECT, INSERT, UPDATE, DELETE ON leases TO steward_app;

-- Inbound webhooks. No secret is stored: a hook's secret is derived from the master key,
-- the tenant and the hook id (shown once, at creation).
CREATE TABLE webhooks (
  tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  created_by_type  text NOT NULL,
  created_by_id    text,
  last_received_at timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name)
);

-- Signatures already accepted (a signed delivery is accepted once; rows older than the
-- timestamp window are pruned, since their signatures are refused as expired anyway).
CREATE TABLE webhook_deliveries (
  tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  webhook_id   uuid NOT NULL,
  signature    text NOT NULL CHECK (length(signature) <= 200),
  received_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, webhook_id, signature),
  FOREIGN KEY (tenant_id, webhook_id) REFERENCES webhooks (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX webhook_deliveries_age_idx ON webhook_deliveries (tenant_id, webhook_id, received_at);

-- Schedules: cron (5 fields, minute precision) in a time zone; each run submits `event`.
CREATE TABLE schedules (
  tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id           uuid NOT NULL DEFAULT gen_random_uuid(),
  name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  cron         text NOT NULL CHECK (length(cron) BETWEEN 1 AND 200),
  timezone     text NOT NULL CHECK (length(timezone) BETWEEN 1 AND 100),
  event        jsonb NOT NULL,
  enabled      boolean NOT NULL DEFAULT true,
  next_run_at  timestamptz,
  last_run_at  timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name)
);
-- The scheduler's scan: due schedules across tenants.
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE enabled AND next_run_at IS NOT NULL;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['webhooks', 'webhook_deliveries'] LOOP
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

-- schedules may also be READ under system access (the scheduler finds due schedules across
-- tenants, then fires each one inside its own tenant's transaction); writes stay tenant-only.
ALTER TABLE schedules ENABLE ROW LEVEL SECURITY;
ALTER TABLE schedules FORCE ROW LEVEL SECURITY;
CREATE POLICY schedules_base ON schedules AS PERMISSIVE FOR ALL USING (true) WITH CHECK (true);
CREATE POLICY schedules_tenant_isolation_read ON schedules AS RESTRICTIVE FOR SELECT
  USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid OR app_is_system());
CREATE POLICY schedules_tenant_isolation_insert ON schedules AS RESTRICTIVE FOR INSERT
  WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY schedules_tenant_isolation_update ON schedules AS RESTRICTIVE FOR UPDATE
  USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY schedules_tenant_isolation_delete ON schedules AS RESTRICTIVE FOR DELETE
  USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE, DELETE ON webhooks, webhook_deliveries, schedules TO steward_app;
