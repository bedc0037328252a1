import type { Tx } from '@steward/db/database';
import { normaliseEmail } from '../identity/user-service.ts';
import { auditActor, type Resources } from '../resources.ts';
import { ScimError } from './scim-error.ts';
import { parseFilterAst, type FilterNode } from './scim-filter.ts';
import { filterSql, type ColumnMap } from './scim-filter-sql.ts';
import { assertNotLastOwner, forgetSessions, revokeTenantSessions } from './scim-membership.ts';
import { readScimSettings } from './scim-settings-service.ts';
import type { ScimCaller } from './scim-token-service.ts';

/**
 * SCIM Users (RFC 7643/7644) over a tenant's memberships: `id` is the Steward user id, `userName`
 * the e-mail address, `active` the membership status. Deactivating (active=false) disables the
 * membership and DELETE removes it; both revoke the user's sessions in the tenant at once.
 */

export const USER_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:User';
export const LIST_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';
export const PATCH_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const USER_FILTER_ATTRIBUTES = [
  'id',
  'userName',
  'externalId',
  'displayName',
  'emails.value',
  'active',
  'name.formatted',
];

export interface ScimUser {
  schemas: string[];
  id: string;
  externalId?: string;
  userName: string;
  name: { formatted: string };
  displayName: string;
  emails: { value: string; primary: boolean; type: string }[];
  active: boolean;
  groups: { value: string; display: string; $ref: string }[];
  meta: { resourceType: 'User'; created: string; lastModified: string; location: string };
}

interface Row {
  id: string;
  email: string;
  name: string;
  status: string;
  user_status: string;
  external_id: string | null;
  created_at: Date;
  updated_at: Date;
}

export interface ListParams {
  filter?: string | undefined;
  startIndex?: number | undefined;
  count?: number | undefined;
}

export interface ListResponse<T> {
  schemas: string[];
  totalResults: number;
  startIndex: number;
  itemsPerPage: number;
  Resources: T[];
}

/** startIndex (1-based, at least 1) and count (0..500, default 100) of a list request. */
export function paging(q: ListParams): { startIndex: number; count: number } {
  return {
    startIndex: Math.max(1, Math.trunc(q.startIndex ?? 1)),
    count: Math.min(Math.max(0, Math.trunc(q.count ?? 100)), 500),
  };
}

export function listResponse<T>(items: T[], totalResults: number, startIndex: number): ListResponse<T> {
  return {
    schemas: [LIST_SCHEMA],
    totalResults,
    startIndex,
    itemsPerPage: items.length,
    Resources: items,
  };
}

/** Where a filter attribute lives in the query of `rows` (scim-filter-sql.ts). */
function userColumns(tx: Tx): ColumnMap {
  const name = { kind: 'text', sql: tx`u.name` } as const;
  const email = { kind: 'text', sql: tx`u.email` } as const;
  return {
    id: { kind: 'text', sql: tx`m.user_id::text` },
    userName: email,
    'emails.value': email,
    externalId: { kind: 'text', sql: tx`su.external_id` },
    displayName: name,
    'name.formatted': name,
    active: { kind: 'boolean', sql: tx`(m.status = 'active' and u.status = 'active')` },
  };
}

async function rows(
  tx: Tx,
  tenantId: string,
  opts: { userId?: string; filter?: FilterNode | undefined; limit?: number; offset?: number } = {},
): Promise<Row[]> {
  return tx<Row[]>`
    select u.id, u.email, u.name, m.status, u.status as user_status, su.external_id, m.created_at,
           greatest(m.updated_at, u.updated_at, coalesce(su.updated_at, m.updated_at)) as updated_at
    from memberships m join users u on u.id = m.user_id
    left join scim_users su on su.tenant_id = m.tenant_id and su.user_id = m.user_id
    where m.tenant_id = ${tenantId} ${opts.userId ? tx`and m.user_id = ${opts.userId}` : tx``}
      ${opts.filter ? tx`and (${filterSql(tx, opts.filter, userColumns(tx))})` : tx``}
    order by m.created_at, m.user_id
    ${opts.limit !== undefined ? tx`limit ${opts.limit} offset ${opts.offset ?? 0}` : tx``}`;
}

async function countRows(tx: Tx, tenantId: string, filter: FilterNode | undefined): Promise<number> {
  const [r] = await tx<{ n: number }[]>`
    select count(*)::int as n
    from memberships m join users u on u.id = m.user_id
    left join scim_users su on su.tenant_id = m.tenant_id and su.user_id = m.user_id
    where m.tenant_id = ${tenantId} ${filter ? tx`and (${filterSql(tx, filter, userColumns(tx))})` : tx``}`;
  return r!.n;
}

async function toResources(tx: Tx, tenantId: string, base: string, list: Row[]): Promise<ScimUser[]> {
  const ids = list.map((r) => r.id);
  const groups = ids.length
    ? await tx<{ user_id: string; id: string; display_name: string }[]>`
        select gm.user_id, g.id, g.display_name from scim_group_members gm
        join scim_groups g on g.tenant_id = gm.tenant_id and g.id = gm.group_id
        where gm.tenant_id = ${tenantId} and gm.user_id = any(${ids}) order by g.display_name`
    : [];
  return list.map((r) => ({
    schemas: [USER_SCHEMA],
    id: r.id,
    ...(r.external_id ? { externalId: r.external_id } : {}),
    userName: r.email,
    name: { formatted: r.name },
    displayName: r.name,
    emails: [{ value: r.email, primary: true, type: 'work' }],
    active: r.status === 'active' && r.user_status === 'active',
    groups: groups
      .filter((g) => g.user_id === r.id)
      .map((g) => ({ value: g.id, display: g.display_name, $ref: `${base}/Groups/${g.id}` })),
    meta: {
      resourceType: 'User',
      created: r.created_at.toISOString(),
      lastModified: r.updated_at.toISOString(),
      location: `${base}/Users/${r.id}`,
    },
  }));
}

const tx0 =
  (res: Resources, caller: ScimCaller) =>
  <T>(fn: (tx: Tx) => Promise<T>) =>
    res.db.withSystemAccess(fn, { tenantId: caller.tenantId });

/** A page of users: filtered, counted and paged in SQL (startIndex is 1-based, count at most 500). */
export async function listScimUsers(
  res: Resources,
  caller: ScimCaller,
  base: string,
  q: ListParams,
): Promise<ListResponse<ScimUser>> {
  const filter = parseFilterAst(q.filter, USER_FILTER_ATTRIBUTES);
  const { startIndex, count } = paging(q);
  return tx0(
    res,
    caller,
  )(async (tx) => {
    const total = await countRows(tx, caller.tenantId, filter);
    const list = count
      ? await rows(tx, caller.tenantId, { filter, limit: count, offset: startIndex - 1 })
      : [];
    return listResponse(await toResources(tx, caller.tenantId, base, list), total, startIndex);
  });
}

async function one(tx: Tx, tenantId: string, base: string, id: string): Promise<ScimUser> {
  if (!/^[0-9a-f-]{36}$/i.test(id)) throw new ScimError(404, 'user not found');
  const [row] = await rows(tx, tenantId, { userId: id });
  if (!row) throw new ScimError(404, 'user not found');
  return (await toResources(tx, tenantId, base, [row]))[0]!;
}

export function getScimUser(res: Resources, caller: ScimCaller, base: string, id: string): Promise<ScimUser> {
  return tx0(res, caller)((tx) => one(tx, caller.tenantId, base, id));
}

/** What a request asks a user to be. */
interface Desired {
  userName?: string | undefined;
  name?: string | undefined;
  externalId?: string | null | undefined;
  active?: boolean | undefined;
}

function str(v: unknown, field: string): string {
  if (typeof v !== 'string') throw new ScimError(400, `${field} must be a string`, 'invalidValue');
  if (v.length > 1024) throw new ScimError(400, `${field} is longer than 1024 characters`, 'invalidValue');
  return v;
}

function bool(v: unknown, field: string): boolean {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && /^(true|false)$/i.test(v)) return v.toLowerCase() === 'true';
  throw new ScimError(400, `${field} must be a boolean`, 'invalidValue');
}

function nameOf(v: unknown): string | undefined {
  if (!v || typeof v !== 'object') return undefined;
  const n = v as { formatted?: unknown; givenName?: unknown; familyName?: unknown };
  if (typeof n.formatted === 'string') return n.formatted;
  const parts = [n.givenName, n.familyName].filter((p): p is string => typeof p === 'string' && p !== '');
  return parts.length ? parts.join(' ') : undefined;
}

/** A full User resource (POST, PUT) as the desired state. Attributes Steward does not keep are ignored. */
function fromResource(body: Record<string, unknown>): Desired {
  const emails = Array.isArray(body.emails) ? (body.emails as { value?: unknown; primary?: unknown }[]) : [];
  const email = emails.find((e) => e.primary === true)?.value ?? emails[0]?.value;
  const userName = typeof body.userName === 'string' ? body.userName : undefined;
  if (!userName) throw new ScimError(400, 'userName is required', 'invalidValue');
  return {
    userName: userName.includes('@') || typeof email !== 'string' ? userName : email,
    name:
      (typeof body.displayName === 'string' ? body.displayName : undefined) ?? nameOf(body.name) ?? undefined,
    externalId:
      body.externalId === undefined
        ? undefined
        : body.externalId === null
          ? null
          : str(body.externalId, 'externalId'),
    active: body.active === undefined ? undefined : bool(body.active, 'active'),
  };
}

function emailOf(userName: string): string {
  try {
    return normaliseEmail(userName);
  } catch {
    throw new ScimError(400, 'userName must be an e-mail address', 'invalidValue');
  }
}

/** Apply a desired state to an existing membership. Returns revoked session ids. */
async function apply(
  res: Resources,
  tx: Tx,
  caller: ScimCaller,
  userId: string,
  current: ScimUser,
  d: Desired,
): Promise<string[]> {
  const { tenantId } = caller;
  const changes: Record<string, unknown> = {};
  if (d.userName !== undefined && emailOf(d.userName) !== current.userName)
    throw new ScimError(400, 'userName (the e-mail address) cannot be changed through SCIM', 'mutability');
  if (d.name !== undefined && d.name !== current.displayName) {
    await tx`update users set name = ${d.name.slice(0, 200)}, updated_at = now() where id = ${userId}`;
    changes.name = true;
  }
  if (d.externalId !== undefined && d.externalId !== (current.externalId ?? null)) {
    await tx`
      insert into scim_users (tenant_id, user_id, external_id) values (${tenantId}, ${userId}, ${d.externalId})
      on conflict (tenant_id, user_id) do update set external_id = excluded.external_id, updated_at = now()`;
    changes.externalId = d.externalId;
  }
  let revoked: string[] = [];
  if (d.active !== undefined && d.active !== current.active) {
    if (!d.active) await assertNotLastOwner(tx, tenantId, userId);
    await tx`update memberships set status = ${d.active ? 'active' : 'disabled'}, updated_at = now()
             where tenant_id = ${tenantId} and user_id = ${userId}`;
    changes.active = d.active;
    if (!d.active) revoked = await revokeTenantSessions(tx, tenantId, userId, 'scim_deprovisioned');
  }
  if (Object.keys(changes).length) {
    await res.audit.append(tx, tenantId, {
      ...auditActor(caller.actor),
      action: d.active === false && changes.active === false ? 'user.deprovisioned' : 'user.updated',
      targetType: 'user',
      targetId: userId,
      details: { via: 'scim', ...changes, sessionsRevoked: revoked.length },
    });
  }
  return revoked;
}

export async function createScimUser(
  res: Resources,
  caller: ScimCaller,
  base: string,
  body: Record<string, unknown>,
): Promise<ScimUser> {
  const d = fromResource(body);
  const email = emailOf(d.userName!);
  const { tenantId } = caller;
  return tx0(
    res,
    caller,
  )(async (tx) => {
    let [user] = await tx<{ id: string }[]>`select id from users where email = ${email}`;
    if (!user) {
      [user] = await tx<{ id: string }[]>`
        insert into users (email, name) values (${email}, ${(d.name ?? '').slice(0, 200)}) returning id`;
    }
    const settings = await readScimSettings(tx, tenantId);
    const [role] = await tx<{ id: string }[]>`
      select id from roles where tenant_id = ${tenantId} and name = ${settings.defaultRole}`;
    if (!role) throw new ScimError(500, `the SCIM default role "${settings.defaultRole}" does not exist`);
    const [m] = await tx`
      insert into memberships (tenant_id, user_id, role_id, status)
      values (${tenantId}, ${user!.id}, ${role.id}, ${d.active === false ? 'disabled' : 'active'})
      on conflict (tenant_id, user_id) do nothing returning id`;
    if (!m) throw new ScimError(409, `${email} is already a user of this tenant`, 'uniqueness');
    await tx`
      insert into scim_users (tenant_id, user_id, external_id) values (${tenantId}, ${user!.id}, ${d.externalId ?? null})
      on conflict (tenant_id, user_id) do update set external_id = excluded.external_id, updated_at = now()`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(caller.actor),
      action: 'user.provisioned',
      targetType: 'user',
      targetId: user!.id,
      details: { via: 'scim', email, role: settings.defaultRole, active: d.active !== false },
    });
    return one(tx, tenantId, base, user!.id);
  });
}

export async function replaceScimUser(
  res: Resources,
  caller: ScimCaller,
  base: string,
  id: string,
  body: Record<string, unknown>,
): Promise<ScimUser> {
  const d = fromResource(body);
  // PUT replaces: an absent externalId is removed, an absent active means active.
  d.externalId ??= null;
  d.active ??= true;
  return change(res, caller, base, id, () => d);
}

async function change(
  res: Resources,
  caller: ScimCaller,
  base: string,
  id: string,
  desired: (current: ScimUser) => Desired,
): Promise<ScimUser> {
  let revoked: string[] = [];
  const user = await tx0(
    res,
    caller,
  )(async (tx) => {
    const current = await one(tx, caller.tenantId, base, id);
    revoked = await apply(res, tx, caller, id, current, desired(current));
    return one(tx, caller.tenantId, base, id);
  });
  forgetSessions(res, caller.tenantId, revoked);
  return user;
}

interface PatchOperation {
  op?: unknown;
  path?: unknown;
  value?: unknown;
}

export function patchOperations(body: Record<string, unknown>): PatchOperation[] {
  const schemas = body.schemas;
  if (!Array.isArray(schemas) || !schemas.includes(PATCH_SCHEMA))
    throw new ScimError(400, `a PATCH body must name the schema ${PATCH_SCHEMA}`, 'invalidSyntax');
  const ops = body.Operations;
  if (!Array.isArray(ops) || !ops.length || ops.length > 1000)
    throw new ScimError(400, 'Operations must be a non-empty list', 'invalidSyntax');
  for (const o of ops as PatchOperation[]) {
    if (!o || typeof o !== 'object' || typeof o.op !== 'string' || !/^(add|replace|remove)$/i.test(o.op))
      throw new ScimError(400, 'each operation needs op add, replace or remove', 'invalidSyntax');
    if (o.path !== undefined && typeof o.path !== 'string')
      throw new ScimError(400, 'path must be a string', 'invalidPath');
  }
  return ops as PatchOperation[];
}

export async function patchScimUser(
  res: Resources,
  caller: ScimCaller,
  base: string,
  id: string,
  body: Record<string, unknown>,
): Promise<ScimUser> {
  const ops = patchOperations(body);
  return change(res, caller, base, id, (current) => {
    const d: Desired = {};
    let given: string | undefined;
    let family: string | undefined;
    const set = (path: string, value: unknown, remove: boolean) => {
      switch (path.toLowerCase().replace(/^urn:ietf:params:scim:schemas:core:2\.0:user:/, '')) {
        case 'active':
          if (!remove) d.active = bool(value, 'active');
          return;
        case 'externalid':
          d.externalId = remove ? null : str(value, 'externalId');
          return;
        case 'displayname':
        case 'name.formatted':
          d.name = remove ? '' : str(value, path);
          return;
        case 'name.givenname':
          given = remove ? '' : str(value, path);
          return;
        case 'name.familyname':
          family = remove ? '' : str(value, path);
          return;
        case 'name':
          d.name = remove ? '' : (nameOf(value) ?? d.name);
          return;
        case 'username':
          if (remove) throw new ScimError(400, 'userName cannot be removed', 'mutability');
          d.userName = str(value, 'userName');
          return;
        default:
          // Attributes Steward does not keep (title, addresses, emails...) are accepted and ignored.
          return;
      }
    };
    for (const o of ops) {
      const remove = (o.op as string).toLowerCase() === 'remove';
      if (typeof o.path === 'string') set(o.path, o.value, remove);
      else if (!remove && o.value && typeof o.value === 'object' && !Array.isArray(o.value)) {
        for (const [k, v] of Object.entries(o.value)) {
          if (k === 'name') set('name', v, false);
          else set(k, v, false);
        }
      } else throw new ScimError(400, 'an operation without a path needs an object value', 'invalidSyntax');
    }
    if (given !== undefined || family !== undefined) {
      const [g0, ...rest] = current.displayName.split(' ');
      d.name = [given ?? g0 ?? '', family ?? rest.join(' ')].filter(Boolean).join(' ');
    }
    return d;
  });
}

export async function deleteScimUser(
  res: Resources,
  caller: ScimCaller,
  base: string,
  id: string,
): Promise<void> {
  const { tenantId } = caller;
  let revoked: string[] = [];
  await tx0(
    res,
    caller,
  )(async (tx) => {
    const current = await one(tx, tenantId, base, id);
    await assertNotLastOwner(tx, tenantId, id);
    await tx`delete from scim_group_members where tenant_id = ${tenantId} and user_id = ${id}`;
    await tx`delete from scim_users where tenant_id = ${tenantId} and user_id = ${id}`;
    await tx`delete from memberships where tenant_id = ${tenantId} and user_id = ${id}`;
    revoked = await revokeTenantSessions(tx, tenantId, id, 'scim_deleted');
    await res.audit.append(tx, tenantId, {
      ...auditActor(caller.actor),
      action: 'user.deprovisioned',
      targetType: 'user',
      targetId: id,
      details: { via: 'scim', email: current.userName, removed: true, sessionsRevoked: revoked.length },
    });
  });
  forgetSessions(res, tenantId, revoked);
}

/** Users of the tenant among `ids` (for group membership). */
export async function memberIds(tx: Tx, tenantId: string, ids: string[]): Promise<string[]> {
  const valid = ids.filter((i) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(i));
  if (valid.length !== ids.length)
    throw new ScimError(400, 'a member value is not a user id', 'invalidValue');
  if (!valid.length) return [];
  const rows = await tx<{ user_id: string }[]>`
    select user_id from memberships where tenant_id = ${tenantId} and user_id = any(${valid})`;
  const found = new Set(rows.map((r) => r.user_id));
  const missing = valid.filter((i) => !found.has(i));
  if (missing.length) throw new ScimError(400, `no user ${missing[0]} in this tenant`, 'invalidValue');
  return [...found];
}
