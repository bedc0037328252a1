-- IMAP mailboxes are connections of kind 'imap' (config: host, port, secure, username, mailbox;
-- the password is the encrypted secret). imap_state remembers, per mailbox, the UIDVALIDITY and
-- the last UID turned into an event, so a restart resumes where the watcher stopped.
ALTER TABLE connections DROP CONSTRAINT connections_kind_check;
ALTER TABLE connections ADD CONSTRAINT connections_kind_check CHECK (kind IN ('smtp', 'http', 'imap'));

CREATE TABLE imap_state (
  tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  connection_id  uuid NOT NULL,
  uidvalidity    bigint NOT NULL,
  last_uid       bigint NOT NULL DEFAULT 0,
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, connection_id),
  FOREIGN KEY (tenant_id, connection_id) REFERENCES connections (tenant_id, id) ON DELETE CASCADE
);

ALTER TABLE imap_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE imap_state FORCE ROW LEVEL SECURITY;
CREATE POLICY imap_state_base ON imap_state AS PERMISSIVE FOR ALL USING (true) WITH CHECK (true);
CREATE POLICY imap_state_tenant_isolation ON imap_state AS RESTRICTIVE FOR ALL
  USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON imap_state TO steward_app;
