import { rm } from 'node:fs/promises';
import path from 'node:path';
import { PLATFORM_TENANT_ID } from '../audit/audit-log.ts';
import { invalid, notFound } from '../errors/app-error.ts';
import { keyProvidersFor } from '../keys/key-providers.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { pseudonymOf, redactAudit } from './audit-redaction.ts';
import { anonymiseIdentity, deleteTenantRows } from './erasure-support.ts';
import { exportsDir } from './export-files.ts';

export interface TenantErasureReport {
  tenantId: string;
  pseudonym: string;
  /** The tenant's data key was destroyed (crypto-shredding). */
  dataKeyDestroyed: boolean;
  /** Its key-encryption key outside the database was destroyed (shreds database backups too). */
  tenantKekDestroyed: boolean;
  deleted: Record<string, number>;
  /** Tenant tables the runtime may not delete from (should be empty). */
  left: string[];
  auditEntriesRedacted: number;
  usersAnonymised: number;
}

/**
 * Erase a whole tenant. First its data key is destroyed (crypto-shredding): every copy of its
 * encrypted data, in every backup, is unreadable from that moment, whatever happens next. Then every
 * row of every tenant table is deleted, its files and exports removed, members who belong to no other
 * tenant anonymised, and its audit chain kept but emptied of content (actions and times stay, every
 * personal field and all details go). The tenant row stays, renamed and marked erased, because the
 * chain refers to it. Idempotent: an interrupted erasure is finished by running it again.
 */
export async function eraseTenant(
  res: Resources,
  tenantId: string,
  actor: Actor,
  confirmSlug: string,
): Promise<TenantErasureReport> {
  const [tenant] = await res.db.withSystemAccess(
    (tx) =>
      tx<
        { id: string; slug: string; status: string }[]
      >`select id, slug, status from tenants where id = ${tenantId}`,
  );
  if (!tenant || tenant.id === PLATFORM_TENANT_ID) throw notFound('tenant');
  const pseudonym = pseudonymOf(res.master, 'tenant', tenantId);
  if (tenant.status !== 'erased' && confirmSlug !== tenant.slug) {
    throw invalid('confirm: must be the slug of the tenant being erased');
  }
  const asUser = actor.type === 'user' && actor.id ? { userId: actor.id } : {};
  // Entries up to here are the tenant's history (redacted below); the erasure's own stay as written.
  const [head] = await res.db.withTenant(
    tenantId,
    (tx) => tx<{ seq: string | null }[]>`select max(seq) as seq from audit_log where tenant_id = ${tenantId}`,
  );
  const upToSeq = Number(head?.seq ?? 0);
  // 1. Crypto-shredding. First the tenant's key-encryption key outside the database (the keystore):
  // no database backup holds it, so from here on no copy of the tenant's wrapped data key opens,
  // wherever it is. Then the wrapped key itself, in its own transaction so that it holds even if a
  // later step fails.
  const providers = keyProvidersFor(res.master);
  const tenantKekDestroyed = await providers.destroyTenantKek(tenantId);
  const dataKeyDestroyed = await res.db.withTenant(
    tenantId,
    async (tx) => {
      const gone = await tx`delete from tenant_keys where tenant_id = ${tenantId} returning tenant_id`;
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'privacy.tenant_key_destroyed',
        targetType: 'tenant',
        targetId: tenantId,
        details: { destroyed: gone.length > 0, tenantKekDestroyed },
      });
      return gone.length > 0 || tenantKekDestroyed;
    },
    asUser,
  );
  providers.forget(tenantId);
  // 2. Files (before the slug, which names the folder, is replaced).
  if (tenant.status !== 'erased')
    await rm(path.join(res.dataDir, 'tenants', tenant.slug), { recursive: true, force: true });
  // 3. Rows, the audit chain's content and the tenant's name.
  const members = await res.db.withTenant(
    tenantId,
    (tx) =>
      tx<{ id: string; email: string; name: string }[]>`
      select u.id, u.email, u.name from memberships m join users u on u.id = m.user_id where m.tenant_id = ${tenantId}`,
  );
  const rows = await res.db.withTenant(
    tenantId,
    async (tx) => {
      const { deleted, left } = await deleteTenantRows(tx, tenantId);
      const auditEntriesRedacted = await redactAudit(tx, res.master, tenantId, {
        needles: [],
        pseudonym,
        everything: true,
        upToSeq,
      });
      await tx`update tenants set slug = ${`erased-${tenantId.slice(0, 8)}`}, name = 'Erased tenant', settings = '{}'::jsonb,
                 status = 'erased', updated_at = now() where id = ${tenantId}`;
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'privacy.tenant_erased',
        targetType: 'tenant',
        targetId: tenantId,
        details: { deleted, left, auditEntriesRedacted },
      });
      return { deleted, left, auditEntriesRedacted };
    },
    asUser,
  );
  await res.db.withSystemAccess(async (tx) => {
    await tx`delete from refresh_tokens where session_id in (select id from sessions where active_tenant_id = ${tenantId})`;
    await tx`delete from sessions where active_tenant_id = ${tenantId}`;
  });
  let usersAnonymised = 0;
  for (const m of members) {
    if (await anonymiseIdentity(res, m, pseudonymOf(res.master, 'user', m.id))) usersAnonymised++;
  }
  // 4. Export archives.
  await rm(exportsDir(res.dataDir, tenantId), { recursive: true, force: true });
  await res.db.withSystemAccess(
    (tx) =>
      res.audit.append(tx, PLATFORM_TENANT_ID, {
        ...auditActor(actor),
        action: 'privacy.tenant_erased',
        targetType: 'tenant',
        targetId: tenantId,
        details: { dataKeyDestroyed, tenantKekDestroyed, usersAnonymised },
      }),
    { tenantId: PLATFORM_TENANT_ID },
  );
  return { tenantId, pseudonym, dataKeyDestroyed, tenantKekDestroyed, ...rows, usersAnonymised };
}
