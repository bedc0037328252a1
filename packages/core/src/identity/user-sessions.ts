import { invalid, notFound, forbidden } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { hashPassword, passwordProblem, verifyPassword } from './passwords.ts';
import { revokeUserSessions } from './session-service.ts';

/**
 * Listing and revoking sessions: a user's own (every tenant), and an administrator's view of a
 * member's sessions in the administrator's tenant. Revocation takes effect at once in this process
 * and within a second (the authenticator's cache) in the others.
 */

export interface SessionInfo {
  id: string;
  current: boolean;
  tenantId: string;
  ip: string | null;
  userAgent: string | null;
  method: string;
  mfa: boolean;
  createdAt: string;
  lastUsedAt: string;
  expiresAt: string;
}

interface SessionRow {
  id: string;
  active_tenant_id: string;
  ip: string | null;
  user_agent: string | null;
  auth_method: string;
  mfa: boolean;
  created_at: Date;
  last_used_at: Date;
  expires_at: Date;
}

const toInfo = (r: SessionRow, current?: string): SessionInfo => ({
  id: r.id,
  current: r.id === current,
  tenantId: r.active_tenant_id,
  ip: r.ip,
  userAgent: r.user_agent,
  method: r.auth_method,
  mfa: r.mfa,
  createdAt: r.created_at.toISOString(),
  lastUsedAt: r.last_used_at.toISOString(),
  expiresAt: r.expires_at.toISOString(),
});

interface Me {
  userId: string;
  tenantId: string;
  sessionId?: string | undefined;
  actor: Actor;
}

export async function listOwnSessions(res: Resources, me: Me): Promise<SessionInfo[]> {
  const rows = await res.db.withTenant(
    me.tenantId,
    (tx) => tx<SessionRow[]>`
      select * from sessions where user_id = ${me.userId} and revoked_at is null and expires_at > now()
      order by created_at desc, id`,
    { userId: me.userId },
  );
  return rows.map((r) => toInfo(r, me.sessionId));
}

async function revokeOne(
  res: Resources,
  tenantId: string,
  actor: Actor,
  userId: string,
  sessionId: string,
  scope: 'own' | 'tenant',
): Promise<void> {
  await res.db.withSystemAccess(
    async (tx) => {
      const [row] = await tx<{ id: string }[]>`
        update sessions set revoked_at = now(), revoked_reason = ${scope === 'own' ? 'revoked_by_user' : 'revoked_by_admin'}
        where id = ${sessionId} and user_id = ${userId} and revoked_at is null
          ${scope === 'tenant' ? tx`and active_tenant_id = ${tenantId}` : tx``}
        returning id`;
      if (!row) throw notFound('session');
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'session.revoked',
        targetType: 'session',
        targetId: sessionId,
        details: { userId },
      });
    },
    { tenantId },
  );
  res.auth.invalidateSession(sessionId);
}

export function revokeOwnSession(res: Resources, me: Me, sessionId: string): Promise<void> {
  return revokeOne(res, me.tenantId, me.actor, me.userId, sessionId, 'own');
}

async function assertMember(res: Resources, tenantId: string, userId: string): Promise<void> {
  const [m] = await res.db.withTenant(
    tenantId,
    (tx) => tx`select 1 from memberships where tenant_id = ${tenantId} and user_id = ${userId}`,
  );
  if (!m) throw notFound('user');
}

/** A member's open sessions in this tenant (administrators). */
export async function listMemberSessions(
  res: Resources,
  tenantId: string,
  userId: string,
): Promise<SessionInfo[]> {
  await assertMember(res, tenantId, userId);
  const rows = await res.db.withSystemAccess(
    (tx) => tx<SessionRow[]>`
      select * from sessions where user_id = ${userId} and active_tenant_id = ${tenantId}
        and revoked_at is null and expires_at > now()
      order by created_at desc, id`,
    { tenantId },
  );
  return rows.map((r) => toInfo(r));
}

export async function revokeMemberSession(
  res: Resources,
  tenantId: string,
  actor: Actor,
  userId: string,
  sessionId: string,
): Promise<void> {
  await assertMember(res, tenantId, userId);
  return revokeOne(res, tenantId, actor, userId, sessionId, 'tenant');
}

/** Revoke all of a member's sessions in this tenant (administrators). Returns how many. */
export async function revokeMemberSessions(
  res: Resources,
  tenantId: string,
  actor: Actor,
  userId: string,
): Promise<number> {
  await assertMember(res, tenantId, userId);
  const ids = await res.db.withSystemAccess(
    async (tx) => {
      const rows = await tx<{ id: string }[]>`
        update sessions set revoked_at = now(), revoked_reason = 'revoked_by_admin'
        where user_id = ${userId} and active_tenant_id = ${tenantId} and revoked_at is null returning id`;
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'session.revoked_all',
        targetType: 'user',
        targetId: userId,
        details: { sessions: rows.length },
      });
      return rows.map((r) => r.id);
    },
    { tenantId },
  );
  for (const id of ids) res.auth.invalidateSession(id);
  return ids.length;
}

/** Change one's own password (the current one is required); every other session is revoked. */
export async function changePassword(
  res: Resources,
  me: Me,
  input: { currentPassword: string; newPassword: string },
): Promise<void> {
  const problem = passwordProblem(input.newPassword);
  if (problem) throw invalid('body/newPassword: ' + problem);
  const [user] = await res.db.withSystemAccess(
    (tx) => tx<{ password_hash: string | null }[]>`select password_hash from users where id = ${me.userId}`,
  );
  if (!(await verifyPassword(user?.password_hash, input.currentPassword))) {
    await res.db.withTenant(me.tenantId, (tx) =>
      res.audit.append(tx, me.tenantId, {
        ...auditActor(me.actor),
        action: 'user.password_changed',
        outcome: 'denied',
        targetType: 'user',
        targetId: me.userId,
      }),
    );
    throw forbidden('body/currentPassword is incorrect');
  }
  const hash = await hashPassword(input.newPassword);
  const revoked = await res.db.withSystemAccess(
    async (tx) => {
      await tx`update users set password_hash = ${hash}, updated_at = now() where id = ${me.userId}`;
      const ids = await revokeUserSessions(tx, me.userId, 'password_changed', me.sessionId);
      await res.audit.append(tx, me.tenantId, {
        ...auditActor(me.actor),
        action: 'user.password_changed',
        targetType: 'user',
        targetId: me.userId,
        details: { sessionsRevoked: ids.length },
      });
      return ids;
    },
    { tenantId: me.tenantId },
  );
  for (const id of revoked) res.auth.invalidateSession(id);
}
