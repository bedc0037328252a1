-- Audit entries of the busy paths (event intake, planner, executor) are staged here, in the
-- transaction of the change they record and without any lock, and chained into audit_log later, in
-- batches, by a sealer (packages/core/src/audit/audit-sealer.ts) that holds the tenant's chain head
-- for one short transaction. Before, each of those transactions held the head (audit_heads) from its
-- audit write to its commit, so one tenant's transactions queued behind each other's commits.
-- An entry still commits exactly when its change commits; it gets its seq and HMAC when sealed
-- (milliseconds later; readers of the chain seal first). Rows are deleted as they are sealed.
CREATE TABLE audit_pending (
  tenant_id    uuid NOT NULL,
  id           bigint GENERATED ALWAYS AS IDENTITY,
  at           timestamptz NOT NULL,
  actor_type   text NOT NULL,
  actor_id     text,
  actor_label  text,
  action       text NOT NULL,
  target_type  text,
  target_id    text,
  outcome      text NOT NULL,
  request_id   text,
  ip           text,
  details      jsonb NOT NULL,
  PRIMARY KEY (tenant_id, id)
);

ALTER TABLE audit_pending ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_pending FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_pending_base ON audit_pending AS PERMISSIVE FOR ALL USING (true) WITH CHECK (true);
-- Readable under system access too: the sealer's sweep looks for tenants with entries left behind
-- by a process that died before sealing them.
CREATE POLICY audit_pending_tenant_isolation_read ON audit_pending AS RESTRICTIVE FOR SELECT
  USING (tenant_id = (SELECT app_tenant_id()) OR (SELECT app_is_system()));
CREATE POLICY audit_pending_tenant_isolation_insert ON audit_pending AS RESTRICTIVE FOR INSERT
  WITH CHECK (tenant_id = (SELECT app_tenant_id()));
CREATE POLICY audit_pending_tenant_isolation_update ON audit_pending AS RESTRICTIVE FOR UPDATE
  USING (tenant_id = (SELECT app_tenant_id()))
  WITH CHECK (tenant_id = (SELECT app_tenant_id()));
CREATE POLICY audit_pending_tenant_isolation_delete ON audit_pending AS RESTRICTIVE FOR DELETE
  USING (tenant_id = (SELECT app_tenant_id()));

-- No UPDATE: a staged entry is inserted, then deleted by the sealer that chains it.
GRANT SELECT, INSERT, DELETE ON audit_pending TO steward_app;
