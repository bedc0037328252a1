import type { Tx } from '@steward/db/database';
import { AppError, notFound, unauthenticated } from '../errors/app-error.ts';
import { rolePermissions } from '../identity/permissions.ts';
import { issueSession, type LoginResult, type RequestInfo } from '../identity/session-service.ts';
import { normaliseEmail } from '../identity/user-service.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { randomToken, sha256 } from '../shared/secrets.ts';
import { findTenantBySlug } from '../tenants/tenant-service.ts';
import { resolveSsoConnection, type ResolvedSsoConnection } from './sso-connection-service.ts';
import type { SsoIdentity } from './sso-identity.ts';

/**
 * The sign-in flow: start (state stored, hashed, with the OIDC nonce and PKCE verifier or the SAML
 * request id), callback (the state is consumed first, so a replayed callback fails; then the
 * protocol validation; then just-in-time provisioning and group-to-role mapping) and the one-time
 * exchange code that hands the session to the web app without putting tokens in a URL.
 */

const STATE_TTL_SECONDS = 600;
const EXCHANGE_TTL_SECONDS = 60;
const EXCHANGE_PATTERN = /^ssx_([0-9a-f]{32})_([A-Za-z0-9]{43})$/;

/** Our redirect URI / assertion consumer service URL for a connection. */
/** The protocol libraries (openid-client; node-saml and xmldom) load on the first SSO sign-in. */
const oidcFlow = () => import('./oidc-flow.ts');
const samlFlow = () => import('./saml-flow.ts');

export function ssoCallbackUrl(res: Resources, slug: string, connectionId: string): string {
  return `${res.tokens.issuer.replace(/\/+$/, '')}/api/v1/sso/${slug}/${connectionId}/callback`;
}

async function tenantOf(res: Resources, slug: string): Promise<string> {
  const tenant = await findTenantBySlug(res, slug);
  // An unknown tenant and an unknown connection answer alike.
  if (!tenant || tenant.status !== 'active') throw notFound('SSO connection');
  return tenant.id;
}

export async function startSsoLogin(
  res: Resources,
  slug: string,
  connectionId: string,
): Promise<{ redirectUrl: string }> {
  const tenantId = await tenantOf(res, slug);
  const conn = await res.db.withTenant(tenantId, (tx) =>
    resolveSsoConnection(res, tx, tenantId, connectionId),
  );
  const callbackUrl = ssoCallbackUrl(res, slug, connectionId);
  const state = randomToken(43);
  let stored: { nonce: string | null; codeVerifier: string | null; requestId: string | null };
  let redirectUrl: string;
  try {
    if (conn.protocol === 'oidc') {
      const { oidcStart } = await oidcFlow();
      const s = await oidcStart(conn, callbackUrl, state);
      stored = { nonce: s.nonce, codeVerifier: s.codeVerifier, requestId: null };
      redirectUrl = s.url;
    } else {
      const { newSamlRequestId, samlStart } = await samlFlow();
      const requestId = newSamlRequestId();
      redirectUrl = await samlStart(conn, callbackUrl, state, requestId);
      stored = { nonce: null, codeVerifier: null, requestId };
    }
  } catch (error) {
    throw new AppError('UNAVAILABLE', 'the identity provider could not be reached or is misconfigured', {
      cause: error,
    });
  }
  await res.db.withTenant(tenantId, async (tx) => {
    // Abandoned sign-ins of this tenant go as new ones start.
    await tx`delete from sso_login_states where tenant_id = ${tenantId} and expires_at < now()`;
    await tx`
      insert into sso_login_states (tenant_id, state_hash, connection_id, nonce, code_verifier, request_id, expires_at)
      values (${tenantId}, ${sha256(state)}, ${connectionId}, ${stored.nonce}, ${stored.codeVerifier},
              ${stored.requestId}, now() + make_interval(secs => ${STATE_TTL_SECONDS}))`;
  });
  return { redirectUrl };
}

/** SAML service provider metadata of a connection (public: it holds nothing secret). */
/** 404 unless the tenant and connection of a callback URL exist (HEAD: checks without consuming). */
export async function assertSsoCallback(res: Resources, slug: string, connectionId: string): Promise<void> {
  const tenantId = await tenantOf(res, slug);
  await res.db.withTenant(tenantId, (tx) => resolveSsoConnection(res, tx, tenantId, connectionId));
}

export async function ssoMetadata(res: Resources, slug: string, connectionId: string): Promise<string> {
  const tenantId = await tenantOf(res, slug);
  const conn = await res.db.withTenant(tenantId, (tx) =>
    resolveSsoConnection(res, tx, tenantId, connectionId),
  );
  if (conn.protocol !== 'saml') throw notFound('SSO connection');
  return (await samlFlow()).samlMetadata(conn, ssoCallbackUrl(res, slug, connectionId));
}

interface StateRow {
  nonce: string | null;
  code_verifier: string | null;
  request_id: string | null;
}

/** Why a sign-in was refused: audited with the reason, answered 401 with it. */
class SsoRefused extends Error {}

export interface CallbackInput {
  query: Record<string, string>;
  body: Record<string, string>;
}

/** Validate the provider's answer and return a one-time exchange code for a session. */
export async function finishSsoLogin(
  res: Resources,
  slug: string,
  connectionId: string,
  input: CallbackInput,
  info: RequestInfo,
): Promise<{ code: string }> {
  const tenantId = await tenantOf(res, slug);
  const actor: Actor = { type: 'anonymous', label: 'sso', requestId: info.requestId, ip: info.ip };
  let conn: ResolvedSsoConnection | undefined;
  try {
    conn = await res.db.withTenant(tenantId, (tx) => resolveSsoConnection(res, tx, tenantId, connectionId));
    const c = conn;
    const callbackUrl = ssoCallbackUrl(res, slug, connectionId);
    if (input.query.error || input.body.error)
      throw new SsoRefused(
        `the identity provider answered ${String(input.query.error ?? input.body.error).slice(0, 100)}`,
      );
    const state = c.protocol === 'oidc' ? input.query.state : input.body.RelayState;
    if (!state || state.length > 200) throw new SsoRefused('the answer carries no state');
    // Consumed before anything else: a replayed callback finds it used.
    const [row] = await res.db.withTenant(
      tenantId,
      (tx) => tx<StateRow[]>`
        update sso_login_states set used_at = now()
        where tenant_id = ${tenantId} and state_hash = ${sha256(state)} and connection_id = ${connectionId}
          and used_at is null and expires_at > now()
        returning nonce, code_verifier, request_id`,
    );
    if (!row) throw new SsoRefused('the sign-in state is unknown, expired or already used');
    let identity: SsoIdentity;
    if (c.protocol === 'oidc') {
      const { oidcFinish } = await oidcFlow();
      identity = await protocolStep(() =>
        oidcFinish(c, callbackUrl, input.query, {
          state,
          nonce: row.nonce!,
          codeVerifier: row.code_verifier!,
        }),
      );
    } else {
      const samlResponse = input.body.SAMLResponse;
      if (!samlResponse) throw new SsoRefused('the answer carries no SAMLResponse');
      const { samlFinish } = await samlFlow();
      const result = await protocolStep(() =>
        samlFinish(c, callbackUrl, { SAMLResponse: samlResponse, RelayState: state }, row.request_id!),
      );
      // Replay cache: an assertion id is accepted once while it could still be valid.
      const [fresh] = await res.db.withTenant(
        tenantId,
        (tx) => tx`
          insert into sso_assertion_ids (tenant_id, connection_id, assertion_id, expires_at)
          values (${tenantId}, ${connectionId}, ${result.assertionId.slice(0, 256)}, ${result.notOnOrAfter})
          on conflict do nothing returning assertion_id`,
      );
      if (!fresh) throw new SsoRefused('the assertion was already used (replay)');
      identity = result.identity;
    }
    const userId = await provision(res, tenantId, c, identity, actor);
    const code = `ssx_${tenantId.replaceAll('-', '')}_${randomToken(43)}`;
    await res.db.withTenant(tenantId, async (tx) => {
      await tx`
        insert into sso_exchange_codes (tenant_id, code_hash, user_id, connection_id, expires_at)
        values (${tenantId}, ${sha256(code)}, ${userId}, ${connectionId},
                now() + make_interval(secs => ${EXCHANGE_TTL_SECONDS}))`;
      // Housekeeping: expired states, codes and replay-cache entries of this tenant.
      await tx`delete from sso_login_states where tenant_id = ${tenantId} and expires_at < now() - interval '1 hour'`;
      await tx`delete from sso_exchange_codes where tenant_id = ${tenantId} and expires_at < now() - interval '1 hour'`;
      await tx`delete from sso_assertion_ids where tenant_id = ${tenantId} and expires_at < now()`;
      await res.audit.append(tx, tenantId, {
        ...auditActor({ ...actor, type: 'user', id: userId, label: identity.email }),
        action: 'auth.sso_login',
        targetType: 'user',
        targetId: userId,
        details: { connectionId, protocol: c.protocol },
      });
    });
    return { code };
  } catch (error) {
    if (!(error instanceof SsoRefused)) throw error;
    await res.db.withTenant(tenantId, (tx) =>
      res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'auth.sso_login',
        outcome: 'failure',
        targetType: 'sso_connection',
        targetId: connectionId,
        details: { protocol: conn?.protocol ?? null, reason: error.message },
      }),
    );
    throw unauthenticated(`single sign-on failed: ${error.message}`);
  }
}

/** Protocol validation errors become refusals that name what failed (never a token or a secret). */
async function protocolStep<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw new SsoRefused(
      describe(error)
        .replace(/[\r\n]+/g, ' ')
        .slice(0, 300),
    );
  }
}

/** A validation error as text: its message, code and the claim involved (never a value). */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return 'validation failed';
  const e = error as Error & { code?: unknown; cause?: unknown };
  const parts = [e.message];
  if (typeof e.code === 'string') parts.push(`(${e.code})`);
  const cause = e.cause as { claim?: unknown; message?: unknown; code?: unknown } | undefined;
  if (cause && typeof cause.claim === 'string') parts.push(`claim ${cause.claim}`);
  if (cause instanceof Error) parts.push(`: ${describe(cause)}`);
  return parts.join(' ');
}

/** The role the groups map to: of several, the one with the most permissions. */
async function mappedRole(
  tx: Tx,
  tenantId: string,
  mapping: Record<string, string>,
  groups: string[],
): Promise<{ id: string; name: string } | undefined> {
  const names = [...new Set(groups.map((g) => mapping[g]).filter((r): r is string => !!r && r !== 'owner'))];
  if (!names.length) return undefined;
  const roles = await tx<{ id: string; name: string; builtin: boolean; permissions: string[] }[]>`
    select id, name, builtin, permissions from roles where tenant_id = ${tenantId} and name = any(${names})`;
  return roles
    .map((r) => ({ id: r.id, name: r.name, n: rolePermissions(r).length }))
    .sort((a, b) => b.n - a.n || a.name.localeCompare(b.name))[0];
}

/**
 * Just-in-time provisioning. The provider's subject is linked to a user once; an e-mail address
 * that already belongs to an account is linked only when that account belongs to this tenant alone
 * (and is no platform administrator): a tenant's identity provider must never sign someone into an
 * account that reaches other tenants.
 */
async function provision(
  res: Resources,
  tenantId: string,
  conn: ResolvedSsoConnection,
  identity: SsoIdentity,
  actor: Actor,
): Promise<string> {
  if (!identity.subject) throw new SsoRefused('the identity has no subject');
  return res.db.withSystemAccess(
    async (tx) => {
      const [link] = await tx<{ user_id: string }[]>`
        select user_id from sso_identities
        where tenant_id = ${tenantId} and connection_id = ${conn.id} and subject = ${identity.subject.slice(0, 512)}`;
      let userId = link?.user_id;
      if (!userId) {
        if (!identity.email) throw new SsoRefused('the identity provider sent no e-mail address');
        if (!identity.emailVerified)
          throw new SsoRefused('the e-mail address is not verified by the provider');
        let email: string;
        try {
          email = normaliseEmail(identity.email);
        } catch {
          throw new SsoRefused('the identity provider sent an invalid e-mail address');
        }
        const [user] = await tx<{ id: string; is_platform_admin: boolean }[]>`
          select id, is_platform_admin from users where email = ${email}`;
        if (user) {
          const [elsewhere] = await tx`
            select 1 from memberships where user_id = ${user.id} and tenant_id <> ${tenantId} limit 1`;
          if (user.is_platform_admin || elsewhere)
            throw new SsoRefused(
              'an account with this e-mail address exists outside this tenant; it cannot use this sign-on',
            );
          userId = user.id;
        } else {
          const [created] = await tx<{ id: string }[]>`
            insert into users (email, name) values (${email}, ${identity.name.slice(0, 200)}) returning id`;
          userId = created!.id;
        }
        await tx`
          insert into sso_identities (tenant_id, connection_id, subject, user_id)
          values (${tenantId}, ${conn.id}, ${identity.subject.slice(0, 512)}, ${userId})`;
      }
      const uid = userId;
      const [member] = await tx<{ status: string; role: string; user_status: string }[]>`
        select m.status, r.name as role, u.status as user_status from memberships m
        join roles r on r.tenant_id = m.tenant_id and r.id = m.role_id join users u on u.id = m.user_id
        where m.tenant_id = ${tenantId} and m.user_id = ${uid}`;
      const mapped = conn.groupsAttribute
        ? await mappedRole(tx, tenantId, conn.roleMapping, identity.groups)
        : undefined;
      if (!member) {
        const role =
          mapped ??
          (
            await tx<{ id: string; name: string }[]>`
            select id, name from roles where tenant_id = ${tenantId} and name = ${conn.defaultRole}`
          )[0];
        if (!role) throw new SsoRefused(`the default role "${conn.defaultRole}" no longer exists`);
        await tx`insert into memberships (tenant_id, user_id, role_id) values (${tenantId}, ${uid}, ${role.id})`;
        await res.audit.append(tx, tenantId, {
          ...auditActor(actor),
          action: 'user.provisioned',
          targetType: 'user',
          targetId: uid,
          details: {
            via: 'sso',
            connectionId: conn.id,
            role: role.name,
            groups: identity.groups.slice(0, 50),
          },
        });
      } else {
        if (member.status !== 'active' || member.user_status !== 'active')
          throw new SsoRefused('the account is disabled in this tenant');
        if (mapped && mapped.name !== member.role && member.role !== 'owner') {
          await tx`update memberships set role_id = ${mapped.id}, updated_at = now()
                   where tenant_id = ${tenantId} and user_id = ${uid}`;
          await res.audit.append(tx, tenantId, {
            ...auditActor(actor),
            action: 'user.role_synced',
            targetType: 'user',
            targetId: uid,
            details: { via: 'sso', connectionId: conn.id, from: member.role, to: mapped.name },
          });
          res.auth.invalidateTenant(tenantId);
        }
      }
      await tx`update sso_identities set last_login_at = now()
               where tenant_id = ${tenantId} and connection_id = ${conn.id} and user_id = ${uid}`;
      return uid;
    },
    { tenantId },
  );
}

/** Trade a one-time exchange code for a session (the same answer as a password login). */
export async function exchangeSsoCode(res: Resources, code: string, info: RequestInfo): Promise<LoginResult> {
  const m = EXCHANGE_PATTERN.exec(code);
  if (!m) throw unauthenticated('invalid or expired exchange code');
  const hex = m[1]!;
  const tenantId = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  const [row] = await res.db.withTenant(
    tenantId,
    (tx) => tx<{ user_id: string }[]>`
      update sso_exchange_codes set used_at = now()
      where tenant_id = ${tenantId} and code_hash = ${sha256(code)} and used_at is null and expires_at > now()
      returning user_id`,
  );
  if (!row) throw unauthenticated('invalid or expired exchange code');
  return issueSession(res, { userId: row.user_id, tenantId }, info, { method: 'sso', bindToTenant: true });
}
