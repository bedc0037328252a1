-- MCP servers a tenant registered (packages/core/src/mcp/). Their tools become plannable tools named
-- mcp.<server>.<tool>, but only those on the allow-list (`allowed_tools`; empty = none).
--
-- transport 'stdio': `command` is the program and its arguments, run on the Steward host (only when
-- the installation sets STEWARD_MCP_STDIO=1 and the tenant setting mcp.allowStdio is true).
-- transport 'http': `url` is a streamable HTTP endpoint, reached through the SSRF guard.
-- The secret (environment variables for stdio, request headers for http, as a JSON object) is
-- AES-256-GCM ciphertext under the tenant's data key, additional data = tenant id + server id.
-- `risk_overrides` maps a tool name to a risk level set by the tenant (it wins over annotations).
CREATE TABLE mcp_servers (
  tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id                 uuid NOT NULL DEFAULT gen_random_uuid(),
  name               text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
  transport          text NOT NULL CHECK (transport IN ('stdio', 'http')),
  command            text[],
  url                text,
  allowed_tools      text[] NOT NULL DEFAULT '{}',
  risk_overrides     jsonb NOT NULL DEFAULT '{}'::jsonb,
  enabled            boolean NOT NULL DEFAULT true,
  -- The server's tools as last listed (name, description, inputSchema, annotations): planning and
  -- execution read this snapshot, so no transaction waits on a remote server.
  catalog            jsonb NOT NULL DEFAULT '[]'::jsonb,
  catalog_refreshed_at timestamptz,
  secret_ciphertext  bytea,
  secret_nonce       bytea CHECK (secret_nonce IS NULL OR length(secret_nonce) = 12),
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name),
  CHECK ((secret_ciphertext IS NULL) = (secret_nonce IS NULL)),
  CHECK ((transport = 'stdio' AND command IS NOT NULL AND cardinality(command) >= 1 AND url IS NULL)
      OR (transport = 'http' AND url IS NOT NULL AND command IS NULL))
);

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['mcp_servers'] LOOP
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

GRANT SELECT, INSERT, UPDATE, DELETE ON mcp_servers TO steward_app;
