import { rm } from 'node:fs/promises';
import path from 'node:path';
import { conflict, notFound } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { pseudonymOf, redactAudit } from './audit-redaction.ts';
import { anonymiseIdentity, scrubFiles, scrubTenantRows } from './erasure-support.ts';
import { exportFilePath } from './export-files.ts';

export interface UserErasureReport {
  /** What the user's id, email and name were replaced with. */
  pseudonym: string;
  /** Rows changed or deleted per table in this tenant. */
  rows: Record<string, number>;
  auditEntriesRedacted: number;
  filesScrubbed: number;
  /** The identity itself was anonymised (the user belonged to no other tenant). */
  identityAnonymised: boolean;
}

/**
 * Erase a member of this tenant (GDPR art. 17): membership, consents, exports about them and
 * their sessions go; their email, name and id are replaced by a pseudonym in every row and file of
 * the tenant; audit entries are kept but pseudonymised (see audit-redaction.ts). If they belong to
 * no other tenant, the identity is anonymised too. Idempotent: a second run finds nothing.
 */
export async function eraseUser(
  res: Resources,
  tenantId: string,
  actor: Actor,
  userId: string,
): Promise<UserErasureReport> {
  if (actor.type === 'user' && actor.id === userId)
    throw conflict('you cannot erase yourself; ask another administrator');
  const user = await res.db.withTenant(tenantId, async (tx) => {
    const [u] = await tx<{ id: string; email: string; name: string; slug: string }[]>`
      select u.id, u.email, u.name, t.slug from memberships m join users u on u.id = m.user_id
        join tenants t on t.id = m.tenant_id
      where m.tenant_id = ${tenantId} and m.user_id = ${userId}`;
    if (!u) return undefined;
    const owners = await tx<{ user_id: string }[]>`
      select m.user_id from memberships m join roles r on r.tenant_id = m.tenant_id and r.id = m.role_id
      where m.tenant_id = ${tenantId} and r.name = 'owner' and r.builtin and m.status = 'active'`;
    if (owners.length === 1 && owners[0]!.user_id === userId)
      throw conflict('the last owner cannot be erased');
    return u;
  });
  if (!user) throw notFound('user');
  const pseudonym = pseudonymOf(res.master, 'user', userId);
  const needles = [user.email, user.name];
  const result = await res.db.withTenant(
    tenantId,
    async (tx) => {
      const exports = await tx<{ id: string }[]>`
        delete from privacy_exports where tenant_id = ${tenantId} and subject_user_id = ${userId} returning id`;
      await tx`delete from consents where tenant_id = ${tenantId} and user_id = ${userId}`;
      await tx`update api_keys set created_by = null where tenant_id = ${tenantId} and created_by = ${userId}`;
      await tx`delete from memberships where tenant_id = ${tenantId} and user_id = ${userId}`;
      const rows = await scrubTenantRows(tx, tenantId, [...needles, userId], pseudonym);
      const auditEntriesRedacted = await redactAudit(tx, res.master, tenantId, {
        userId,
        needles,
        pseudonym,
      });
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'privacy.user_erased',
        targetType: 'user',
        targetId: pseudonym,
        details: { rows, auditEntriesRedacted, exportsDeleted: exports.length },
      });
      return { rows, auditEntriesRedacted, exports: exports.map((e) => e.id) };
    },
    actor.type === 'user' && actor.id ? { userId: actor.id } : {},
  );
  for (const id of result.exports) await rm(exportFilePath(res.dataDir, tenantId, id), { force: true });
  // Sessions in this tenant end now; the identity goes too when no other tenant knows the user.
  await res.db.withSystemAccess(async (tx) => {
    await tx`delete from refresh_tokens where session_id in
               (select id from sessions where user_id = ${userId} and active_tenant_id = ${tenantId})`;
    await tx`delete from sessions where user_id = ${userId} and active_tenant_id = ${tenantId}`;
  });
  const identityAnonymised = await anonymiseIdentity(res, user, pseudonym);
  const filesScrubbed = await scrubFiles(path.join(res.dataDir, 'tenants', user.slug), needles, pseudonym);
  return {
    pseudonym,
    rows: result.rows,
    auditEntriesRedacted: result.auditEntriesRedacted,
    filesScrubbed,
    identityAnonymised,
  };
}
