import type { Tx } from '@steward/db/database';
import { PLATFORM_TENANT_ID } from '../audit/audit-log.ts';
import { forbidden, notFound, unauthenticated } from '../errors/app-error.ts';
import type { Resources } from '../resources.ts';
import { randomToken, sha256 } from '../shared/secrets.ts';
import {
  assertLoginAddressAllowed,
  auditLoginAddressRefused,
  loginAddressAllowed,
} from '../guard/login-allow-list.ts';
import { verifyPassword } from './passwords.ts';
import {
  createMfaChallenge,
  MFA_TOKEN_TTL_SECONDS,
  purgeExpiredChallenges,
  type MfaMethod,
} from './mfa/mfa-challenge.ts';
import { mfaRequiredFor, parseSessionPolicy, sessionTimedOut, type SessionPolicy } from './session-policy.ts';

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
): Promise<LoginResult> {
  const email = input.email.trim().toLowerCase();
  const { user, tenants, namedTenantId } = await res.db.withSystemAccess(async (tx) => {
    const [user] = await tx<UserRow[]>`
      select id, email, name, password_hash, status, is_platform_admin from users where email = ${email}`;
    const [named] = input.tenant
      ? await tx<{ id: string }[]>`select id from tenants where slug = ${input.tenant} and status = 'active'`
      : [];
    return { user, tenants: user ? await memberships(tx, user.id) : [], namedTenantId: named?.id };
  });
  // A named tenant's IP allow-list is decided before the password is looked at: the same 403 for
  // every account, known or not, right password or not (nothing about the account leaks).
  if (namedTenantId) {
    await assertLoginAddressAllowed(res, namedTenantId, info, { method: 'password', label: email });
  }
  const passwordOk = await verifyPassword(user?.password_hash, input.password);

  let target: MembershipRow | undefined;
  if (user && passwordOk && user.status === 'active') {
    if (input.tenant) target = tenants.find((t) => t.slug === input.tenant);
    else {
      // No tenant named: the first membership whose allow-list admits the address. None does: the
      // answer is the wrong-password one (a 403 here would confirm the password), audited as denied.
      for (const m of tenants) {
        if (await loginAddressAllowed(res, m.tenant_id, info.ip)) {
          target = m;
          break;
        }
      }
      if (!target && tenants[0]) {
        await auditLoginAddressRefused(res, tenants[0].tenant_id, info, {
          method: 'password',
          userId: user.id,
          label: email,
        });
      }
    }
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
  return issueSession(res, { userId: user.id, tenantId: target.tenant_id }, info, { method: 'password' });
}

/** The answer of a sign-in that needs a second factor (or, with `enrolmentRequired`, enrolment of one). */
export interface MfaRequired {
  mfaRequired: true;
  mfaToken: string;
  methods: MfaMethod[];
  enrolmentRequired: boolean;
  expiresIn: number;
}

export type LoginResult = SessionTokens | MfaRequired;

export interface IssueOptions {
  /** How the user authenticated: password, passkey, sso, ... (recorded on the session and audited). */
  method: string;
  /**
   * The sign-in already proved a second factor (a user-verified passkey, or the MFA step itself):
   * `true`, or the factor's name. Otherwise the user's and the tenant's MFA rules apply.
   */
  mfa?: boolean | string | undefined;
  /**
   * Single sign-on: the session stays in the tenant whose identity provider vouched for the user
   * (switch-tenant refuses to leave it), so one tenant's IdP cannot open another tenant's data.
   */
  bindToTenant?: boolean | undefined;
}

interface IssueSubject {
  user: { id: string; email: string; name: string; is_platform_admin: boolean; status: string };
  t: MembershipRow;
  role: string | null;
  settings: Record<string, unknown>;
  factors: { totp: boolean; passkeys: number };
}

async function issueSubject(tx: Tx, userId: string, tenantId: string): Promise<IssueSubject | undefined> {
  const [user] = await tx<UserRow[]>`
    select id, email, name, password_hash, status, is_platform_admin from users where id = ${userId}`;
  if (!user || user.status !== 'active') return undefined;
  let t: MembershipRow | undefined;
  let role: string | null = null;
  if (tenantId === PLATFORM_TENANT_ID) {
    if (!user.is_platform_admin) return undefined;
    t = await platformTenant();
  } else {
    const [m] = await tx<(MembershipRow & { role: string })[]>`
      select m.tenant_id, t.slug, t.name, r.name as role from memberships m
      join tenants t on t.id = m.tenant_id join roles r on r.tenant_id = m.tenant_id and r.id = m.role_id
      where m.user_id = ${userId} and m.tenant_id = ${tenantId} and m.status = 'active' and t.status = 'active'`;
    if (!m) return undefined;
    t = { tenant_id: m.tenant_id, slug: m.slug, name: m.name };
    role = m.role;
  }
  const [tenant] = await tx<
    { settings: Record<string, unknown> }[]
  >`select settings from tenants where id = ${tenantId}`;
  const [f] = await tx<{ totp: boolean; passkeys: string }[]>`
    select exists (select 1 from user_totp where user_id = ${userId} and confirmed_at is not null) as totp,
           (select count(*) from passkeys where user_id = ${userId}) as passkeys`;
  return {
    user,
    t,
    role,
    settings: tenant?.settings ?? {},
    factors: { totp: !!f?.totp, passkeys: Number(f?.passkeys ?? 0) },
  };
}

/**
 * The one way a session starts, for every kind of sign-in (password, passkey, SSO): for a user who
 * has already authenticated (first factor) to a tenant they are an active member of. Applies the
 * MFA rules - a user with a second factor must give it, and a tenant may require one of all members
 * or of some roles - by answering `mfaRequired` with a short-lived `mfaToken` for
 * `POST /auth/mfa` instead of tokens. Then the tenant's session rules: absolute lifetime and the
 * concurrent-session limit (the oldest sessions beyond it are revoked). Every session gets a new id.
 */
export async function issueSession(
  res: Resources,
  who: { userId: string; tenantId: string },
  info: RequestInfo,
  opts: IssueOptions,
): Promise<LoginResult> {
  // Every way in (password, passkey, SSO, the MFA step) ends here: the tenant's IP allow-list holds.
  await assertLoginAddressAllowed(res, who.tenantId, info, { method: opts.method, userId: who.userId });
  const outcome = await res.db.withSystemAccess(
    async (tx) => {
      const subject = await issueSubject(tx, who.userId, who.tenantId);
      if (!subject) return undefined;
      const policy = parseSessionPolicy(subject.settings);
      const hasFactor = subject.factors.totp || subject.factors.passkeys > 0;
      if (!opts.mfa && (hasFactor || mfaRequiredFor(policy, subject.role))) {
        const methods: MfaMethod[] = hasFactor
          ? [
              ...(subject.factors.totp ? (['totp', 'backup_code'] as const) : []),
              ...(subject.factors.passkeys > 0 ? (['webauthn'] as const) : []),
            ]
          : ['totp', 'webauthn'];
        await purgeExpiredChallenges(tx);
        const mfaToken = await createMfaChallenge(tx, subject.user.id, subject.t.tenant_id, {
          method: opts.method,
          enrolment: !hasFactor,
          ...(opts.bindToTenant ? { bindToTenant: true } : {}),
        });
        await res.audit.append(tx, subject.t.tenant_id, {
          actorType: 'user',
          actorId: subject.user.id,
          actorLabel: subject.user.email,
          action: 'auth.mfa_challenge',
          requestId: info.requestId,
          ip: info.ip,
          details: { method: opts.method, enrolmentRequired: !hasFactor, methods },
        });
        const challenge: MfaRequired = {
          mfaRequired: true,
          mfaToken,
          methods,
          enrolmentRequired: !hasFactor,
          expiresIn: MFA_TOKEN_TTL_SECONDS,
        };
        return { kind: 'mfa' as const, challenge };
      }
      const created = await createSessionInTx(res, tx, subject, policy, info, opts);
      return { kind: 'session' as const, subject, ...created };
    },
    { tenantId: who.tenantId },
  );
  if (!outcome) throw unauthenticated(INVALID_LOGIN);
  if (outcome.kind === 'mfa') return outcome.challenge;
  for (const id of outcome.revoked) res.auth.invalidateSession(id);
  return tokens(res, outcome.subject.user, outcome.subject.t, outcome.sessionId, outcome.refreshToken);
}

async function createSessionInTx(
  res: Resources,
  tx: Tx,
  subject: IssueSubject,
  policy: SessionPolicy,
  info: RequestInfo,
  opts: IssueOptions,
): Promise<{ sessionId: string; refreshToken: string; revoked: string[] }> {
  const { user, t } = subject;
  const lifetime = Math.min(REFRESH_TOKEN_TTL_SECONDS, policy.absoluteSeconds);
  const [session] = await tx<{ id: string }[]>`
    insert into sessions (user_id, active_tenant_id, ip, user_agent, expires_at, auth_method, mfa, bound_tenant_id)
    values (${user.id}, ${t.tenant_id}, ${info.ip ?? null}, ${(info.userAgent ?? '').slice(0, 300)},
            now() + make_interval(secs => ${lifetime}), ${opts.method}, ${!!opts.mfa},
            ${opts.bindToTenant ? t.tenant_id : null})
    returning id`;
  // The concurrent-session limit: keep the newest maxSessions (this one included).
  const revoked = await tx<{ id: string }[]>`
    update sessions set revoked_at = now(), revoked_reason = 'session_limit'
    where id in (
      select id from sessions where user_id = ${user.id} and revoked_at is null and expires_at > now()
      order by created_at desc, id offset ${policy.maxSessions})
    returning id`;
  const revokedIds = revoked.map((r) => r.id).filter((id) => id !== session!.id);
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
    details: { method: opts.method, mfa: opts.mfa ?? false, boundToTenant: opts.bindToTenant ?? false },
  });
  if (revokedIds.length) {
    await res.audit.append(tx, t.tenant_id, {
      actorType: 'user',
      actorId: user.id,
      actorLabel: user.email,
      action: 'session.limit_revoked',
      requestId: info.requestId,
      ip: info.ip,
      targetType: 'user',
      targetId: user.id,
      details: { sessions: revokedIds, limit: policy.maxSessions },
    });
  }
  return { sessionId: session!.id, refreshToken, revoked: revokedIds };
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
  session_created_at: Date;
  session_last_used_at: Date;
  settings: Record<string, unknown> | null;
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
             s.user_id, s.active_tenant_id, s.created_at as session_created_at,
             s.last_used_at as session_last_used_at, t.settings
      from refresh_tokens rt join sessions s on s.id = rt.session_id left join tenants t on t.id = s.active_tenant_id
      where rt.token_hash = ${sha256(refreshToken)} for update of rt, s`;
    if (!row) return { error: 'invalid refresh token' } as const;
    if (row.revoked_at || row.session_expires_at <= new Date())
      return { error: 'session is no longer valid' } as const;
    const timedOut = sessionTimedOut(parseSessionPolicy(row.settings ?? {}), {
      created_at: row.session_created_at,
      last_used_at: row.session_last_used_at,
    });
    if (timedOut) {
      await revokeSession(res, tx, row.session_id, `${timedOut}_timeout`);
      return { error: 'the session timed out; sign in again' } as const;
    }
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
  const target = result.t;
  const mfaMissing =
    !!target &&
    (await res.db.withSystemAccess(
      async (tx) => {
        const subject = await issueSubject(tx, principal.userId, target.tenant_id);
        const [session] = await tx<
          { mfa: boolean }[]
        >`select mfa from sessions where id = ${principal.sessionId}`;
        return (
          !!subject && !session?.mfa && mfaRequiredFor(parseSessionPolicy(subject.settings), subject.role)
        );
      },
      { tenantId: target.tenant_id },
    ));
  // Not a member answers exactly like a tenant that does not exist.
  if (!result.user || !result.t) throw notFound(`tenant "${slug}"`);
  // A session without a second factor does not carry into a tenant that requires one.
  if (mfaMissing)
    throw forbidden(`tenant "${slug}" requires MFA: sign in to it (POST /auth/login with tenant "${slug}")`);
  const { user, t } = result;
  const [bound] = await res.db.withSystemAccess(
    (tx) =>
      tx<
        { bound_tenant_id: string | null }[]
      >`select bound_tenant_id from sessions where id = ${principal.sessionId}`,
  );
  if (bound?.bound_tenant_id && bound.bound_tenant_id !== t.tenant_id)
    throw forbidden('a single sign-on session stays in its tenant: sign in to the other tenant');
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

/**
 * Revoke every open session of a user (except `keep`, the caller's own when the user changed their
 * own password or MFA). Returns the ids: drop them from the authenticator's cache after the commit.
 */
export async function revokeUserSessions(
  tx: Tx,
  userId: string,
  reason: string,
  keep?: string | undefined,
): Promise<string[]> {
  const rows = await tx<{ id: string }[]>`
    update sessions set revoked_at = now(), revoked_reason = ${reason}
    where user_id = ${userId} and revoked_at is null
      ${keep ? tx`and id <> ${keep}` : tx``}
    returning id`;
  return rows.map((r) => r.id);
}
