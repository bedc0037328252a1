import { conflict, forbidden, invalid, notFound } from '../../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../../resources.ts';
import { verifyPassword } from '../passwords.ts';
import { revokeUserSessions } from '../session-service.ts';
import { backupCodesLeft, isBackupCode, replaceBackupCodes, useBackupCode } from './backup-codes.ts';
import { checkTotp, isTotpCode, newTotpSecret, storePendingTotp, totpUri } from './totp-service.ts';
import type { Tx } from '@steward/db/database';

/**
 * Self-service MFA of a signed-in user (enrol and confirm TOTP, disable it, new backup codes) and
 * the administrator's reset. Every change to a user's factors revokes the user's other sessions
 * (an administrator's reset revokes all of them) and is audited.
 */

export interface Me {
  userId: string;
  tenantId: string;
  sessionId?: string | undefined;
  actor: Actor;
}

export interface MfaStatus {
  totp: boolean;
  backupCodesLeft: number;
  passkeys: number;
}

export async function mfaStatus(res: Resources, userId: string): Promise<MfaStatus> {
  return res.db.withSystemAccess(async (tx) => {
    const [row] = await tx<{ totp: boolean; passkeys: string }[]>`
      select exists (select 1 from user_totp where user_id = ${userId} and confirmed_at is not null) as totp,
             (select count(*) from passkeys where user_id = ${userId}) as passkeys`;
    return {
      totp: !!row?.totp,
      backupCodesLeft: await backupCodesLeft(tx, userId),
      passkeys: Number(row?.passkeys ?? 0),
    };
  });
}

async function changed(
  res: Resources,
  me: Me,
  action: string,
  fn: (tx: Tx) => Promise<Record<string, unknown> | void>,
  revoke = true,
): Promise<void> {
  const revoked = await res.db.withSystemAccess(
    async (tx) => {
      const details = (await fn(tx)) ?? {};
      await res.audit.append(tx, me.tenantId, {
        ...auditActor(me.actor),
        action,
        targetType: 'user',
        targetId: me.userId,
        details,
      });
      return revoke ? revokeUserSessions(tx, me.userId, 'mfa_changed', me.sessionId) : [];
    },
    { tenantId: me.tenantId },
  );
  for (const id of revoked) res.auth.invalidateSession(id);
}

/** Start TOTP enrolment: a new secret and its otpauth:// URI, returned once. */
export async function startTotpEnrolment(
  res: Resources,
  me: Me,
): Promise<{ secret: string; otpauthUri: string }> {
  const secret = newTotpSecret();
  let email = 'user';
  await changed(
    res,
    me,
    'mfa.totp_enrolment_started',
    async (tx) => {
      const [user] = await tx<{ email: string }[]>`select email from users where id = ${me.userId}`;
      email = user?.email ?? email;
      if (!(await storePendingTotp(res.master, tx, me.userId, secret)))
        throw conflict('TOTP is already enabled; disable it first');
    },
    false,
  );
  return { secret, otpauthUri: totpUri(secret, 'Steward', email) };
}

/** Confirm enrolment with a first code; returns 10 new backup codes (shown once). */
export async function confirmTotp(res: Resources, me: Me, code: string): Promise<{ backupCodes: string[] }> {
  let backupCodes: string[] = [];
  await changed(res, me, 'mfa.totp_enabled', async (tx) => {
    const [row] = await tx<
      { confirmed_at: Date | null }[]
    >`select confirmed_at from user_totp where user_id = ${me.userId}`;
    if (!row) throw conflict('start TOTP enrolment first');
    if (row.confirmed_at) throw conflict('TOTP is already enabled');
    if (!(await checkTotp(res.master, tx, me.userId, code, { pending: true })))
      throw invalid('body/code is incorrect');
    backupCodes = await replaceBackupCodes(tx, me.userId);
  });
  return { backupCodes };
}

/** A proof of the account for a sensitive change: the password, or a current TOTP or backup code. */
async function proven(
  res: Resources,
  tx: Tx,
  userId: string,
  proof: { password?: string | undefined; code?: string | undefined },
): Promise<boolean> {
  if (proof.password !== undefined) {
    const [user] = await tx<
      { password_hash: string | null }[]
    >`select password_hash from users where id = ${userId}`;
    return verifyPassword(user?.password_hash, proof.password);
  }
  if (proof.code !== undefined) {
    const code = proof.code.trim();
    if (isTotpCode(code)) return checkTotp(res.master, tx, userId, code);
    if (isBackupCode(code)) return useBackupCode(tx, userId, code);
    return false;
  }
  throw invalid('body/password or body/code is required');
}

async function deniedAudit(res: Resources, me: Me, action: string): Promise<never> {
  await res.db.withTenant(me.tenantId, (tx) =>
    res.audit.append(tx, me.tenantId, {
      ...auditActor(me.actor),
      action,
      outcome: 'denied',
      targetType: 'user',
      targetId: me.userId,
    }),
  );
  throw forbidden('the password or code is incorrect');
}

/** Turn TOTP off (and drop the backup codes), proven by the password or a code. */
export async function disableTotp(
  res: Resources,
  me: Me,
  proof: { password?: string | undefined; code?: string | undefined },
): Promise<void> {
  let ok = true;
  await changed(res, me, 'mfa.totp_disabled', async (tx) => {
    const [row] = await tx`select 1 from user_totp where user_id = ${me.userId}`;
    if (!row) throw notFound('TOTP enrolment');
    ok = await proven(res, tx, me.userId, proof);
    if (!ok) throw new DeniedError();
    await tx`delete from user_totp where user_id = ${me.userId}`;
    await tx`delete from user_backup_codes where user_id = ${me.userId}`;
  }).catch((error: unknown) => {
    if (!(error instanceof DeniedError)) throw error;
  });
  if (!ok) await deniedAudit(res, me, 'mfa.totp_disabled');
}

/** Replace the backup codes, proven by the password or a code. */
export async function regenerateBackupCodes(
  res: Resources,
  me: Me,
  proof: { password?: string | undefined; code?: string | undefined },
): Promise<{ backupCodes: string[] }> {
  let backupCodes: string[] | undefined;
  await changed(res, me, 'mfa.backup_codes_replaced', async (tx) => {
    const [row] = await tx`select 1 from user_totp where user_id = ${me.userId} and confirmed_at is not null`;
    if (!row) throw conflict('enable TOTP first');
    if (!(await proven(res, tx, me.userId, proof))) throw new DeniedError();
    backupCodes = await replaceBackupCodes(tx, me.userId);
  }).catch((error: unknown) => {
    if (!(error instanceof DeniedError)) throw error;
  });
  if (!backupCodes) return deniedAudit(res, me, 'mfa.backup_codes_replaced');
  return { backupCodes };
}

class DeniedError extends Error {}

/**
 * An administrator removes every factor of a member of their tenant (lost device): TOTP, backup
 * codes and passkeys; all the user's sessions are revoked. Not a member: 404.
 */
export async function resetUserMfa(
  res: Resources,
  tenantId: string,
  actor: Actor,
  userId: string,
): Promise<void> {
  const revoked = await res.db.withSystemAccess(
    async (tx) => {
      const [member] =
        await tx`select 1 from memberships where tenant_id = ${tenantId} and user_id = ${userId}`;
      if (!member) throw notFound('user');
      const [counts] = await tx<{ totp: string; passkeys: string }[]>`
        select (select count(*) from user_totp where user_id = ${userId}) as totp,
               (select count(*) from passkeys where user_id = ${userId}) as passkeys`;
      await tx`delete from user_totp where user_id = ${userId}`;
      await tx`delete from user_backup_codes where user_id = ${userId}`;
      await tx`delete from passkeys where user_id = ${userId}`;
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'mfa.reset',
        targetType: 'user',
        targetId: userId,
        details: { totp: Number(counts?.totp ?? 0) > 0, passkeys: Number(counts?.passkeys ?? 0) },
      });
      return revokeUserSessions(tx, userId, 'mfa_reset');
    },
    { tenantId },
  );
  for (const id of revoked) res.auth.invalidateSession(id);
}
