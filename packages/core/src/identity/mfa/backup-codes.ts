import { randomInt } from 'node:crypto';
import type { Tx } from '@steward/db/database';
import { sha256 } from '../../shared/secrets.ts';

/**
 * Backup codes: 10 random codes of 10 characters (about 50 bits each) shown once, stored as SHA-256
 * hashes (they are random, so a slow hash adds nothing), each usable once.
 */
export const BACKUP_CODE_COUNT = 10;
const ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789';
const BACKUP_PATTERN = /^[a-z2-9]{5}-?[a-z2-9]{5}$/;

function normalise(code: string): string {
  return code.trim().toLowerCase().replace('-', '');
}

export function isBackupCode(code: string): boolean {
  return BACKUP_PATTERN.test(code.trim().toLowerCase());
}

function newCode(): string {
  let s = '';
  for (let i = 0; i < 10; i++) s += ALPHABET[randomInt(ALPHABET.length)];
  return `${s.slice(0, 5)}-${s.slice(5)}`;
}

function hash(userId: string, code: string): Buffer {
  return sha256(`steward:backup-code:v1:${userId}:${normalise(code)}`);
}

/** Replace the user's backup codes with new ones; returns them (the only time they are readable). */
export async function replaceBackupCodes(tx: Tx, userId: string): Promise<string[]> {
  await tx`delete from user_backup_codes where user_id = ${userId}`;
  const codes = Array.from({ length: BACKUP_CODE_COUNT }, newCode);
  for (const code of codes) {
    await tx`insert into user_backup_codes (user_id, code_hash) values (${userId}, ${hash(userId, code)})`;
  }
  return codes;
}

/** Spend a backup code: true once per code. */
export async function useBackupCode(tx: Tx, userId: string, code: string): Promise<boolean> {
  if (!isBackupCode(code)) return false;
  const rows = await tx`
    update user_backup_codes set used_at = now()
    where user_id = ${userId} and code_hash = ${hash(userId, code)} and used_at is null returning id`;
  return rows.length === 1;
}

export async function backupCodesLeft(tx: Tx, userId: string): Promise<number> {
  const [row] = await tx<{ n: string }[]>`
    select count(*) as n from user_backup_codes where user_id = ${userId} and used_at is null`;
  return Number(row?.n ?? 0);
}
