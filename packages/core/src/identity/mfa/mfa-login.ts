import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { invalid, unauthenticated } from '../../errors/app-error.ts';
import type { Resources } from '../../resources.ts';
import {
  assertionOptionsFor,
  registrationOptionsFor,
  storeRegistration,
  verifyAssertion,
} from '../passkey-service.ts';
import { issueSession, type RequestInfo, type SessionTokens } from '../session-service.ts';
import { replaceBackupCodes, useBackupCode, isBackupCode } from './backup-codes.ts';
import {
  failMfaChallenge,
  findMfaChallenge,
  mfaChallengeTenant,
  setMfaWebauthnChallenge,
  spendMfaChallenge,
  type MfaChallengeRow,
} from './mfa-challenge.ts';
import { checkTotp, isTotpCode, newTotpSecret, storePendingTotp, totpUri } from './totp-service.ts';

/**
 * The second step of a sign-in: `POST /auth/mfa` with the `mfaToken` of the first step and a TOTP
 * code, a backup code or a passkey assertion. With `enrolmentRequired` the step enrols a first
 * factor: TOTP (the secret from `POST /auth/mfa/enrol/totp`, confirmed by the first code, which also
 * gives backup codes) or a passkey (creation options from `POST /auth/mfa/webauthn/options`, the
 * registration response as `webauthn`). A wrong answer is a failed sign-in (audited); the fifth
 * spends the token.
 */

const BAD_TOKEN = 'the MFA token is invalid or expired; sign in again';

export type MfaLoginResult = SessionTokens & { backupCodes?: string[] };

export async function completeMfa(
  res: Resources,
  input: {
    mfaToken: string;
    code?: string | undefined;
    /** An assertion, or during enrolment a registration (of a new passkey). */
    webauthn?: AuthenticationResponseJSON | RegistrationResponseJSON | undefined;
  },
  info: RequestInfo,
): Promise<MfaLoginResult> {
  if (input.code === undefined && input.webauthn === undefined)
    throw invalid('body/code or body/webauthn is required');
  const tenantId = await res.db.withSystemAccess((tx) => mfaChallengeTenant(tx, input.mfaToken));
  if (!tenantId) throw unauthenticated(BAD_TOKEN);
  const outcome = await res.db.withSystemAccess(
    async (tx) => {
      const challenge = await findMfaChallenge(tx, input.mfaToken);
      if (!challenge || challenge.login_tenant_id !== tenantId) return { error: BAD_TOKEN } as const;
      let factor: string | undefined;
      let enrolled: { id: string; name: string } | undefined;
      let backupCodes: string[] | undefined;
      if (challenge.details.enrolment) {
        if (input.webauthn !== undefined) {
          if (challenge.webauthn_challenge) {
            const stored = await storeRegistration(
              res,
              tx,
              challenge.user_id,
              input.webauthn as RegistrationResponseJSON,
              challenge.webauthn_challenge,
              undefined,
            );
            if ('passkey' in stored) {
              factor = 'webauthn';
              enrolled = stored.passkey;
            }
          }
        } else if (
          input.code !== undefined &&
          (await checkTotp(res.master, tx, challenge.user_id, input.code, { pending: true }))
        ) {
          factor = 'totp';
          backupCodes = await replaceBackupCodes(tx, challenge.user_id);
        }
      } else if (input.webauthn !== undefined) {
        if (challenge.webauthn_challenge) {
          const ok = await verifyAssertion(
            res,
            tx,
            input.webauthn as AuthenticationResponseJSON,
            challenge.webauthn_challenge,
            { userId: challenge.user_id, requireUserVerification: false },
          );
          if (ok) factor = 'webauthn';
        }
      } else if (input.code !== undefined) {
        const code = input.code.trim();
        if (isTotpCode(code)) {
          if (await checkTotp(res.master, tx, challenge.user_id, code)) factor = 'totp';
        } else if (isBackupCode(code) && (await useBackupCode(tx, challenge.user_id, code))) {
          factor = 'backup_code';
        }
      }
      if (!factor) {
        await failMfaChallenge(tx, challenge.id);
        await auditMfa(res, tx, challenge, info, 'failure', input.webauthn ? 'webauthn' : 'code');
        return { error: 'the code is incorrect', failed: true } as const;
      }
      await spendMfaChallenge(tx, challenge.id);
      await auditMfa(res, tx, challenge, info, 'success', factor);
      if (enrolled) {
        await res.audit.append(tx, challenge.login_tenant_id, {
          actorType: 'user',
          actorId: challenge.user_id,
          action: 'passkey.registered',
          requestId: info.requestId,
          ip: info.ip,
          targetType: 'passkey',
          targetId: enrolled.id,
          details: { name: enrolled.name, during: 'sign-in' },
        });
      }
      if (backupCodes) {
        await res.audit.append(tx, challenge.login_tenant_id, {
          actorType: 'user',
          actorId: challenge.user_id,
          action: 'mfa.totp_enabled',
          requestId: info.requestId,
          ip: info.ip,
          targetType: 'user',
          targetId: challenge.user_id,
          details: { during: 'sign-in' },
        });
      }
      return { challenge, factor, backupCodes } as const;
    },
    { tenantId },
  );
  if ('error' in outcome) throw unauthenticated(outcome.error);
  const { challenge, factor, backupCodes } = outcome;
  const result = await issueSession(
    res,
    { userId: challenge.user_id, tenantId: challenge.login_tenant_id },
    info,
    { method: challenge.details.method, mfa: factor, bindToTenant: challenge.details.bindToTenant },
  );
  if ('mfaRequired' in result) throw new Error('a session with MFA asked for MFA again');
  return backupCodes ? { ...result, backupCodes } : result;
}

async function auditMfa(
  res: Resources,
  tx: Parameters<typeof failMfaChallenge>[0],
  challenge: MfaChallengeRow,
  info: RequestInfo,
  outcome: 'success' | 'failure',
  factor: string,
): Promise<void> {
  await res.audit.append(tx, challenge.login_tenant_id, {
    actorType: 'user',
    actorId: challenge.user_id,
    // A wrong second factor is a failed sign-in.
    action: outcome === 'failure' ? 'auth.login' : 'auth.mfa',
    outcome,
    requestId: info.requestId,
    ip: info.ip,
    targetType: 'user',
    targetId: challenge.user_id,
    details: { step: 'mfa', factor, method: challenge.details.method },
  });
}

/** TOTP enrolment during a sign-in the tenant requires MFA for: the secret, shown once. */
export async function enrolTotpWithMfaToken(
  res: Resources,
  mfaToken: string,
  info: RequestInfo,
): Promise<{ secret: string; otpauthUri: string }> {
  const tenantId = await res.db.withSystemAccess((tx) => mfaChallengeTenant(tx, mfaToken));
  if (!tenantId) throw unauthenticated(BAD_TOKEN);
  const result = await res.db.withSystemAccess(
    async (tx) => {
      const challenge = await findMfaChallenge(tx, mfaToken);
      if (!challenge || !challenge.details.enrolment || challenge.login_tenant_id !== tenantId)
        return undefined;
      const [user] = await tx<{ email: string }[]>`select email from users where id = ${challenge.user_id}`;
      const secret = newTotpSecret();
      if (!(await storePendingTotp(res.master, tx, challenge.user_id, secret))) return undefined;
      await res.audit.append(tx, challenge.login_tenant_id, {
        actorType: 'user',
        actorId: challenge.user_id,
        action: 'mfa.totp_enrolment_started',
        requestId: info.requestId,
        ip: info.ip,
        targetType: 'user',
        targetId: challenge.user_id,
        details: { during: 'sign-in' },
      });
      return { secret, otpauthUri: totpUri(secret, 'Steward', user?.email ?? 'user') };
    },
    { tenantId },
  );
  if (!result) throw unauthenticated(BAD_TOKEN);
  return result;
}

/**
 * Options for answering the MFA step with a passkey: an assertion by one of the user's passkeys,
 * or during enrolment (`enrolmentRequired`) the creation of a first one.
 */
export async function mfaWebauthnOptions(
  res: Resources,
  mfaToken: string,
): Promise<PublicKeyCredentialRequestOptionsJSON | PublicKeyCredentialCreationOptionsJSON> {
  return res.db.withSystemAccess(async (tx) => {
    const challenge = await findMfaChallenge(tx, mfaToken);
    if (!challenge) throw unauthenticated(BAD_TOKEN);
    const options = challenge.details.enrolment
      ? await registrationOptionsFor(res, tx, challenge.user_id)
      : await assertionOptionsFor(res, tx, challenge.user_id);
    await setMfaWebauthnChallenge(tx, challenge.id, options.challenge);
    return options;
  });
}
