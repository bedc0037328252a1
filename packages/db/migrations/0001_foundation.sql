-- Steward foundation: tenants, identity, API keys, audit chain.
--
-- Tenancy rule: every tenant-owned table has tenant_id, a primary key starting with it,
-- RLS enabled AND forced, a permissive base policy and a RESTRICTIVE policy that compares
-- tenant_id with the transaction-local setting app.tenant_id (unset => NULL => no rows).
-- A few identity tables may also be READ (never written) under app.system = 'on', which only
-- withSystemAccess() sets (login by email, API key lookup by prefix, refresh-token lookup).
--
-- Privileges go to the NOLOGIN group role steward_app; the runtime login role is a member of it.

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'steward_app') THEN
    CREATE ROLE steward_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL; -- another database on this cluster created it at the same moment
END
$$;

GRANT USAGE ON SCHEMA public TO steward_app;

CREATE FUNCTION app_tenant_id() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;

CREATE FUNCTION app_user_id() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT nullif(current_setting('app.user_id', true), '')::uuid $$;

CREATE FUNCTION app_is_system() RETURNS boolean
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT coalesce(current_setting('app.system', true), '') = 'on' $$;

-- ---------------------------------------------------------------------------------------------
-- Tenants (global registry; a tenant sees only its own row)
CREATE TABLE tenants (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$' OR slug = '_platform'),
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'system')),
  settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
-- The platform pseudo-tenant owns the audit chain of events that belong to no tenant
-- (a failed login naming no known tenant, creating a tenant).
INSERT INTO tenants (id, slug, name, status)
  VALUES ('00000000-0000-0000-0000-000000000000', '_platform', 'Platform', 'system');

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenants_select ON tenants FOR SELECT USING (id = app_tenant_id() OR app_is_system());
CREATE POLICY tenants_update ON tenants FOR UPDATE USING (id = app_tenant_id()) WITH CHECK (id = app_tenant_id());
CREATE POLICY tenants_insert ON tenants FOR INSERT WITH CHECK (app_is_system());
GRANT SELECT, INSERT, UPDATE ON tenants TO steward_app;

-- ---------------------------------------------------------------------------------------------
-- Users: one identity, possibly in several tenants (memberships).
CREATE TABLE users (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email              text NOT NULL CHECK (email = lower(email) AND length(email) <= 320),
  name               text NOT NULL DEFAULT '',
  password_hash      text,
  is_platform_admin  boolean NOT NULL DEFAULT false,
  status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  last_login_at      timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (email);

-- ---------------------------------------------------------------------------------------------
-- Roles: built-in roles are rows too (their permissions come from code), custom roles list theirs.
CREATE TABLE roles (
  tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id           uuid NOT NULL DEFAULT gen_random_uuid(),
  name         text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_-]{0,39}$'),
  description  text NOT NULL DEFAULT '',
  builtin      boolean NOT NULL DEFAULT false,
  permissions  text[] NOT NULL DEFAULT '{}',
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name)
);

CREATE TABLE memberships (
  tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id          uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  role_id     uuid NOT NULL,
  status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, user_id),
  FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id);

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
-- A user row is visible to itself, to the tenants it belongs to, and to system access.
CREATE POLICY users_select ON users FOR SELECT USING (
  app_is_system() OR id = app_user_id()
  OR EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = users.id AND m.tenant_id = app_tenant_id())
);
CREATE POLICY users_insert ON users FOR INSERT WITH CHECK (app_is_system());
CREATE POLICY users_update ON users FOR UPDATE USING (
  app_is_system() OR id = app_user_id()
  OR EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = users.id AND m.tenant_id = app_tenant_id())
);
GRANT SELECT, INSERT, UPDATE ON users TO steward_app;

-- ---------------------------------------------------------------------------------------------
-- API keys: prefix is public (for lookup), only a hash of the secret is stored.
CREATE TABLE api_keys (
  tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id            uuid NOT NULL DEFAULT gen_random_uuid(),
  name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  prefix        text NOT NULL UNIQUE,
  key_hash      bytea NOT NULL,
  role_id       uuid NOT NULL,
  created_by    uuid REFERENCES users (id) ON DELETE SET NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz,
  last_used_at  timestamptz,
  revoked_at    timestamptz,
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id)
);

-- ---------------------------------------------------------------------------------------------
-- Sessions and refresh tokens (global: a session follows its user across tenant switches).
CREATE TABLE sessions (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  active_tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  ip                text,
  user_agent        text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  last_used_at      timestamptz NOT NULL DEFAULT now(),
  expires_at        timestamptz NOT NULL,
  revoked_at        timestamptz,
  revoked_reason    text
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

CREATE TABLE refresh_tokens (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  token_hash  bytea NOT NULL UNIQUE,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY sessions_all ON sessions USING (app_is_system() OR user_id = app_user_id())
  WITH CHECK (app_is_system() OR user_id = app_user_id());
GRANT SELECT, INSERT, UPDATE ON sessions TO steward_app;

ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY refresh_tokens_all ON refresh_tokens USING (app_is_system()) WITH CHECK (app_is_system());
GRANT SELECT, INSERT, UPDATE ON refresh_tokens TO steward_app;

-- ---------------------------------------------------------------------------------------------
-- Audit log: one HMAC chain per tenant. The application may only INSERT and SELECT entries.
CREATE TABLE audit_log (
  tenant_id    uuid NOT NULL REFERENCES tenants (id),
  seq          bigint NOT NULL CHECK (seq > 0),
  at           timestamptz NOT NULL,
  actor_type   text NOT NULL,
  actor_id     text,
  actor_label  text,
  action       text NOT NULL,
  target_type  text,
  target_id    text,
  outcome      text NOT NULL DEFAULT 'success',
  request_id   text,
  ip           text,
  details      jsonb NOT NULL DEFAULT '{}'::jsonb,
  prev_hash    text NOT NULL,
  hash         text NOT NULL,
  PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_log_action_idx ON audit_log (tenant_id, action, seq);

CREATE TABLE audit_heads (
  tenant_id   uuid NOT NULL REFERENCES tenants (id),
  seq         bigint NOT NULL,
  hash        text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id)
);

GRANT SELECT, INSERT ON audit_log TO steward_app;
GRANT SELECT, INSERT, UPDATE ON audit_heads TO steward_app;

-- ---------------------------------------------------------------------------------------------
-- Row-level security for the tenant tables.
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['roles', 'memberships', 'api_keys', 'audit_log', 'audit_heads'] LOOP
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

-- memberships and api_keys may also be READ under system access (login, key lookup):
-- replace their restrictive FOR ALL policy by a read policy and write policies.
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['memberships', 'api_keys'] LOOP
    EXECUTE format('DROP POLICY %I ON %I', t || '_tenant_isolation', t);
    EXECUTE format(
      'CREATE POLICY %I ON %I AS RESTRICTIVE FOR SELECT '
      'USING (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid OR app_is_system())',
      t || '_tenant_isolation_read', t);
    EXECUTE format(
      'CREATE POLICY %I ON %I AS RESTRICTIVE FOR INSERT '
      'WITH CHECK (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)',
      t || '_tenant_isolation_insert', t);
    EXECUTE format(
      'CREATE POLICY %I ON %I AS RESTRICTIVE FOR UPDATE '
      'USING (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid) '
      'WITH CHECK (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)',
      t || '_tenant_isolation_update', t);
    EXECUTE format(
      'CREATE POLICY %I ON %I AS RESTRICTIVE FOR DELETE '
      'USING (tenant_id = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)',
      t || '_tenant_isolation_delete', t);
  END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON roles, memberships TO steward_app;
GRANT SELECT, INSERT, UPDATE ON api_keys TO steward_app;

GRANT SELECT ON schema_migrations TO steward_app;
