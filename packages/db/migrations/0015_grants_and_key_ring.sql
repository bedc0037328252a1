-- Tenant erasure deletes every row of the tenant from every tenant table (privacy/tenant-erasure.ts):
-- the runtime role needs DELETE on the tenant tables added beside it (RLS still limits it to the
-- tenant in context).
GRANT DELETE ON scim_tokens TO steward_app;
GRANT DELETE ON push_notified TO steward_app;

-- key_ring is read and written only under system access (keys/key-ring-store.ts): a transaction
-- without a context, or a tenant's, sees none of it.
DROP POLICY key_ring_select ON key_ring;
CREATE POLICY key_ring_select ON key_ring FOR SELECT USING (app_is_system());
