-- Invitations: an admin invites an email address to the tenant with a role. The token is shown once
-- (to the admin, as a link); only its SHA-256 is stored. It expires after 7 days, can be revoked,
-- and is used once: accepting it creates the membership (and, for a new address, the account).
CREATE TABLE invitations (
  tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id           uuid NOT NULL DEFAULT gen_random_uuid(),
  email        text NOT NULL CHECK (length(email) <= 320),
  role_id      uuid NOT NULL,
  token_hash   bytea NOT NULL UNIQUE,
  created_by   uuid REFERENCES users (id) ON DELETE SET NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  accepted_at  timestamptz,
  accepted_by  uuid REFERENCES users (id) ON DELETE SET NULL,
  revoked_at   timestamptz,
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX invitations_pending_idx ON invitations (tenant_id, created_at)
  WHERE accepted_at IS NULL AND revoked_at IS NULL;

ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY invitations_base ON invitations AS PERMISSIVE FOR ALL USING (true) WITH CHECK (true);
CREATE POLICY invitations_tenant_isolation ON invitations AS RESTRICTIVE FOR ALL
  USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE, DELETE ON invitations TO steward_app;
