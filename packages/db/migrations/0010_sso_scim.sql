-- Single sign-on (OIDC and SAML 2.0) and SCIM 2.0 provisioning, per tenant
-- (packages/core/src/sso/, packages/core/src/scim/).

-- sso_connections: a tenant's identity providers. `config` holds the non-secret settings (issuer,
-- client id, IdP certificate...); an OIDC client secret is AES-256-GCM ciphertext under the tenant's
-- data key (like connections.secret_ciphertext), never returned.
CREATE TABLE sso_connections (
  tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id                 uuid NOT NULL DEFAULT gen_random_uuid(),
  protocol           text NOT NULL CHECK (protocol IN ('oidc', 'saml')),
  name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  enabled            boolean NOT NULL DEFAULT true,
  config             jsonb NOT NULL DEFAULT '{}'::jsonb,
  default_role       text NOT NULL,
  groups_attribute   text,
  role_mapping       jsonb NOT NULL DEFAULT '{}'::jsonb,
  secret_ciphertext  bytea,
  secret_nonce       bytea CHECK (secret_nonce IS NULL OR length(secret_nonce) = 12),
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name),
  CHECK ((secret_ciphertext IS NULL) = (secret_nonce IS NULL))
);

-- A sign-in in flight: the state (hashed), the OIDC nonce and PKCE verifier, or the SAML request id.
-- Used once, expires after minutes.
CREATE TABLE sso_login_states (
  tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  state_hash     bytea NOT NULL,
  connection_id  uuid NOT NULL,
  nonce          text,
  code_verifier  text,
  request_id     text,
  created_at     timestamptz NOT NULL DEFAULT now(),
  expires_at     timestamptz NOT NULL,
  used_at        timestamptz,
  PRIMARY KEY (tenant_id, state_hash),
  FOREIGN KEY (tenant_id, connection_id) REFERENCES sso_connections (tenant_id, id) ON DELETE CASCADE
);

-- SAML replay cache: every accepted assertion id, kept until the assertion could no longer be valid.
CREATE TABLE sso_assertion_ids (
  tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  connection_id  uuid NOT NULL,
  assertion_id   text NOT NULL CHECK (length(assertion_id) BETWEEN 1 AND 256),
  expires_at     timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, connection_id, assertion_id)
);

-- Which IdP subject is which Steward user (per connection).
CREATE TABLE sso_identities (
  tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  connection_id  uuid NOT NULL,
  subject        text NOT NULL CHECK (length(subject) BETWEEN 1 AND 512),
  user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at     timestamptz NOT NULL DEFAULT now(),
  last_login_at  timestamptz,
  PRIMARY KEY (tenant_id, connection_id, subject),
  FOREIGN KEY (tenant_id, connection_id) REFERENCES sso_connections (tenant_id, id) ON DELETE CASCADE
);

-- One-time codes that hand a finished SSO sign-in to the web app (hashed; a minute; once).
CREATE TABLE sso_exchange_codes (
  tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  code_hash      bytea NOT NULL,
  user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  connection_id  uuid NOT NULL,
  expires_at     timestamptz NOT NULL,
  used_at        timestamptz,
  PRIMARY KEY (tenant_id, code_hash)
);

-- SCIM bearer tokens: `scim_<prefix>_<secret>`, only a SHA-256 of the secret is stored.
CREATE TABLE scim_tokens (
  tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id            uuid NOT NULL DEFAULT gen_random_uuid(),
  name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  prefix        text NOT NULL UNIQUE,
  token_hash    bytea NOT NULL,
  created_by    uuid REFERENCES users (id) ON DELETE SET NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_used_at  timestamptz,
  revoked_at    timestamptz,
  PRIMARY KEY (tenant_id, id)
);

-- SCIM settings of a tenant: the role of provisioned users, and which group gives which role.
CREATE TABLE scim_settings (
  tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  default_role  text NOT NULL DEFAULT 'member',
  group_roles   jsonb NOT NULL DEFAULT '{}'::jsonb,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id)
);

-- What SCIM knows about a provisioned user of the tenant (the user itself is in users/memberships).
CREATE TABLE scim_users (
  tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  external_id  text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, user_id)
);

CREATE TABLE scim_groups (
  tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id            uuid NOT NULL DEFAULT gen_random_uuid(),
  display_name  text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 256),
  external_id   text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, display_name)
);

CREATE TABLE scim_group_members (
  tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  group_id   uuid NOT NULL,
  user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  PRIMARY KEY (tenant_id, group_id, user_id),
  FOREIGN KEY (tenant_id, group_id) REFERENCES scim_groups (tenant_id, id) ON DELETE CASCADE
);

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['sso_connections', 'sso_login_states', 'sso_assertion_ids', 'sso_identities',
                           'sso_exchange_codes', 'scim_tokens', 'scim_settings', 'scim_users', 'scim_groups',
                           'scim_group_members'] LOOP
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

-- A SCIM token is found by its public prefix before the tenant is known (like API keys): system
-- transactions may read that table across tenants, nothing else.
DROP POLICY scim_tokens_tenant_isolation ON scim_tokens;
CREATE POLICY scim_tokens_tenant_isolation_read ON scim_tokens AS RESTRICTIVE FOR SELECT
  USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid OR app_is_system());
CREATE POLICY scim_tokens_tenant_isolation_insert ON scim_tokens AS RESTRICTIVE FOR INSERT
  WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY scim_tokens_tenant_isolation_update ON scim_tokens AS RESTRICTIVE FOR UPDATE
  USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY scim_tokens_tenant_isolation_delete ON scim_tokens AS RESTRICTIVE FOR DELETE
  USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE, DELETE ON sso_connections, sso_login_states, sso_identities,
  sso_exchange_codes, scim_settings, scim_users, scim_groups, scim_group_members TO steward_app;
GRANT SELECT, INSERT, DELETE ON sso_assertion_ids TO steward_app;
GRANT SELECT, INSERT, UPDATE ON scim_tokens TO steward_app;

-- A session opened through a tenant's single sign-on stays in that tenant: switching to another
-- tenant of the same user needs a sign-in there (a tenant's IdP must not reach other tenants).
ALTER TABLE sessions ADD COLUMN bound_tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE;
