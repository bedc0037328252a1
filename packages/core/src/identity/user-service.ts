import type { Tx } from '@steward/db/database';
import { PLATFORM_TENANT_ID } from '../audit/audit-log.ts';
import { conflict, forbidden, invalid, notFound } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { decodeCursor, encodeCursor, type Page } from '../shared/cursor.ts';
import { hashPassword, passwordProblem } from './passwords.ts';
import type { Permission } from './permissions.ts';
import { assertCanGrant, getRoleByName } from './role-service.ts';

export interface Member {
  id: string;
  email: string;
  name: string;
  role: string;
  status: string;
  lastLoginAt: string | null;
  createdAt: string;
}

interface MemberRow {
  id: string;
  email: string;
  name: string;
  role: string;
  status: string;
  user_status: string;
  last_login_at: Date | null;
  created_at: Date;
}

const toMember = (r: MemberRow): Member => ({
  id: r.id,
  email: r.email,
  name: r.name,
  role: r.role,
  status: r.user_status === 'active' ? r.status : r.user_status,
  lastLoginAt: r.last_login_at?.toISOString() ?? null,
  createdAt: r.created_at.toISOString(),
});

export function normaliseEmail(email: string): string {
  const e = email.trim().toLowerCase();
  if (!/^[^\s@]+@[^\s@]+$/.test(e) || e.length > 320) throw invalid('email is not a valid address');
  return e;
}

export interface AddMemberInput {
  email: string;
  password?: string | undefined;
  name?: string | undefined;
  role: string;
}

/**
 * Add a user to a tenant in a transaction that has system access and the tenant set. A new
 * address becomes a new user with the given password. For an address that already has an account
 * (possibly in another tenant) only a membership is added: its password is never changed from
 * here, so one tenant's admin can never take over another tenant's user.
 */
export async function addMemberInTx(
  res: Resources,
  tx: Tx,
  tenantId: string,
  actor: Actor,
  input: AddMemberInput,
  granter?: ReadonlySet<Permission>,
): Promise<Member> {
  const email = normaliseEmail(input.email);
  const role = await getRoleByName(tx, tenantId, input.role);
  if (granter) assertCanGrant(granter, role);
  let [user] = await tx<{ id: string }[]>`select id from users where email = ${email}`;
  if (!user) {
    if (input.password === undefined) throw invalid('body/password is required for a new user');
    const problem = passwordProblem(input.password);
    if (problem) throw invalid('body/' + problem);
    [user] = await tx<{ id: string }[]>`
      insert into users (email, name, password_hash) values (${email}, ${input.name ?? ''}, ${await hashPassword(input.password)})
      returning id`;
  }
  const [m] = await tx<{ id: string }[]>`
    insert into memberships (tenant_id, user_id, role_id) values (${tenantId}, ${user!.id}, ${role.id})
    on conflict (tenant_id, user_id) do nothing returning id`;
  if (!m) throw conflict(`${email} is already a member of this tenant`);
  await res.audit.append(tx, tenantId, {
    ...auditActor(actor),
    action: 'user.added',
    targetType: 'user',
    targetId: user!.id,
    details: { email, role: role.name },
  });
  return getMemberInTx(tx, tenantId, user!.id);
}

export function addMember(
  res: Resources,
  tenantId: string,
  actor: Actor,
  input: AddMemberInput,
  granter?: ReadonlySet<Permission>,
): Promise<Member> {
  return res.db.withSystemAccess((tx) => addMemberInTx(res, tx, tenantId, actor, input, granter), {
    tenantId,
  });
}

async function getMemberInTx(tx: Tx, tenantId: string, userId: string): Promise<Member> {
  const [row] = await tx<MemberRow[]>`
    select u.id, u.email, u.name, r.name as role, m.status, u.status as user_status, u.last_login_at, m.created_at
    from memberships m
    join users u on u.id = m.user_id
    join roles r on r.tenant_id = m.tenant_id and r.id = m.role_id
    where m.tenant_id = ${tenantId} and m.user_id = ${userId}`;
  if (!row) throw notFound('user');
  return toMember(row);
}

export function getMember(res: Resources, tenantId: string, userId: string): Promise<Member> {
  return res.db.withTenant(tenantId, (tx) => getMemberInTx(tx, tenantId, userId));
}

export async function listMembers(
  res: Resources,
  tenantId: string,
  q: { limit: number; cursor?: string | undefined; role?: string | undefined },
): Promise<Page<Member>> {
  const after = decodeCursor(q.cursor, ['t', 'id']);
  const rows = await res.db.readTenant(
    tenantId,
    (tx) => tx<(MemberRow & { cursor_t: string })[]>`
      select u.id, u.email, u.name, r.name as role, m.status, u.status as user_status, u.last_login_at, m.created_at,
             m.created_at::text as cursor_t
      from memberships m
      join users u on u.id = m.user_id
      join roles r on r.tenant_id = m.tenant_id and r.id = m.role_id
      where m.tenant_id = ${tenantId}
        ${q.role ? tx`and r.name = ${q.role}` : tx``}
        ${after ? tx`and (m.created_at, m.user_id) > (${after.t}::text::timestamptz, ${after.id}::uuid)` : tx``}
      order by m.created_at, m.user_id
      limit ${q.limit + 1}`,
  );
  const items = rows.slice(0, q.limit).map(toMember);
  const last = rows[q.limit - 1];
  return {
    items,
    nextCursor: rows.length > q.limit && last ? encodeCursor({ t: last.cursor_t, id: last.id }) : null,
  };
}

async function ownerCount(tx: Tx, tenantId: string): Promise<number> {
  const [row] = await tx<{ n: string }[]>`
    select count(*) as n from memberships m join roles r on r.tenant_id = m.tenant_id and r.id = m.role_id
    where m.tenant_id = ${tenantId} and r.name = 'owner' and r.builtin and m.status = 'active'`;
  return Number(row?.n ?? 0);
}

async function revokeSessionsInTenant(
  res: Resources,
  tenantId: string,
  userId: string,
  reason: string,
): Promise<void> {
  const revoked = await res.db.withSystemAccess(
    (tx) => tx<{ id: string }[]>`
      update sessions set revoked_at = now(), revoked_reason = ${reason}
      where user_id = ${userId} and active_tenant_id = ${tenantId} and revoked_at is null returning id`,
    { tenantId },
  );
  for (const s of revoked) res.auth.invalidateSession(s.id);
}

export async function updateMember(
  res: Resources,
  tenantId: string,
  actor: Actor,
  granter: ReadonlySet<Permission>,
  userId: string,
  input: { name?: string | undefined; role?: string | undefined; status?: 'active' | 'disabled' | undefined },
): Promise<Member> {
  const member = await res.db.withTenant(tenantId, async (tx) => {
    const current = await getMemberInTx(tx, tenantId, userId);
    if (input.role && input.role !== current.role) {
      const role = await getRoleByName(tx, tenantId, input.role);
      assertCanGrant(granter, role);
      if (current.role === 'owner' && !granter.has('tenant:owner'))
        throw forbidden('only an owner can change an owner');
      if (current.role === 'owner' && (await ownerCount(tx, tenantId)) <= 1)
        throw conflict('a tenant needs at least one owner');
      await tx`update memberships set role_id = ${role.id}, updated_at = now() where tenant_id = ${tenantId} and user_id = ${userId}`;
    }
    if (input.status && input.status !== current.status) {
      if (current.role === 'owner' && input.status === 'disabled') {
        if (!granter.has('tenant:owner')) throw forbidden('only an owner can disable an owner');
        if ((await ownerCount(tx, tenantId)) <= 1) throw conflict('a tenant needs at least one active owner');
      }
      await tx`update memberships set status = ${input.status}, updated_at = now() where tenant_id = ${tenantId} and user_id = ${userId}`;
    }
    if (input.name !== undefined) {
      await tx`update users set name = ${input.name}, updated_at = now() where id = ${userId}`;
    }
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'user.updated',
      targetType: 'user',
      targetId: userId,
      details: { role: input.role, status: input.status, nameChanged: input.name !== undefined },
    });
    return getMemberInTx(tx, tenantId, userId);
  });
  if (input.status === 'disabled') await revokeSessionsInTenant(res, tenantId, userId, 'membership_disabled');
  res.auth.invalidateTenant(tenantId);
  return member;
}

export async function removeMember(
  res: Resources,
  tenantId: string,
  actor: Actor,
  granter: ReadonlySet<Permission>,
  userId: string,
): Promise<void> {
  await res.db.withTenant(tenantId, async (tx) => {
    const current = await getMemberInTx(tx, tenantId, userId);
    if (current.role === 'owner') {
      if (!granter.has('tenant:owner')) throw forbidden('only an owner can remove an owner');
      if ((await ownerCount(tx, tenantId)) <= 1) throw conflict('a tenant needs at least one owner');
    }
    await tx`delete from memberships where tenant_id = ${tenantId} and user_id = ${userId}`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'user.removed',
      targetType: 'user',
      targetId: userId,
      details: { email: current.email },
    });
  });
  await revokeSessionsInTenant(res, tenantId, userId, 'membership_removed');
  res.auth.invalidateTenant(tenantId);
}

/** A platform administrator (may create tenants). An existing account is promoted and its password set. */
export async function createPlatformAdmin(
  res: Resources,
  actor: Actor,
  input: { email: string; password: string },
): Promise<{ id: string }> {
  const email = normaliseEmail(input.email);
  const problem = passwordProblem(input.password);
  if (problem) throw invalid(problem);
  const hash = await hashPassword(input.password);
  return res.db.withSystemAccess(
    async (tx) => {
      const [row] = await tx<{ id: string }[]>`
        insert into users (email, password_hash, is_platform_admin) values (${email}, ${hash}, true)
        on conflict (email) do update set is_platform_admin = true, password_hash = excluded.password_hash, updated_at = now()
        returning id`;
      await res.audit.append(tx, PLATFORM_TENANT_ID, {
        ...auditActor(actor),
        action: 'platform_admin.created',
        targetType: 'user',
        targetId: row!.id,
        details: { email },
      });
      return { id: row!.id };
    },
    { tenantId: PLATFORM_TENANT_ID },
  );
}
