import type { Tx } from '@steward/db/database';
import { invalid } from '../errors/app-error.ts';
import type { Permission } from '../identity/permissions.ts';
import { assertCanGrant, getRoleByName } from '../identity/role-service.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';

/** Which role SCIM gives: `defaultRole` to every provisioned user, `groupRoles[group]` to group members. */
export interface ScimSettings {
  defaultRole: string;
  groupRoles: Record<string, string>;
}

export async function readScimSettings(tx: Tx, tenantId: string): Promise<ScimSettings> {
  const [row] = await tx<{ default_role: string; group_roles: Record<string, string> }[]>`
    select default_role, group_roles from scim_settings where tenant_id = ${tenantId}`;
  return { defaultRole: row?.default_role ?? 'member', groupRoles: row?.group_roles ?? {} };
}

export function getScimSettings(res: Resources, tenantId: string): Promise<ScimSettings> {
  return res.db.withTenant(tenantId, (tx) => readScimSettings(tx, tenantId));
}

export async function putScimSettings(
  res: Resources,
  tenantId: string,
  actor: Actor,
  input: ScimSettings,
  granter?: ReadonlySet<Permission>,
): Promise<ScimSettings> {
  if (Object.keys(input.groupRoles).length > 200) throw invalid('body/groupRoles has more than 200 entries');
  return res.db.withTenant(tenantId, async (tx) => {
    for (const [where, role] of [
      ['body/defaultRole', input.defaultRole],
      ...Object.entries(input.groupRoles).map(([g, r]) => [`body/groupRoles/${g}`, r]),
    ] as [string, string][]) {
      if (role === 'owner') throw invalid(`${where}: SCIM cannot grant the owner role`);
      const r = await getRoleByName(tx, tenantId, role);
      if (granter) assertCanGrant(granter, r);
    }
    await tx`
      insert into scim_settings (tenant_id, default_role, group_roles) values (${tenantId}, ${input.defaultRole}, ${tx.json(input.groupRoles)})
      on conflict (tenant_id) do update set default_role = excluded.default_role, group_roles = excluded.group_roles, updated_at = now()`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'scim_settings.updated',
      targetType: 'tenant',
      targetId: tenantId,
      details: { defaultRole: input.defaultRole, groupRoles: input.groupRoles },
    });
    return input;
  });
}
