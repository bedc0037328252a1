import type { Tx } from '@steward/db/database';
import { PLATFORM_TENANT_ID } from '../audit/audit-log.ts';
import { notFound, unauthenticated } from '../errors/app-error.ts';
import type { Resources } from '../resources.ts';
import { randomToken, sha256 } from '../shared/secrets.ts';
import { verifyPassword } from './passwords.ts';

export const REFRESH_TOKEN_TTL_SECONDS = 30 * 24 * 3600;
const REFRESH_PATTERN = /^rt_[A-Za-z0-9]{48}$/;

export interface SessionTokens {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
  user: { id: string; email: string; name: string; isPlatformAdmin: boolean };
  tenant: { id: string; slug: string; name: string };
}

export interface RequestInfo {
  requestId?: string | undefined;
  ip?: string | undefined;
  userAgent?: string | undefined;
}

interface UserRow {
  id: string;
  email: string;
  name: string;
  password_hash: string | null;
  status: string;
  is_platform_admin: boolean;
}

interface MembershipRow {
  tenant_id: string;
  slug: string;
  name: string;
}

const INVALID_LOGIN = 'email or password is incorrect';

async function memberships(tx: Tx, userId: string): Promise<MembershipRow[]> {
  return tx<MembershipRow[]>`
    select m.tenant_id, t.slug, t.name from memberships m join tenants t on t.id = m.tenant_id
    where m.user_id = ${userId} and m.status = 'active' and t.status = 'active'
    order by m.created_at`;
}

async function issueRefreshToken(tx: Tx, sessionId: string): Promise<string> {
  const token = 'rt_' + randomToken(48);
  await tx`insert into refresh_tokens (session_id, token_hash, expires_at)
           values (${sessionId}, ${sha256(token)}, now() + make_interval(secs => ${REFRESH_TOKEN_TTL_SECONDS}))`;
  return token;
}

async function platformTenant(): Promise<MembershipRow> {
  return { tenant_id: PLATFORM_TENANT_ID, slug: '_platform', name: 'Platform' };
}

/**
 * Password sign-in. Unknown accounts cost the same argon2 verification as known ones, and every
 * failure gives the same answer. Every attempt is audited: in the named tenant's chain when it
 * exists, otherwise in the platform chain.
 */
export async function login(
  res: Resources,
  input: { email: string; password: string; tenant?: string | undefined },
  info: RequestInfo,
): Promise<SessionTokens> {
  const email = input.email.trim().toLowerCase();
  const { user, tenants, namedTenantId } = await res.db.withSystemAccess(async (tx) => {
    const [user] = await tx<UserRow[]>`
      select id, email, name, password_hash, status, is_platform_admin from users where email = ${email}`;
    const [named] = input.tenant
      ? await tx<{ id: string }[]>`select id from tenants where slug = ${input.tenant} and status = 'active'`
      : [];
    return { user, tenants: user ? await memberships(tx, user.id) : [], namedTenantId: named?.id };
  });
  const passwordOk = await verifyPassword(user?.password_hash, input.password);

  let target: MembershipRow | undefined;
  if (user && passwordOk && user.status === 'active') {
    target = input.tenant ? tenants.find((t) => t.slug === input.tenant) : tenants[0];
    if (!target && !input.tenant && user.is_platform_admin) target = await platformTenant();
  }
  if (!user || !target) {
    const chain = namedTenantId ?? PLATFORM_TENANT_ID;
    await res.db.withTenant(chain, (tx) =>
      res.audit.append(tx, chain, {
        actorType: 'anonymous',
        actorLabel: email.slice(0, 320),
        action: 'auth.login',
        outcome: 'failure',
        requestId: info.requestId,
        ip: info.ip,
        details: { email: email.slice(0, 320), tenant: input.tenant ?? null },
      }),
    );
    throw unauthenticated(INVALID_LOGIN);
  }
  const t = target;
  const { sessionId, refreshToken } = await res.db.withSystemAccess(
    async (tx) => {
      const [session] = await tx<{ id: string }[]>`
        insert into sessions (user_id, active_tenant_id, ip, user_agent, expires_at)
        values (${user.id}, ${t.tenant_id}, ${info.ip ?? null}, ${(info.userAgent ?? '').slice(0, 300)},
                now() + make_interval(secs => ${REFRESH_TOKEN_TTL_SECONDS}))
        returning id`;
      await tx`update users set last_login_at = now() where id = ${user.id}`;
      const refreshToken = await issueRefreshToken(tx, session!.id);
      await res.audit.append(tx, t.tenant_id, {
        actorType: 'user',
        actorId: user.id,
        actorLabel: user.email,
        action: 'auth.login',
        requestId: info.requestId,
        ip: info.ip,
        targetType: 'session',
        targetId: session!.id,
      });
      return { sessionId: session!.id, refreshToken };
    },
    { tenantId: t.tenant_id },
  );
  return tokens(res, user, t, sessionId, refreshToken);
}

async function tokens(
  res: Resources,
  user: { id: string; email: string; name: string; is_platform_admin: boolean },
  t: MembershipRow,
  sessionId: string,
  refreshToken: string,
): Promise<SessionTokens> {
  return {
    accessToken: await res.tokens.issue({ userId: user.id, tenantId: t.tenant_id, sessionId }),
    refreshToken,
    expiresIn: res.tokens.ttlSeconds,
    user: { id: user.id, email: user.email, name: user.name, isPlatformAdmin: user.is_platform_admin },
    tenant: { id: t.tenant_id, slug: t.slug, name: t.name },
  };
}

interface RefreshRow {
  id: string;
  session_id: string;
  used_at: Date | null;
  expires_at: Date;
  revoked_at: Date | null;
  session_expires_at: Date;
  user_id: string;
  active_tenant_id: string;
}

async function revokeSession(res: Resources, tx: Tx, sessionId: string, reason: string): Promise<void> {
  await tx`update sessions set revoked_at = now(), revoked_reason = ${reason} where id = ${sessionId} and revoked_at is null`;
  res.auth.invalidateSession(sessionId);
}

/**
 * Rotate a refresh token. Each token works once; presenting a used one means it was stolen (or
 * replayed), so the whole session - every token descended from the same login - is revoked.
 */
export async function refresh(
  res: Resources,
  refreshToken: string,
  info: RequestInfo,
): Promise<SessionTokens> {
  if (!REFRESH_PATTERN.test(refreshToken)) throw unauthenticated('invalid refresh token');
  const outcome = await res.db.withSystemAccess(async (tx) => {
    const [row] = await tx<RefreshRow[]>`
      select rt.id, rt.session_id, rt.used_at, rt.expires_at, s.revoked_at, s.expires_at as session_expires_at,
             s.user_id, s.active_tenant_id
      from refresh_tokens rt join sessions s on s.id = rt.session_id
      where rt.token_hash = ${sha256(refreshToken)} for update of rt, s`;
    if (!row) return { error: 'invalid refresh token' } as const;
    if (row.revoked_at || row.session_expires_at <= new Date())
      return { error: 'session is no longer valid' } as const;
    if (row.used_at) {
      await revokeSession(res, tx, row.session_id, 'refresh_token_reuse');
      return { error: 'refresh token was already used; the session is revoked', reuse: row } as const;
    }
    if (row.expires_at <= new Date()) return { error: 'refresh token expired' } as const;
    const [user] = await tx<UserRow[]>`
      select id, email, name, password_hash, status, is_platform_admin from users where id = ${row.user_id}`;
    const list = await memberships(tx, row.user_id);
    const t =
      list.find((m) => m.tenant_id === row.active_tenant_id) ??
      (row.active_tenant_id === PLATFORM_TENANT_ID && user?.is_platform_admin
        ? await platformTenant()
        : undefined);
    if (!user || user.status !== 'active' || !t) {
      await revokeSession(res, tx, row.session_id, 'access_lost');
      return { error: 'session is no longer valid' } as const;
    }
    await tx`update refresh_tokens set used_at = now() where id = ${row.id}`;
    await tx`update sessions set last_used_at = now() where id = ${row.session_id}`;
    const next = await issueRefreshToken(tx, row.session_id);
    return { user, t, sessionId: row.session_id, next } as const;
  });
  if ('error' in outcome) {
    if ('reuse' in outcome && outcome.reuse) {
      const r = outcome.reuse;
      await res.db.withTenant(r.active_tenant_id, (tx) =>
        res.audit.append(tx, r.active_tenant_id, {
          actorType: 'user',
          actorId: r.user_id,
          action: 'auth.refresh_reuse',
          outcome: 'denied',
          targetType: 'session',
          targetId: r.session_id,
          requestId: info.requestId,
          ip: info.ip,
        }),
      );
    }
    throw unauthenticated(outcome.error);
  }
  return tokens(res, outcome.user, outcome.t, outcome.sessionId, outcome.next);
}

export async function logout(
  res: Resources,
  principal: { sessionId: string; tenantId: string; userId: string; label: string },
  info: RequestInfo,
): Promise<void> {
  await res.db.withSystemAccess(
    async (tx) => {
      await revokeSession(res, tx, principal.sessionId, 'logout');
      await res.audit.append(tx, principal.tenantId, {
        actorType: 'user',
        actorId: principal.userId,
        actorLabel: principal.label,
        action: 'auth.logout',
        targetType: 'session',
        targetId: principal.sessionId,
        requestId: info.requestId,
        ip: info.ip,
      });
    },
    { tenantId: principal.tenantId },
  );
}

/** Move a session to another tenant of the same user: new tokens; the old refresh tokens stop working. */
export async function switchTenant(
  res: Resources,
  principal: { sessionId: string; userId: string },
  slug: string,
  info: RequestInfo,
): Promise<SessionTokens> {
  const result = await res.db.withSystemAccess(async (tx) => {
    const [user] = await tx<UserRow[]>`
      select id, email, name, password_hash, status, is_platform_admin from users where id = ${principal.userId}`;
    const t = (await memberships(tx, principal.userId)).find((m) => m.slug === slug);
    return { user, t };
  });
  // Not a member answers exactly like a tenant that does not exist.
  if (!result.user || !result.t) throw notFound(`tenant "${slug}"`);
  const { user, t } = result;
  const refreshToken = await res.db.withSystemAccess(
    async (tx) => {
      await tx`update sessions set active_tenant_id = ${t.tenant_id}, last_used_at = now() where id = ${principal.sessionId}`;
      await tx`update refresh_tokens set used_at = now() where session_id = ${principal.sessionId} and used_at is null`;
      await res.audit.append(tx, t.tenant_id, {
        actorType: 'user',
        actorId: user.id,
        actorLabel: user.email,
        action: 'auth.switch_tenant',
        targetType: 'session',
        targetId: principal.sessionId,
        requestId: info.requestId,
        ip: info.ip,
      });
      return issueRefreshToken(tx, principal.sessionId);
    },
    { tenantId: t.tenant_id },
  );
  res.auth.invalidateSession(principal.sessionId);
  return tokens(res, user, t, principal.sessionId, refreshToken);
}
