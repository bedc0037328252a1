import { generateSecret, generateURI, verify } from 'otplib';
import type { Tx } from '@steward/db/database';
import type { MasterKey } from '../../crypto/master-key.ts';
import { open, seal } from '../../secrets/envelope.ts';

/**
 * TOTP (RFC 6238: SHA-1, 6 digits, 30-second steps) with otplib.
 *
 * - Drift: a code of the current step or of one step before or after (±30 s) is accepted; two steps
 *   away is not.
 * - Replay: the last accepted time step is stored per user and only a later step is accepted, so a
 *   code works once (and an older code never works after a newer one was used).
 * - The secret is stored sealed (AES-256-GCM) under a key derived from the master key, with the
 *   user id as additional data: a sealed secret copied to another user's row does not open.
 */

export const TOTP_PERIOD_SECONDS = 30;
/** Accepted drift, in steps either side of the current one. */
export const TOTP_DRIFT_STEPS = 1;
const TOTP_PATTERN = /^[0-9]{6}$/;

export function totpAad(userId: string): Buffer {
  return Buffer.from(`steward:totp-secret:v1:${userId.toLowerCase()}`);
}

function totpKey(master: MasterKey): Buffer {
  return master.derive('mfa-totp-secret');
}

export function newTotpSecret(): string {
  return generateSecret({ length: 20 });
}

export function totpUri(secret: string, issuer: string, label: string): string {
  return generateURI({ issuer, label, secret, period: TOTP_PERIOD_SECONDS, digits: 6 });
}

export function isTotpCode(code: string): boolean {
  return TOTP_PATTERN.test(code);
}

/**
 * The time step a code matches (within the drift), provided it is later than `afterStep`;
 * otherwise null.
 */
export async function matchTotp(
  secret: string,
  code: string,
  afterStep: number,
  nowMs = Date.now(),
): Promise<number | null> {
  if (!isTotpCode(code)) return null;
  const result = await verify({
    secret,
    token: code,
    period: TOTP_PERIOD_SECONDS,
    epoch: Math.floor(nowMs / 1000),
    epochTolerance: TOTP_DRIFT_STEPS * TOTP_PERIOD_SECONDS,
    ...(afterStep > 0 ? { afterTimeStep: afterStep } : {}),
  });
  if (!result.valid) return null;
  return 'timeStep' in result ? result.timeStep : null;
}

interface TotpRow {
  secret_sealed: Buffer;
  secret_nonce: Buffer;
  confirmed_at: Date | null;
  last_time_step: string;
}

/** Store a new (unconfirmed) secret, replacing an unconfirmed one. Fails if a confirmed one exists. */
export async function storePendingTotp(
  master: MasterKey,
  tx: Tx,
  userId: string,
  secret: string,
): Promise<boolean> {
  const sealed = seal(totpKey(master), Buffer.from(secret, 'utf8'), totpAad(userId));
  const rows = await tx`
    insert into user_totp (user_id, secret_sealed, secret_nonce) values (${userId}, ${sealed.ciphertext}, ${sealed.nonce})
    on conflict (user_id) do update set secret_sealed = excluded.secret_sealed, secret_nonce = excluded.secret_nonce,
      created_at = now(), last_time_step = 0
    where user_totp.confirmed_at is null
    returning user_id`;
  return rows.length === 1;
}

export async function hasConfirmedTotp(tx: Tx, userId: string): Promise<boolean> {
  const [row] = await tx`select 1 from user_totp where user_id = ${userId} and confirmed_at is not null`;
  return !!row;
}

/**
 * Check a code against the user's secret (the confirmed one, or with `pending` the unconfirmed
 * one) and consume its time step. Locks the row, so two requests with one code cannot both pass.
 */
export async function checkTotp(
  master: MasterKey,
  tx: Tx,
  userId: string,
  code: string,
  opts: { pending?: boolean; nowMs?: number } = {},
): Promise<boolean> {
  const [row] = await tx<TotpRow[]>`
    select secret_sealed, secret_nonce, confirmed_at, last_time_step from user_totp where user_id = ${userId} for update`;
  if (!row) return false;
  if (opts.pending ? row.confirmed_at !== null : row.confirmed_at === null) return false;
  const secret = open(
    totpKey(master),
    { ciphertext: row.secret_sealed, nonce: row.secret_nonce },
    totpAad(userId),
  ).toString('utf8');
  const step = await matchTotp(secret, code, Number(row.last_time_step), opts.nowMs);
  if (step === null) return false;
  await tx`
    update user_totp set last_time_step = ${step},
      confirmed_at = coalesce(confirmed_at, ${opts.pending ? tx`now()` : tx`null`})
    where user_id = ${userId}`;
  return true;
}
