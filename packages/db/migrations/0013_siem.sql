-- SIEM forwarding of the audit stream (packages/core/src/siem/).
--
-- siem_destinations: a tenant's own destinations (syslog over TCP/TLS, HTTPS JSON). `config` holds
-- the non-secret settings; the secret (a token) is AES-256-GCM ciphertext under the tenant's data key.
-- Readable under system access too: the forwarder supervisor lists the destinations of every tenant,
-- then reads each tenant's audit log inside that tenant's own transaction. Writes stay tenant-only.
CREATE TABLE siem_destinations (
  tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id                 uuid NOT NULL DEFAULT gen_random_uuid(),
  name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  kind               text NOT NULL CHECK (kind IN ('syslog', 'https')),
  config             jsonb NOT NULL DEFAULT '{}'::jsonb,
  enabled            boolean NOT NULL DEFAULT true,
  secret_ciphertext  bytea,
  secret_nonce       bytea CHECK (secret_nonce IS NULL OR length(secret_nonce) = 12),
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name),
  CHECK ((secret_ciphertext IS NULL) = (secret_nonce IS NULL))
);

-- siem_cursors: per destination and tenant chain, the last audit seq the destination acknowledged.
-- `destination` is 'tenant:<destination id>' or 'install:<name>' (installation-wide, from config).
-- It only moves forward, and only after an acknowledgement: at least once, never a gap.
CREATE TABLE siem_cursors (
  tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  destination    text NOT NULL CHECK (length(destination) BETWEEN 1 AND 200),
  last_seq       bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
  last_hash      text,
  forwarded      bigint NOT NULL DEFAULT 0,
  attempts       integer NOT NULL DEFAULT 0,
  last_error     text,
  last_error_at  timestamptz,
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, destination)
);

ALTER TABLE siem_cursors ENABLE ROW LEVEL SECURITY;
ALTER TABLE siem_cursors FORCE ROW LEVEL SECURITY;
CREATE POLICY siem_cursors_base ON siem_cursors AS PERMISSIVE FOR ALL USING (true) WITH CHECK (true);
CREATE POLICY siem_cursors_tenant_isolation ON siem_cursors AS RESTRICTIVE FOR ALL
  USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

ALTER TABLE siem_destinations ENABLE ROW LEVEL SECURITY;
ALTER TABLE siem_destinations FORCE ROW LEVEL SECURITY;
CREATE POLICY siem_destinations_base ON siem_destinations AS PERMISSIVE FOR ALL USING (true) WITH CHECK (true);
CREATE POLICY siem_destinations_tenant_isolation_read ON siem_destinations AS RESTRICTIVE FOR SELECT
  USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid OR app_is_system());
CREATE POLICY siem_destinations_tenant_isolation_insert ON siem_destinations AS RESTRICTIVE FOR INSERT
  WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY siem_destinations_tenant_isolation_update ON siem_destinations AS RESTRICTIVE FOR UPDATE
  USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY siem_destinations_tenant_isolation_delete ON siem_destinations AS RESTRICTIVE FOR DELETE
  USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE, DELETE ON siem_destinations, siem_cursors TO steward_app;
