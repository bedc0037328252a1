import type { Tx } from '@steward/db/database';
import { auditActor, type Resources } from '../resources.ts';
import { ScimError } from './scim-error.ts';
import { parseFilterAst } from './scim-filter.ts';
import { filterSql, type ColumnMap } from './scim-filter-sql.ts';
import { forgetSessions, syncRoles } from './scim-membership.ts';
import type { ScimCaller } from './scim-token-service.ts';
import {
  listResponse,
  memberIds,
  paging,
  patchOperations,
  type ListParams,
  type ListResponse,
} from './scim-user-service.ts';

/**
 * SCIM Groups. A group's members get the role its displayName maps to in the tenant's SCIM settings
 * (`groupRoles`); every membership change recomputes the roles of the users it touches.
 */

export const GROUP_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const GROUP_FILTER_ATTRIBUTES = ['id', 'displayName', 'externalId', 'members.value'];

export interface ScimGroup {
  schemas: string[];
  id: string;
  displayName: string;
  externalId?: string;
  members: { value: string; display: string; $ref: string }[];
  meta: { resourceType: 'Group'; created: string; lastModified: string; location: string };
}

interface Row {
  id: string;
  display_name: string;
  external_id: string | null;
  created_at: Date;
  updated_at: Date;
}

const tx0 =
  (res: Resources, caller: ScimCaller) =>
  <T>(fn: (tx: Tx) => Promise<T>) =>
    res.db.withSystemAccess(fn, { tenantId: caller.tenantId });

const isUuid = (id: string) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id);

async function toResources(tx: Tx, tenantId: string, base: string, list: Row[]): Promise<ScimGroup[]> {
  const ids = list.map((g) => g.id);
  const members = ids.length
    ? await tx<{ group_id: string; user_id: string; email: string }[]>`
        select gm.group_id, gm.user_id, u.email from scim_group_members gm join users u on u.id = gm.user_id
        where gm.tenant_id = ${tenantId} and gm.group_id = any(${ids}) order by u.email`
    : [];
  return list.map((g) => ({
    schemas: [GROUP_SCHEMA],
    id: g.id,
    displayName: g.display_name,
    ...(g.external_id ? { externalId: g.external_id } : {}),
    members: members
      .filter((m) => m.group_id === g.id)
      .map((m) => ({ value: m.user_id, display: m.email, $ref: `${base}/Users/${m.user_id}` })),
    meta: {
      resourceType: 'Group',
      created: g.created_at.toISOString(),
      lastModified: g.updated_at.toISOString(),
      location: `${base}/Groups/${g.id}`,
    },
  }));
}

async function one(tx: Tx, tenantId: string, base: string, id: string): Promise<ScimGroup> {
  if (!isUuid(id)) throw new ScimError(404, 'group not found');
  const rows = await tx<Row[]>`
    select id, display_name, external_id, created_at, updated_at from scim_groups where tenant_id = ${tenantId} and id = ${id}`;
  if (!rows.length) throw new ScimError(404, 'group not found');
  return (await toResources(tx, tenantId, base, rows))[0]!;
}

/** Where a filter attribute lives in the groups query (scim-filter-sql.ts). */
function groupColumns(tx: Tx): ColumnMap {
  return {
    id: { kind: 'text', sql: tx`g.id::text` },
    displayName: { kind: 'text', sql: tx`g.display_name` },
    externalId: { kind: 'text', sql: tx`g.external_id` },
    'members.value': {
      kind: 'multi',
      any: (condition) => tx`exists (select 1 from scim_group_members gm
        where gm.tenant_id = g.tenant_id and gm.group_id = g.id and ${condition(tx`gm.user_id::text`)})`,
    },
  };
}

/** A page of groups: filtered, counted and paged in SQL. */
export async function listScimGroups(
  res: Resources,
  caller: ScimCaller,
  base: string,
  q: ListParams,
): Promise<ListResponse<ScimGroup>> {
  const filter = parseFilterAst(q.filter, GROUP_FILTER_ATTRIBUTES);
  const { startIndex, count } = paging(q);
  return tx0(
    res,
    caller,
  )(async (tx) => {
    const where = () => (filter ? tx`and (${filterSql(tx, filter, groupColumns(tx))})` : tx``);
    const [total] = await tx<{ n: number }[]>`
      select count(*)::int as n from scim_groups g where g.tenant_id = ${caller.tenantId} ${where()}`;
    const rows = count
      ? await tx<Row[]>`
          select g.id, g.display_name, g.external_id, g.created_at, g.updated_at from scim_groups g
          where g.tenant_id = ${caller.tenantId} ${where()}
          order by g.created_at, g.id limit ${count} offset ${startIndex - 1}`
      : [];
    return listResponse(await toResources(tx, caller.tenantId, base, rows), total!.n, startIndex);
  });
}

export function getScimGroup(
  res: Resources,
  caller: ScimCaller,
  base: string,
  id: string,
): Promise<ScimGroup> {
  return tx0(res, caller)((tx) => one(tx, caller.tenantId, base, id));
}

function displayNameOf(v: unknown): string {
  if (typeof v !== 'string' || v.length < 1 || v.length > 256)
    throw new ScimError(400, 'displayName must be a string of 1 to 256 characters', 'invalidValue');
  return v;
}

function memberValues(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ScimError(400, 'members must be a list', 'invalidValue');
  return v.map((m: unknown) => {
    const value = (m as { value?: unknown } | null)?.value;
    if (typeof value !== 'string')
      throw new ScimError(400, 'each member needs a value (a user id)', 'invalidValue');
    return value;
  });
}

/** Set the group's members (and audit), then recompute the roles of everyone who joined or left. */
async function setMembers(
  res: Resources,
  tx: Tx,
  caller: ScimCaller,
  groupId: string,
  wanted: string[],
): Promise<void> {
  const { tenantId } = caller;
  const next = new Set(await memberIds(tx, tenantId, [...new Set(wanted)]));
  const before = new Set(
    (
      await tx<{ user_id: string }[]>`
        select user_id from scim_group_members where tenant_id = ${tenantId} and group_id = ${groupId}`
    ).map((r) => r.user_id),
  );
  const added = [...next].filter((u) => !before.has(u));
  const removed = [...before].filter((u) => !next.has(u));
  if (removed.length)
    await tx`delete from scim_group_members where tenant_id = ${tenantId} and group_id = ${groupId} and user_id = any(${removed})`;
  for (const u of added)
    await tx`insert into scim_group_members (tenant_id, group_id, user_id) values (${tenantId}, ${groupId}, ${u})`;
  if (added.length || removed.length) {
    await tx`update scim_groups set updated_at = now() where tenant_id = ${tenantId} and id = ${groupId}`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(caller.actor),
      action: 'scim_group.members_changed',
      targetType: 'scim_group',
      targetId: groupId,
      details: { added: added.slice(0, 100), removed: removed.slice(0, 100) },
    });
    await syncRoles(res, tx, tenantId, [...added, ...removed], caller.actor);
  }
}

function mapUnique(e: unknown): never {
  if ((e as { code?: string }).code === '23505')
    throw new ScimError(409, 'a group with this displayName already exists', 'uniqueness');
  throw e;
}

export async function createScimGroup(
  res: Resources,
  caller: ScimCaller,
  base: string,
  body: Record<string, unknown>,
): Promise<ScimGroup> {
  const displayName = displayNameOf(body.displayName);
  const externalId = typeof body.externalId === 'string' ? body.externalId : null;
  const members = memberValues(body.members);
  const group = await tx0(
    res,
    caller,
  )(async (tx) => {
    const [row] = await tx<{ id: string }[]>`
      insert into scim_groups (tenant_id, display_name, external_id) values (${caller.tenantId}, ${displayName}, ${externalId})
      returning id`;
    await res.audit.append(tx, caller.tenantId, {
      ...auditActor(caller.actor),
      action: 'scim_group.created',
      targetType: 'scim_group',
      targetId: row!.id,
      details: { displayName },
    });
    await setMembers(res, tx, caller, row!.id, members);
    return one(tx, caller.tenantId, base, row!.id);
  }).catch(mapUnique);
  forgetSessions(res, caller.tenantId, []);
  return group;
}

async function update(
  res: Resources,
  caller: ScimCaller,
  base: string,
  id: string,
  fn: (
    tx: Tx,
    current: ScimGroup,
  ) => Promise<{ displayName?: string; externalId?: string | null; members?: string[] }>,
): Promise<ScimGroup> {
  const group = await tx0(
    res,
    caller,
  )(async (tx) => {
    const current = await one(tx, caller.tenantId, base, id);
    const d = await fn(tx, current);
    if (d.displayName !== undefined && d.displayName !== current.displayName) {
      await tx`update scim_groups set display_name = ${d.displayName}, updated_at = now()
               where tenant_id = ${caller.tenantId} and id = ${id}`;
    }
    if (d.externalId !== undefined && d.externalId !== (current.externalId ?? null)) {
      await tx`update scim_groups set external_id = ${d.externalId}, updated_at = now()
               where tenant_id = ${caller.tenantId} and id = ${id}`;
    }
    if (d.displayName !== undefined || d.externalId !== undefined) {
      await res.audit.append(tx, caller.tenantId, {
        ...auditActor(caller.actor),
        action: 'scim_group.updated',
        targetType: 'scim_group',
        targetId: id,
        details: { displayName: d.displayName ?? current.displayName },
      });
    }
    if (d.members) await setMembers(res, tx, caller, id, d.members);
    // A renamed group may map to another role.
    if (d.displayName !== undefined && d.displayName !== current.displayName)
      await syncRoles(
        res,
        tx,
        caller.tenantId,
        current.members.map((m) => m.value),
        caller.actor,
      );
    return one(tx, caller.tenantId, base, id);
  }).catch(mapUnique);
  forgetSessions(res, caller.tenantId, []);
  return group;
}

export function replaceScimGroup(
  res: Resources,
  caller: ScimCaller,
  base: string,
  id: string,
  body: Record<string, unknown>,
): Promise<ScimGroup> {
  return update(res, caller, base, id, async () => ({
    displayName: displayNameOf(body.displayName),
    externalId: typeof body.externalId === 'string' ? body.externalId : null,
    members: memberValues(body.members),
  }));
}

const MEMBER_FILTER_PATH = /^members\[\s*value\s+eq\s+"([^"]+)"\s*\]$/i;

export function patchScimGroup(
  res: Resources,
  caller: ScimCaller,
  base: string,
  id: string,
  body: Record<string, unknown>,
): Promise<ScimGroup> {
  const ops = patchOperations(body);
  return update(res, caller, base, id, async (_tx, current) => {
    const out: { displayName?: string; externalId?: string | null; members?: string[] } = {};
    let members = new Set(current.members.map((m) => m.value));
    let membersTouched = false;
    for (const o of ops) {
      const op = (o.op as string).toLowerCase();
      const path = typeof o.path === 'string' ? o.path : undefined;
      const filtered = path ? MEMBER_FILTER_PATH.exec(path) : null;
      if (filtered) {
        if (op !== 'remove')
          throw new ScimError(400, 'only remove is supported on a filtered members path', 'invalidPath');
        members.delete(filtered[1]!);
        membersTouched = true;
      } else if (path?.toLowerCase() === 'members') {
        const values = memberValues(o.value);
        if (op === 'add') for (const v of values) members.add(v);
        else if (op === 'replace') members = new Set(values);
        else if (values.length) for (const v of values) members.delete(v);
        else members = new Set();
        membersTouched = true;
      } else if (path?.toLowerCase() === 'displayname') {
        if (op === 'remove') throw new ScimError(400, 'displayName cannot be removed', 'mutability');
        out.displayName = displayNameOf(o.value);
      } else if (path?.toLowerCase() === 'externalid') {
        out.externalId = op === 'remove' ? null : typeof o.value === 'string' ? o.value : null;
      } else if (path === undefined && op !== 'remove' && o.value && typeof o.value === 'object') {
        const v = o.value as Record<string, unknown>;
        if (v.displayName !== undefined) out.displayName = displayNameOf(v.displayName);
        if (v.externalId !== undefined)
          out.externalId = typeof v.externalId === 'string' ? v.externalId : null;
        if (v.members !== undefined) {
          const values = memberValues(v.members);
          if (op === 'add') for (const x of values) members.add(x);
          else members = new Set(values);
          membersTouched = true;
        }
      } else {
        throw new ScimError(400, `the path "${path ?? ''}" is not supported on groups`, 'invalidPath');
      }
    }
    if (membersTouched) out.members = [...members];
    return out;
  });
}

export async function deleteScimGroup(
  res: Resources,
  caller: ScimCaller,
  base: string,
  id: string,
): Promise<void> {
  await tx0(
    res,
    caller,
  )(async (tx) => {
    const current = await one(tx, caller.tenantId, base, id);
    await tx`delete from scim_groups where tenant_id = ${caller.tenantId} and id = ${id}`;
    await res.audit.append(tx, caller.tenantId, {
      ...auditActor(caller.actor),
      action: 'scim_group.deleted',
      targetType: 'scim_group',
      targetId: id,
      details: { displayName: current.displayName },
    });
    await syncRoles(
      res,
      tx,
      caller.tenantId,
      current.members.map((m) => m.value),
      caller.actor,
    );
  });
  forgetSessions(res, caller.tenantId, []);
}
