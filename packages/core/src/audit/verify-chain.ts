import type { Tx } from '@steward/db/database';
import { chainKey, entryHash, GENESIS_HASH, toEntry, type AuditRow } from './audit-log.ts';
import type { Checkpoint } from './checkpoint-store.ts';
import type { MasterKey } from '../crypto/master-key.ts';
import { redactionMac } from '../privacy/audit-redaction.ts';

export interface VerifyResult {
  ok: boolean;
  /** Entries checked. */
  checked: number;
  /** The first entry that is missing, altered or out of place. */
  firstBrokenSeq?: number;
  reason?: string;
  /** The sequence number the newest signed checkpoint vouches for. */
  checkpointSeq?: number;
}

const BATCH = 2000;

/**
 * Walk one tenant's chain in order and recompute every HMAC. Detects a changed entry (its HMAC
 * fails), a deleted entry (a gap in seq, or the next entry's prev_hash no longer matches), a
 * reordered entry (HMACs cover seq and the previous hash) and a truncated tail (the chain head row
 * or the newest signed checkpoint is ahead of the last entry).
 */
export async function verifyChain(
  tx: Tx,
  master: MasterKey,
  tenantId: string,
  checkpoint?: Checkpoint,
): Promise<VerifyResult> {
  const key = chainKey(master, tenantId);
  let expectedSeq = 1;
  let prevHash = GENESIS_HASH;
  let checked = 0;
  const hashAt = new Map<number, string>();
  const broken = (seq: number, reason: string): VerifyResult => ({
    ok: false,
    checked,
    firstBrokenSeq: seq,
    reason,
    ...(checkpoint ? { checkpointSeq: checkpoint.seq } : {}),
  });

  for (;;) {
    const rows = await tx<(AuditRow & { redacted_at: Date | null; redaction_mac: string | null })[]>`
      select * from audit_log where tenant_id = ${tenantId} and seq >= ${expectedSeq}
      order by seq limit ${BATCH}`;
    for (const row of rows) {
      const e = toEntry(row);
      if (e.seq !== expectedSeq) return broken(expectedSeq, `entry ${expectedSeq} is missing`);
      if (e.prevHash !== prevHash) return broken(e.seq, `entry ${e.seq} does not follow entry ${e.seq - 1}`);
      // A redacted entry (privacy erasure) is checked against its redaction MAC instead.
      const redacted = row.redacted_at !== null || row.redaction_mac !== null;
      if (redacted ? redactionMac(master, e) !== row.redaction_mac : entryHash(key, e) !== e.hash)
        return broken(e.seq, `entry ${e.seq} was altered`);
      if (checkpoint && e.seq === checkpoint.seq) hashAt.set(e.seq, e.hash);
      prevHash = e.hash;
      expectedSeq++;
      checked++;
    }
    if (rows.length < BATCH) break;
  }
  const last = expectedSeq - 1;
  const [head] = await tx<
    { seq: string; hash: string }[]
  >`select seq, hash from audit_heads where tenant_id = ${tenantId}`;
  if (head && Number(head.seq) > last)
    return broken(last + 1, `entries after ${last} were removed (the chain head is at ${head.seq})`);
  if (head && Number(head.seq) === last && head.hash !== prevHash)
    return broken(last, `entry ${last} does not match the chain head`);
  if (checkpoint) {
    if (checkpoint.seq > last) {
      return broken(
        last + 1,
        `entries after ${last} were removed (a signed checkpoint vouches for ${checkpoint.seq})`,
      );
    }
    if (hashAt.has(checkpoint.seq) && hashAt.get(checkpoint.seq) !== checkpoint.hash) {
      return broken(checkpoint.seq, `entry ${checkpoint.seq} differs from its signed checkpoint`);
    }
  }
  return { ok: true, checked, ...(checkpoint ? { checkpointSeq: checkpoint.seq } : {}) };
}
