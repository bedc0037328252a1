import type { Tx } from '@steward/db/database';
import { rolePermissions } from '../identity/permissions.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { ScimError } from './scim-error.ts';
import { readScimSettings } from './scim-settings-service.ts';

/**
 * What SCIM changes on a tenant's memberships: roles from group mappings, and deprovisioning.
 * Owners are never re-roled by SCIM, and the last active owner cannot be deprovisioned.
 */

async function activeOwners(tx: Tx, tenantId: string): Promise<number> {
  const [row] = await tx<{ n: string }[]>`
    select count(*) as n from memberships m join roles r on r.tenant_id = m.tenant_id and r.id = m.role_id
    where m.tenant_id = ${tenantId} and r.name = 'owner' and r.builtin and m.status = 'active'`;
  return Number(row?.n ?? 0);
}

export async function assertNotLastOwner(tx: Tx, tenantId: string, userId: string): Promise<void> {
  const [m] = await tx<{ role: string; status: string }[]>`
    select r.name as role, m.status from memberships m join roles r on r.tenant_id = m.tenant_id and r.id = m.role_id
    where m.tenant_id = ${tenantId} and m.user_id = ${userId}`;
  if (m?.role === 'owner' && m.status === 'active' && (await activeOwners(tx, tenantId)) <= 1)
    throw new ScimError(409, 'the last active owner of the tenant cannot be deprovisioned', 'mutability');
}

/** Revoke every session of the user in the tenant (the caller drops the cache after commit). */
export async function revokeTenantSessions(
  tx: Tx,
  tenantId: string,
  userId: string,
  reason: string,
): Promise<string[]> {
  const rows = await tx<{ id: string }[]>`
    update sessions set revoked_at = now(), revoked_reason = ${reason}
    where user_id = ${userId} and active_tenant_id = ${tenantId} and revoked_at is null returning id`;
  return rows.map((r) => r.id);
}

/** Make revocations effective at once in this process (other processes: within the 1 s auth cache). */
export function forgetSessions(res: Resources, tenantId: string, sessionIds: string[]): void {
  for (const id of sessionIds) res.auth.invalidateSession(id);
  res.auth.invalidateTenant(tenantId);
}

/**
 * Set each user's role from their SCIM groups: the strongest mapped role, else the default role.
 * Returns true when a role changed.
 */
export async function syncRoles(
  res: Resources,
  tx: Tx,
  tenantId: string,
  userIds: string[],
  actor: Actor,
): Promise<boolean> {
  if (!userIds.length) return false;
  const settings = await readScimSettings(tx, tenantId);
  const roles = await tx<{ id: string; name: string; builtin: boolean; permissions: string[] }[]>`
    select id, name, builtin, permissions from roles where tenant_id = ${tenantId}`;
  const byName = new Map(roles.map((r) => [r.name, { ...r, strength: rolePermissions(r).length }]));
  const members = await tx<{ user_id: string; role: string }[]>`
    select m.user_id, r.name as role from memberships m join roles r on r.tenant_id = m.tenant_id and r.id = m.role_id
    where m.tenant_id = ${tenantId} and m.user_id = any(${userIds})`;
  const groups = await tx<{ user_id: string; display_name: string }[]>`
    select gm.user_id, g.display_name from scim_group_members gm
    join scim_groups g on g.tenant_id = gm.tenant_id and g.id = gm.group_id
    where gm.tenant_id = ${tenantId} and gm.user_id = any(${userIds})`;
  let changed = false;
  for (const m of members) {
    if (m.role === 'owner') continue;
    const candidates = groups
      .filter((g) => g.user_id === m.user_id)
      .map((g) => settings.groupRoles[g.display_name])
      .filter((r): r is string => !!r && r !== 'owner')
      .map((r) => byName.get(r))
      .filter((r) => !!r)
      .sort((x, y) => y.strength - x.strength || x.name.localeCompare(y.name));
    const target = candidates[0] ?? byName.get(settings.defaultRole);
    if (!target || target.name === m.role) continue;
    await tx`update memberships set role_id = ${target.id}, updated_at = now()
             where tenant_id = ${tenantId} and user_id = ${m.user_id}`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'user.role_synced',
      targetType: 'user',
      targetId: m.user_id,
      details: { via: 'scim', from: m.role, to: target.name },
    });
    changed = true;
  }
  return changed;
}
