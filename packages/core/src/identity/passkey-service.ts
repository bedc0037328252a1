import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server';
import type { Tx } from '@steward/db/database';
import { PLATFORM_TENANT_ID } from '../audit/audit-log.ts';
import { invalid, notFound, unauthenticated } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { sha256 } from '../shared/secrets.ts';
import { issueSession, revokeUserSessions, type LoginResult, type RequestInfo } from './session-service.ts';

/** @simplewebauthn/server (and its ASN.1 and CBOR libraries) loads on the first passkey ceremony. */
const webauthn = () => import('@simplewebauthn/server');

/**
 * Passkeys (WebAuthn) with @simplewebauthn/server: several per user, usable as the second factor of
 * a sign-in or on their own (passwordless, user verification required). The relying party is the
 * installation's public URL (STEWARD_BASE_URL): its host name is the RP ID, its origin the only
 * accepted origin. Challenges are random, stored for 5 minutes, and work once.
 */

const CHALLENGE_TTL_SECONDS = 300;

export interface Passkey {
  id: string;
  name: string;
  createdAt: string;
  lastUsedAt: string | null;
}

interface PasskeyRow {
  id: string;
  user_id: string;
  credential_id: string;
  public_key: Buffer;
  counter: string;
  transports: string[];
  name: string;
  created_at: Date;
  last_used_at: Date | null;
}

const toPasskey = (r: PasskeyRow): Passkey => ({
  id: r.id,
  name: r.name,
  createdAt: r.created_at.toISOString(),
  lastUsedAt: r.last_used_at?.toISOString() ?? null,
});

export function relyingParty(res: Resources): { rpID: string; origin: string; rpName: string } {
  const url = new URL(res.tokens.issuer);
  return { rpID: url.hostname, origin: url.origin, rpName: 'Steward' };
}

/** The challenge a WebAuthn response answers (from its clientDataJSON), or undefined. */
function responseChallenge(response: { response: { clientDataJSON: string } }): string | undefined {
  try {
    const data = JSON.parse(Buffer.from(response.response.clientDataJSON, 'base64url').toString('utf8')) as {
      challenge?: unknown;
    };
    return typeof data.challenge === 'string' && data.challenge.length <= 200 ? data.challenge : undefined;
  } catch {
    return undefined;
  }
}

async function storeChallenge(
  tx: Tx,
  kind: 'passkey_register' | 'passkey_login',
  challenge: string,
  userId: string | null,
  details: Record<string, unknown>,
): Promise<void> {
  await tx`delete from auth_challenges where expires_at < now() - interval '1 hour'`;
  await tx`
    insert into auth_challenges (kind, token_hash, user_id, details, webauthn_challenge, expires_at)
    values (${kind}, ${sha256(`webauthn:${challenge}`)}, ${userId}, ${tx.json(details as never)}, ${challenge},
            now() + make_interval(secs => ${CHALLENGE_TTL_SECONDS}))`;
}

/** Spend an open challenge of this kind (and user); undefined when unknown, spent or expired. */
async function takeChallenge(
  tx: Tx,
  kind: 'passkey_register' | 'passkey_login',
  challenge: string | undefined,
  userId: string | null,
): Promise<{ details: Record<string, unknown> } | undefined> {
  if (!challenge) return undefined;
  const [row] = await tx<{ details: Record<string, unknown> }[]>`
    update auth_challenges set used_at = now()
    where kind = ${kind} and webauthn_challenge = ${challenge} and used_at is null and expires_at > now()
      and ${userId === null ? tx`user_id is null` : tx`user_id = ${userId}`}
    returning details`;
  return row;
}

type UserPrincipal = { userId: string; tenantId: string; sessionId?: string | undefined; actor: Actor };

/** Creation options for a new passkey of the user (its existing ones excluded). */
export async function registrationOptionsFor(
  res: Resources,
  tx: Tx,
  userId: string,
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  const rp = relyingParty(res);
  const [user] = await tx<
    { email: string; name: string }[]
  >`select email, name from users where id = ${userId}`;
  if (!user) throw notFound('user');
  const existing = await tx<
    PasskeyRow[]
  >`select credential_id, transports from passkeys where user_id = ${userId}`;
  return (await webauthn()).generateRegistrationOptions({
    rpName: rp.rpName,
    rpID: rp.rpID,
    userName: user.email,
    userDisplayName: user.name || user.email,
    userID: new Uint8Array(Buffer.from(userId.replaceAll('-', ''), 'hex')),
    attestationType: 'none',
    excludeCredentials: existing.map((p) => ({ id: p.credential_id, transports: p.transports })),
    authenticatorSelection: { residentKey: 'preferred', userVerification: 'preferred' },
    timeout: CHALLENGE_TTL_SECONDS * 1000,
  });
}

/**
 * Verify a registration response against the expected challenge and store the passkey; returns
 * it, or an error message (the caller decides how to answer, after committing what was spent).
 */
export async function storeRegistration(
  res: Resources,
  tx: Tx,
  userId: string,
  response: RegistrationResponseJSON,
  expectedChallenge: string,
  name: string | undefined,
): Promise<{ error: string } | { passkey: Passkey }> {
  const rp = relyingParty(res);
  const { verifyRegistrationResponse } = await webauthn();
  const verification = await verifyRegistrationResponse({
    response,
    expectedChallenge,
    expectedOrigin: rp.origin,
    expectedRPID: rp.rpID,
    requireUserVerification: false,
  }).catch(() => ({ verified: false as const }));
  if (!verification.verified) return { error: 'body/response could not be verified' };
  const cred = verification.registrationInfo.credential;
  const [row] = await tx<PasskeyRow[]>`
    insert into passkeys (user_id, credential_id, public_key, counter, transports, name)
    values (${userId}, ${cred.id}, ${Buffer.from(cred.publicKey)}, ${cred.counter},
            ${(cred.transports ?? []) as string[]}, ${name?.trim() || 'Passkey'})
    on conflict (credential_id) do nothing
    returning *`;
  if (!row) return { error: 'body/response: this passkey is already registered' };
  return { passkey: toPasskey(row) };
}

export async function passkeyRegistrationOptions(
  res: Resources,
  who: UserPrincipal,
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  return res.db.withSystemAccess(async (tx) => {
    const options = await registrationOptionsFor(res, tx, who.userId);
    await storeChallenge(tx, 'passkey_register', options.challenge, who.userId, {});
    return options;
  });
}

export async function registerPasskey(
  res: Resources,
  who: UserPrincipal,
  input: { response: RegistrationResponseJSON; name?: string | undefined },
): Promise<Passkey> {
  const outcome = await res.db.withSystemAccess(
    async (tx): Promise<{ error: string } | { passkey: Passkey; revoked: string[] }> => {
      const challenge = responseChallenge(input.response);
      const open = await takeChallenge(tx, 'passkey_register', challenge, who.userId);
      // A failed attempt still spends the challenge: no throwing (and rolling back) before the commit.
      if (!open) return { error: 'body/response does not answer an open registration challenge' };
      const stored = await storeRegistration(res, tx, who.userId, input.response, challenge!, input.name);
      if ('error' in stored) return stored;
      await res.audit.append(tx, who.tenantId, {
        ...auditActor(who.actor),
        action: 'passkey.registered',
        targetType: 'passkey',
        targetId: stored.passkey.id,
        details: { name: stored.passkey.name },
      });
      const revoked = await revokeUserSessions(tx, who.userId, 'mfa_changed', who.sessionId);
      return { passkey: stored.passkey, revoked };
    },
    { tenantId: who.tenantId },
  );
  if ('error' in outcome) throw invalid(outcome.error);
  const { passkey, revoked } = outcome;
  for (const id of revoked) res.auth.invalidateSession(id);
  return passkey;
}

export async function listPasskeys(res: Resources, userId: string): Promise<Passkey[]> {
  const rows = await res.db.withSystemAccess(
    (tx) => tx<PasskeyRow[]>`select * from passkeys where user_id = ${userId} order by created_at, id`,
  );
  return rows.map(toPasskey);
}

export async function renamePasskey(
  res: Resources,
  who: UserPrincipal,
  id: string,
  name: string,
): Promise<Passkey> {
  return res.db.withSystemAccess(
    async (tx) => {
      const [row] = await tx<PasskeyRow[]>`
        update passkeys set name = ${name.trim() || 'Passkey'} where id = ${id} and user_id = ${who.userId} returning *`;
      if (!row) throw notFound('passkey');
      await res.audit.append(tx, who.tenantId, {
        ...auditActor(who.actor),
        action: 'passkey.renamed',
        targetType: 'passkey',
        targetId: id,
        details: { name: row.name },
      });
      return toPasskey(row);
    },
    { tenantId: who.tenantId },
  );
}

export async function deletePasskey(res: Resources, who: UserPrincipal, id: string): Promise<void> {
  const revoked = await res.db.withSystemAccess(
    async (tx) => {
      const [row] = await tx<{ name: string }[]>`
        delete from passkeys where id = ${id} and user_id = ${who.userId} returning name`;
      if (!row) throw notFound('passkey');
      await res.audit.append(tx, who.tenantId, {
        ...auditActor(who.actor),
        action: 'passkey.deleted',
        targetType: 'passkey',
        targetId: id,
        details: { name: row.name },
      });
      return revokeUserSessions(tx, who.userId, 'mfa_changed', who.sessionId);
    },
    { tenantId: who.tenantId },
  );
  for (const sid of revoked) res.auth.invalidateSession(sid);
}

/** Options for an assertion by one of the user's passkeys (the MFA step). */
export async function assertionOptionsFor(
  res: Resources,
  tx: Tx,
  userId: string,
): Promise<PublicKeyCredentialRequestOptionsJSON> {
  const keys = await tx<
    PasskeyRow[]
  >`select credential_id, transports from passkeys where user_id = ${userId}`;
  if (!keys.length) throw invalid('this account has no passkey');
  return (await webauthn()).generateAuthenticationOptions({
    rpID: relyingParty(res).rpID,
    allowCredentials: keys.map((k) => ({ id: k.credential_id, transports: k.transports })),
    userVerification: 'preferred',
    timeout: CHALLENGE_TTL_SECONDS * 1000,
  });
}

/**
 * Verify an assertion against an expected challenge: returns the user whose passkey signed it (and
 * advances the signature counter), or undefined. `userId` limits it to that user's passkeys.
 */
export async function verifyAssertion(
  res: Resources,
  tx: Tx,
  response: AuthenticationResponseJSON,
  expectedChallenge: string,
  opts: { userId?: string | undefined; requireUserVerification: boolean },
): Promise<{ userId: string; passkeyId: string } | undefined> {
  if (typeof response?.id !== 'string' || response.id.length > 1400) return undefined;
  const [key] = await tx<
    PasskeyRow[]
  >`select * from passkeys where credential_id = ${response.id} for update`;
  if (!key || (opts.userId && key.user_id !== opts.userId)) return undefined;
  const rp = relyingParty(res);
  const { verifyAuthenticationResponse } = await webauthn();
  const result = await verifyAuthenticationResponse({
    response,
    expectedChallenge,
    expectedOrigin: rp.origin,
    expectedRPID: rp.rpID,
    credential: {
      id: key.credential_id,
      publicKey: new Uint8Array(key.public_key),
      counter: Number(key.counter),
      transports: key.transports as never,
    },
    requireUserVerification: opts.requireUserVerification,
  }).catch(() => undefined);
  if (!result?.verified) return undefined;
  await tx`update passkeys set counter = ${result.authenticationInfo.newCounter}, last_used_at = now() where id = ${key.id}`;
  return { userId: key.user_id, passkeyId: key.id };
}

/** Passwordless sign-in, step 1: a challenge any of the caller's discoverable passkeys can sign. */
export async function passkeyLoginOptions(
  res: Resources,
  input: { tenant?: string | undefined },
): Promise<PublicKeyCredentialRequestOptionsJSON> {
  return res.db.withSystemAccess(async (tx) => {
    const { generateAuthenticationOptions } = await webauthn();
    const options = await generateAuthenticationOptions({
      rpID: relyingParty(res).rpID,
      userVerification: 'required',
      timeout: CHALLENGE_TTL_SECONDS * 1000,
    });
    await storeChallenge(tx, 'passkey_login', options.challenge, null, { tenant: input.tenant ?? null });
    return options;
  });
}

/**
 * Passwordless sign-in, step 2. A user-verified passkey is two factors (possession and the
 * authenticator's PIN or biometric), so no MFA step follows; the tenant's session rules apply.
 */
export async function passkeyLogin(
  res: Resources,
  input: { response: AuthenticationResponseJSON; tenant?: string | undefined },
  info: RequestInfo,
): Promise<LoginResult> {
  const found = await res.db.withSystemAccess(async (tx) => {
    const challenge = responseChallenge(input.response);
    const open = await takeChallenge(tx, 'passkey_login', challenge, null);
    if (!open) return undefined;
    const slug = input.tenant ?? (open.details.tenant as string | null) ?? undefined;
    const who = await verifyAssertion(res, tx, input.response, challenge!, { requireUserVerification: true });
    if (!who) return undefined;
    const tenants = await tx<{ tenant_id: string; slug: string }[]>`
      select m.tenant_id, t.slug from memberships m join tenants t on t.id = m.tenant_id
      where m.user_id = ${who.userId} and m.status = 'active' and t.status = 'active' order by m.created_at`;
    const [user] = await tx<{ is_platform_admin: boolean; email: string }[]>`
      select is_platform_admin, email from users where id = ${who.userId} and status = 'active'`;
    if (!user) return undefined;
    const target = slug ? tenants.find((t) => t.slug === slug) : tenants[0];
    const tenantId = target?.tenant_id ?? (!slug && user.is_platform_admin ? PLATFORM_TENANT_ID : undefined);
    return tenantId ? { userId: who.userId, tenantId } : undefined;
  });
  if (!found) {
    await res.db.withTenant(PLATFORM_TENANT_ID, (tx) =>
      res.audit.append(tx, PLATFORM_TENANT_ID, {
        actorType: 'anonymous',
        action: 'auth.login',
        outcome: 'failure',
        requestId: info.requestId,
        ip: info.ip,
        details: { method: 'passkey', tenant: input.tenant ?? null },
      }),
    );
    throw unauthenticated('the passkey could not be verified');
  }
  return issueSession(res, found, info, { method: 'passkey', mfa: 'webauthn' });
}
