import type { Tx } from '@steward/db/database';
import { randomToken, sha256 } from '../../shared/secrets.ts';

/**
 * The token of the MFA step of a sign-in (`mfaToken`): random, stored only as a hash, bound to the
 * user and the tenant being signed in to, valid for 5 minutes, spent by the first correct answer and
 * by the fifth wrong one.
 */
export const MFA_TOKEN_TTL_SECONDS = 300;
export const MFA_MAX_FAILURES = 5;
const MFA_TOKEN_PATTERN = /^mt_[A-Za-z0-9]{48}$/;

export type MfaMethod = 'totp' | 'backup_code' | 'webauthn';

export interface MfaChallengeDetails {
  /** How the first factor was given (password, sso, ...). */
  method: string;
  /** The user has no second factor yet and the tenant requires one: the step enrols TOTP. */
  enrolment: boolean;
  /** Carried from an SSO sign-in: the session it opens stays in this tenant. */
  bindToTenant?: boolean;
}

export interface MfaChallengeRow {
  id: string;
  user_id: string;
  login_tenant_id: string;
  details: MfaChallengeDetails;
  webauthn_challenge: string | null;
  failures: number;
}

export async function createMfaChallenge(
  tx: Tx,
  userId: string,
  tenantId: string,
  details: MfaChallengeDetails,
): Promise<string> {
  const token = 'mt_' + randomToken(48);
  await tx`
    insert into auth_challenges (kind, token_hash, user_id, login_tenant_id, details, expires_at)
    values ('mfa', ${sha256(token)}, ${userId}, ${tenantId}, ${tx.json(details as never)},
            now() + make_interval(secs => ${MFA_TOKEN_TTL_SECONDS}))`;
  return token;
}

/** The open challenge of a token, locked for this transaction; undefined when unknown, spent or expired. */
export async function findMfaChallenge(tx: Tx, token: string): Promise<MfaChallengeRow | undefined> {
  if (!MFA_TOKEN_PATTERN.test(token)) return undefined;
  const [row] = await tx<MfaChallengeRow[]>`
    select id, user_id, login_tenant_id, details, webauthn_challenge, failures from auth_challenges
    where kind = 'mfa' and token_hash = ${sha256(token)} and used_at is null and expires_at > now()
    for update`;
  return row;
}

export async function spendMfaChallenge(tx: Tx, id: string): Promise<void> {
  await tx`update auth_challenges set used_at = now() where id = ${id}`;
}

/** Count a wrong answer; the token is spent at the fifth. */
export async function failMfaChallenge(tx: Tx, id: string): Promise<void> {
  await tx`
    update auth_challenges set failures = failures + 1,
      used_at = case when failures + 1 >= ${MFA_MAX_FAILURES} then now() else used_at end
    where id = ${id}`;
}

export async function setMfaWebauthnChallenge(tx: Tx, id: string, challenge: string): Promise<void> {
  await tx`update auth_challenges set webauthn_challenge = ${challenge} where id = ${id}`;
}

/** Remove expired challenges (called opportunistically when new ones are created). */
export async function purgeExpiredChallenges(tx: Tx): Promise<void> {
  await tx`delete from auth_challenges where expires_at < now() - interval '1 hour'`;
}

/** The tenant a token's sign-in is for (unlocked read, to open the transaction in that tenant). */
export async function mfaChallengeTenant(tx: Tx, token: string): Promise<string | undefined> {
  if (!MFA_TOKEN_PATTERN.test(token)) return undefined;
  const [row] = await tx<{ login_tenant_id: string }[]>`
    select login_tenant_id from auth_challenges
    where kind = 'mfa' and token_hash = ${sha256(token)} and used_at is null and expires_at > now()`;
  return row?.login_tenant_id;
}
