-- Connector credentials, encrypted with per-tenant envelope keys (packages/core/src/secrets/).
--
-- tenant_keys: one random 32-byte data key per tenant, stored only wrapped (AES-256-GCM) under a
-- key-encryption key derived from the installation's master key; the database never sees either key.
CREATE TABLE tenant_keys (
  tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  wrapped_key  bytea NOT NULL CHECK (length(wrapped_key) = 48),
  nonce        bytea NOT NULL CHECK (length(nonce) = 12),
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id)
);

-- connections: where a tool sends things (SMTP servers, HTTP APIs). `config` holds the non-secret
-- settings; the secret (a password or token) is AES-256-GCM ciphertext under the tenant's data key,
-- with additional data binding the tenant id and the connection id.
CREATE TABLE connections (
  tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id                 uuid NOT NULL DEFAULT gen_random_uuid(),
  kind               text NOT NULL CHECK (kind IN ('smtp', 'http')),
  name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  config             jsonb NOT NULL DEFAULT '{}'::jsonb,
  is_default         boolean NOT NULL DEFAULT false,
  secret_ciphertext  bytea,
  secret_nonce       bytea CHECK (secret_nonce IS NULL OR length(secret_nonce) = 12),
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name),
  CHECK ((secret_ciphertext IS NULL) = (secret_nonce IS NULL))
);
-- At most one default connection per kind and tenant.
CREATE UNIQUE INDEX connections_default_idx ON connections (tenant_id, kind) WHERE is_default;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['tenant_keys', 'connections'] LOOP
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

-- A data key is written once and never changed or deleted by the application (it goes with its tenant).
GRANT SELECT, INSERT ON tenant_keys TO steward_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON connections TO steward_app;
