-- Key management (pluggable key providers, rotation) and privacy (GDPR export, erasure, consent,
-- retention). See packages/core/src/keys/ and packages/core/src/privacy/.

-- ---------------------------------------------------------------------------------------------
-- tenant_keys: a data key may now be wrapped by any key provider (local key, Vault/OpenBao transit,
-- AWS KMS, PKCS#11). The row names the provider, the wrapping key and its version; remote providers
-- return opaque ciphertext of their own length and carry their nonce inside it (nonce NULL).
-- Existing rows were wrapped by the local provider, version 1 (the key derived from the master key).
ALTER TABLE tenant_keys DROP CONSTRAINT IF EXISTS tenant_keys_wrapped_key_check;
ALTER TABLE tenant_keys DROP CONSTRAINT IF EXISTS tenant_keys_nonce_check;
ALTER TABLE tenant_keys ALTER COLUMN nonce DROP NOT NULL;
ALTER TABLE tenant_keys
  ADD COLUMN key_provider text NOT NULL DEFAULT 'local'
    CHECK (key_provider IN ('local', 'vault', 'aws-kms', 'pkcs11')),
  ADD COLUMN key_id text NOT NULL DEFAULT 'tenant-kek' CHECK (length(key_id) BETWEEN 1 AND 500),
  ADD COLUMN key_version integer NOT NULL DEFAULT 1 CHECK (key_version >= 1),
  ADD COLUMN rewrapped_at timestamptz,
  ADD CONSTRAINT tenant_keys_wrapped_len CHECK (length(wrapped_key) BETWEEN 16 AND 8192),
  ADD CONSTRAINT tenant_keys_nonce_len CHECK (nonce IS NULL OR length(nonce) = 12);
CREATE INDEX tenant_keys_version_idx ON tenant_keys (key_provider, key_version);
-- Rotation re-wraps a data key in place (the key itself never changes); crypto-shredding deletes it.
GRANT UPDATE, DELETE ON tenant_keys TO steward_app;

-- key_ring: the key versions of each provider. For the local provider a row holds a random key
-- sealed under a key derived from the master key (version 1 is the derived key itself, no row);
-- for remote providers a row records the generation (the key material stays in Vault, KMS or the HSM).
CREATE TABLE key_ring (
  provider    text NOT NULL CHECK (provider IN ('local', 'vault', 'aws-kms', 'pkcs11')),
  version     integer NOT NULL CHECK (version >= 2),
  key_id      text NOT NULL CHECK (length(key_id) BETWEEN 1 AND 500),
  material    bytea CHECK (material IS NULL OR length(material) = 48),
  nonce       bytea CHECK (nonce IS NULL OR length(nonce) = 12),
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (provider, version)
);
ALTER TABLE key_ring ENABLE ROW LEVEL SECURITY;
ALTER TABLE key_ring FORCE ROW LEVEL SECURITY;
-- Readable by every transaction (the material is sealed under the master key), written by system access.
CREATE POLICY key_ring_select ON key_ring FOR SELECT USING (true);
CREATE POLICY key_ring_insert ON key_ring FOR INSERT WITH CHECK (app_is_system());
GRANT SELECT, INSERT ON key_ring TO steward_app;

-- ---------------------------------------------------------------------------------------------
-- Privacy.
-- An erased tenant keeps its row (its audit chain refers to it) under a neutral slug and name.
ALTER TABLE tenants DROP CONSTRAINT IF EXISTS tenants_status_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_status_check
  CHECK (status IN ('active', 'suspended', 'system', 'erased'));

-- Exports: an archive of everything about a tenant or a user, built by a job.
CREATE TABLE privacy_exports (
  tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id               uuid NOT NULL DEFAULT gen_random_uuid(),
  scope            text NOT NULL CHECK (scope IN ('tenant', 'user')),
  subject_user_id  uuid,
  status           text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
  progress         integer NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
  stage            text,
  file_name        text,
  size_bytes       bigint,
  sha256           text,
  error            text,
  requested_by     text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  finished_at      timestamptz,
  PRIMARY KEY (tenant_id, id),
  CHECK ((scope = 'user') = (subject_user_id IS NOT NULL))
);
CREATE INDEX privacy_exports_created_idx ON privacy_exports (tenant_id, created_at);

-- Consent records: an append-only history per user and purpose; the newest row is the state.
CREATE TABLE consents (
  tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id           uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id      uuid NOT NULL,
  purpose      text NOT NULL CHECK (purpose ~ '^[a-z][a-z0-9_.-]{0,63}$'),
  granted      boolean NOT NULL,
  source       text NOT NULL CHECK (length(source) BETWEEN 1 AND 200),
  recorded_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX consents_user_idx ON consents (tenant_id, user_id, purpose, recorded_at);

-- Retention: how many days each data class is kept (no row: kept forever).
CREATE TABLE retention_policies (
  tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  data_class  text NOT NULL CHECK (data_class IN
                ('tasks', 'events', 'webhook_deliveries', 'notifications', 'llm_usage', 'exports', 'consents')),
  days        integer NOT NULL CHECK (days BETWEEN 1 AND 36500),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, data_class)
);

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['privacy_exports', 'consents', 'retention_policies'] LOOP
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
GRANT SELECT, INSERT, UPDATE, DELETE ON privacy_exports, consents, retention_policies TO steward_app;

-- Erasure and retention delete rows the application otherwise only appends to.
GRANT DELETE ON tasks, events, steps, approvals, approval_decisions, known_recipients, notifications,
  llm_usage, imap_state, api_keys TO steward_app;
GRANT DELETE ON sessions, refresh_tokens TO steward_app;

-- Audit entries are never deleted; erasure pseudonymises their personal fields. Only those columns
-- may change, the chain fields never, and a redaction cannot be undone (see privacy/audit-redaction.ts).
ALTER TABLE audit_log ADD COLUMN redacted_at timestamptz, ADD COLUMN redaction_mac text;
GRANT UPDATE (actor_label, actor_id, ip, details, target_id, redacted_at, redaction_mac) ON audit_log TO steward_app;
-- The guard is for the runtime role; the table owner (who can drop triggers anyway) is what the HMAC
-- chain itself detects.
CREATE FUNCTION audit_log_redaction_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE') THEN
    RETURN NEW;
  END IF;
  IF NEW.redacted_at IS NULL OR NEW.redaction_mac IS NULL OR NEW.hash <> OLD.hash
     OR NEW.prev_hash <> OLD.prev_hash OR NEW.seq <> OLD.seq OR NEW.tenant_id <> OLD.tenant_id
     OR NEW.action <> OLD.action OR NEW.at <> OLD.at THEN
    RAISE EXCEPTION 'audit entries may only be redacted';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER audit_log_redaction_only BEFORE UPDATE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_redaction_only();
