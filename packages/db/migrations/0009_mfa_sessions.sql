-- MFA (TOTP, backup codes), passkeys (WebAuthn), login challenges and session policy.
-- Factors belong to the user (one identity across tenants), like sessions: global tables whose rows
-- are visible to the user itself and to system access.

CREATE TABLE user_totp (
  user_id          uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  -- AES-256-GCM under a key derived from the master key, AAD = the user id (see totp-service.ts).
  secret_sealed    bytea NOT NULL,
  secret_nonce     bytea NOT NULL,
  confirmed_at     timestamptz,
  -- The last RFC 6238 time step accepted: a code of this step or an earlier one never works again.
  last_time_step   bigint NOT NULL DEFAULT 0,
  created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_backup_codes (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  code_hash   bytea NOT NULL,
  used_at     timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX user_backup_codes_user_idx ON user_backup_codes (user_id);

CREATE TABLE passkeys (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  credential_id  text NOT NULL UNIQUE,
  public_key     bytea NOT NULL,
  counter        bigint NOT NULL DEFAULT 0,
  transports     text[] NOT NULL DEFAULT '{}',
  name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  created_at     timestamptz NOT NULL DEFAULT now(),
  last_used_at   timestamptz
);
CREATE INDEX passkeys_user_idx ON passkeys (user_id);

-- Short-lived login and WebAuthn challenges (the MFA step's token, registration and sign-in
-- challenges). Only hashes of the tokens are stored.
CREATE TABLE auth_challenges (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  kind             text NOT NULL CHECK (kind IN ('mfa', 'passkey_register', 'passkey_login')),
  token_hash       bytea NOT NULL UNIQUE,
  user_id          uuid REFERENCES users (id) ON DELETE CASCADE,
  login_tenant_id  uuid REFERENCES tenants (id) ON DELETE CASCADE,
  details          jsonb NOT NULL DEFAULT '{}'::jsonb,
  webauthn_challenge text,
  failures         integer NOT NULL DEFAULT 0,
  created_at       timestamptz NOT NULL DEFAULT now(),
  expires_at       timestamptz NOT NULL,
  used_at          timestamptz
);
CREATE INDEX auth_challenges_expiry_idx ON auth_challenges (expires_at);
CREATE UNIQUE INDEX auth_challenges_webauthn_idx ON auth_challenges (webauthn_challenge)
  WHERE webauthn_challenge IS NOT NULL;

ALTER TABLE sessions ADD COLUMN auth_method text NOT NULL DEFAULT 'password';
ALTER TABLE sessions ADD COLUMN mfa boolean NOT NULL DEFAULT false;
-- The tenant's absolute timeout caps expires_at; idle and absolute limits are checked again on use.
CREATE INDEX sessions_user_active_idx ON sessions (user_id, created_at) WHERE revoked_at IS NULL;

ALTER TABLE user_totp ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_totp FORCE ROW LEVEL SECURITY;
CREATE POLICY user_totp_all ON user_totp USING (app_is_system() OR user_id = app_user_id())
  WITH CHECK (app_is_system() OR user_id = app_user_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON user_totp TO steward_app;

ALTER TABLE user_backup_codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_backup_codes FORCE ROW LEVEL SECURITY;
CREATE POLICY user_backup_codes_all ON user_backup_codes USING (app_is_system() OR user_id = app_user_id())
  WITH CHECK (app_is_system() OR user_id = app_user_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON user_backup_codes TO steward_app;

ALTER TABLE passkeys ENABLE ROW LEVEL SECURITY;
ALTER TABLE passkeys FORCE ROW LEVEL SECURITY;
CREATE POLICY passkeys_all ON passkeys USING (app_is_system() OR user_id = app_user_id())
  WITH CHECK (app_is_system() OR user_id = app_user_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON passkeys TO steward_app;

ALTER TABLE auth_challenges ENABLE ROW LEVEL SECURITY;
ALTER TABLE auth_challenges FORCE ROW LEVEL SECURITY;
CREATE POLICY auth_challenges_all ON auth_challenges USING (app_is_system()) WITH CHECK (app_is_system());
GRANT SELECT, INSERT, UPDATE, DELETE ON auth_challenges TO steward_app;
