import type { Tx } from '@steward/db/database';
import { AppError, conflict, forbidden, invalid, notFound } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { decodeCursor, encodeCursor, type Page } from '../shared/cursor.ts';
import {
  BUILTIN_ROLES,
  isBuiltinRole,
  isPermission,
  rolePermissions,
  type Permission,
} from './permissions.ts';

export interface Role {
  id: string;
  name: string;
  description: string;
  builtin: boolean;
  permissions: Permission[];
  createdAt: string;
}

interface RoleRow {
  id: string;
  name: string;
  description: string;
  builtin: boolean;
  permissions: string[];
  created_at: Date;
}

export function toRole(r: RoleRow): Role {
  return {
    id: r.id,
    name: r.name,
    description: r.description,
    builtin: r.builtin,
    permissions: rolePermissions(r),
    createdAt: r.created_at.toISOString(),
  };
}

/** Insert the built-in roles of a new tenant (inside a transaction scoped to it). */
export async function seedBuiltinRoles(tx: Tx, tenantId: string): Promise<void> {
  for (const [name, role] of Object.entries(BUILTIN_ROLES)) {
    await tx`insert into roles (tenant_id, name, description, builtin) values (${tenantId}, ${name}, ${role.description}, true)`;
  }
}

export async function findRoleByName(tx: Tx, tenantId: string, name: string): Promise<Role | null> {
  const [row] = await tx<RoleRow[]>`select * from roles where tenant_id = ${tenantId} and name = ${name}`;
  return row ? toRole(row) : null;
}

export async function getRoleByName(tx: Tx, tenantId: string, name: string): Promise<Role> {
  const role = await findRoleByName(tx, tenantId, name);
  if (!role) throw invalid(`role "${name}" does not exist in this tenant`);
  return role;
}

export async function getRole(tx: Tx, tenantId: string, id: string): Promise<Role> {
  const [row] = await tx<RoleRow[]>`select * from roles where tenant_id = ${tenantId} and id = ${id}`;
  if (!row) throw notFound('role');
  return toRole(row);
}

/** Nobody may grant more than they hold: a role's permissions must be a subset of the granter's. */
export function assertCanGrant(granter: ReadonlySet<Permission>, role: Role): void {
  const missing = role.permissions.filter((p) => !granter.has(p));
  if (missing.length)
    throw forbidden(`you cannot grant role "${role.name}": it holds ${missing.join(', ')}, which you do not`);
}

export async function listRoles(
  res: Resources,
  tenantId: string,
  q: { limit: number; cursor?: string | undefined },
): Promise<Page<Role>> {
  const after = decodeCursor(q.cursor, ['name']);
  return res.db.withTenant(tenantId, async (tx) => {
    const rows = await tx<RoleRow[]>`
      select * from roles where tenant_id = ${tenantId} ${after ? tx`and name > ${after.name}` : tx``}
      order by name limit ${q.limit + 1}`;
    const items = rows.slice(0, q.limit).map(toRole);
    return { items, nextCursor: rows.length > q.limit ? encodeCursor({ name: items.at(-1)!.name }) : null };
  });
}

function checkPermissions(list: string[]): Permission[] {
  const unknown = list.filter((p) => !isPermission(p));
  if (unknown.length) throw invalid(`body/permissions has unknown permissions: ${unknown.join(', ')}`);
  return [...new Set(list)] as Permission[];
}

export async function createRole(
  res: Resources,
  tenantId: string,
  actor: Actor,
  granter: ReadonlySet<Permission>,
  input: { name: string; description?: string | undefined; permissions: string[] },
): Promise<Role> {
  if (isBuiltinRole(input.name)) throw conflict(`"${input.name}" is a built-in role`);
  const permissions = checkPermissions(input.permissions);
  const missing = permissions.filter((p) => !granter.has(p));
  if (missing.length)
    throw forbidden(`you cannot create a role holding ${missing.join(', ')}, which you do not hold`);
  return res.db.withTenant(tenantId, async (tx) => {
    const [row] = await tx<RoleRow[]>`
      insert into roles (tenant_id, name, description, permissions)
      values (${tenantId}, ${input.name}, ${input.description ?? ''}, ${permissions})
      on conflict (tenant_id, name) do nothing returning *`;
    if (!row) throw conflict(`a role named "${input.name}" already exists`);
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'role.created',
      targetType: 'role',
      targetId: row.id,
      details: { name: input.name, permissions },
    });
    return toRole(row);
  });
}

export async function updateRole(
  res: Resources,
  tenantId: string,
  actor: Actor,
  granter: ReadonlySet<Permission>,
  id: string,
  input: { description?: string | undefined; permissions?: string[] | undefined },
): Promise<Role> {
  return res.db.withTenant(tenantId, async (tx) => {
    const role = await getRole(tx, tenantId, id);
    if (role.builtin) throw new AppError('CONFLICT', 'built-in roles cannot be changed');
    const permissions = input.permissions ? checkPermissions(input.permissions) : role.permissions;
    const missing = permissions.filter((p) => !granter.has(p));
    if (missing.length)
      throw forbidden(`you cannot give a role ${missing.join(', ')}, which you do not hold`);
    const [row] = await tx<RoleRow[]>`
      update roles set description = ${input.description ?? role.description}, permissions = ${permissions},
        updated_at = now()
      where tenant_id = ${tenantId} and id = ${id} returning *`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'role.updated',
      targetType: 'role',
      targetId: id,
      details: { permissions },
    });
    res.auth.invalidateTenant(tenantId);
    return toRole(row!);
  });
}

export async function deleteRole(res: Resources, tenantId: string, actor: Actor, id: string): Promise<void> {
  await res.db.withTenant(tenantId, async (tx) => {
    const role = await getRole(tx, tenantId, id);
    if (role.builtin) throw conflict('built-in roles cannot be deleted');
    const [used] = await tx`
      select 1 from memberships where tenant_id = ${tenantId} and role_id = ${id}
      union all select 1 from api_keys where tenant_id = ${tenantId} and role_id = ${id}
      limit 1`;
    if (used) throw conflict('the role is still assigned to users or API keys (revoked keys included)');
    await tx`delete from roles where tenant_id = ${tenantId} and id = ${id}`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'role.deleted',
      targetType: 'role',
      targetId: id,
      details: { name: role.name },
    });
  });
}
