import { createHmac } from 'node:crypto';
import type { Tx } from '@steward/db/database';
import { chainKey, type AuditEntry, type AuditRow } from '../audit/audit-log.ts';
import { canonicalJson } from '../crypto/canonical-json.ts';
import type { MasterKey } from '../crypto/master-key.ts';

/**
 * Erasure and the tamper-evident audit chain.
 *
 * Audit entries are never deleted (a gap would break the chain and hide what happened). Instead,
 * erasure pseudonymises an entry's personal fields in place: actor/target ids of the erased user
 * become a keyed pseudonym, the actor label and IP address are replaced or cleared, and every
 * occurrence of the person's identifying strings inside `details` is replaced (for an erased tenant
 * `details` is emptied). The entry keeps its `hash` and `prev_hash`, so the chain still links and
 * signed checkpoints still match. Its original HMAC can no longer be recomputed (the personal data it
 * covered is gone, which is the point), so the entry gets a second HMAC under the same chain key,
 * `redaction_mac`, over its redacted content and its original hash: the verifier checks that one for
 * redacted entries. Trade-off: for a redacted entry the chain proves that an entry with this hash
 * existed at this place and that its redacted content has not changed since the redaction, but no
 * longer proves what the erased personal fields were. A database trigger allows only this redaction
 * (chain fields, action and time are immutable; redacted_at cannot be cleared).
 */
export function redactionMac(master: MasterKey, e: AuditEntry): string {
  const body = canonicalJson({
    redacted: true,
    tenantId: e.tenantId,
    seq: e.seq,
    at: e.at,
    actorType: e.actorType,
    actorId: e.actorId,
    actorLabel: e.actorLabel,
    action: e.action,
    targetType: e.targetType,
    targetId: e.targetId,
    outcome: e.outcome,
    requestId: e.requestId,
    ip: e.ip,
    details: e.details,
    prevHash: e.prevHash,
    hash: e.hash,
  });
  return createHmac('sha256', chainKey(master, e.tenantId)).update(body).digest('hex');
}

/** A keyed, stable pseudonym of an erased subject (the same user gets the same one everywhere). */
export function pseudonymOf(master: MasterKey, kind: 'user' | 'tenant', id: string): string {
  return `erased-${kind}-${createHmac('sha256', master.derive('privacy-pseudonym')).update(id.toLowerCase()).digest('hex').slice(0, 16)}`;
}

/** Replace every case-insensitive occurrence of the needles in a string. */
export function scrubString(s: string, needles: string[], replacement: string): string {
  let out = s;
  for (const n of needles) {
    if (!n) continue;
    out = out.replace(new RegExp(n.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&'), 'gi'), replacement);
  }
  return out;
}

function scrubJson(v: unknown, needles: string[], replacement: string): unknown {
  if (typeof v === 'string') return scrubString(v, needles, replacement);
  if (Array.isArray(v)) return v.map((x) => scrubJson(x, needles, replacement));
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.entries(v as Record<string, unknown>).map(([k, x]) => [
        scrubString(k, needles, replacement),
        scrubJson(x, needles, replacement),
      ]),
    );
  }
  return v;
}

export interface RedactionTarget {
  /** The erased user's id: entries they acted in or that target them. */
  userId?: string | undefined;
  /** Strings to find and replace (email, name). */
  needles: string[];
  pseudonym: string;
  /** Redact every entry of the chain and empty `details` (tenant erasure). */
  everything?: boolean;
  /** Only entries up to this sequence number (the erasure's own entries stay as written). */
  upToSeq?: number | undefined;
}

/** Redact the matching entries of one tenant's chain; returns how many changed. `tx` scoped to the tenant. */
export async function redactAudit(
  tx: Tx,
  master: MasterKey,
  tenantId: string,
  target: RedactionTarget,
): Promise<number> {
  const needles = target.needles.filter((n) => n.length >= 3);
  const patterns = needles.map((n) => `%${n.replace(/[\\%_]/g, '\\$&')}%`);
  const rows = await tx<AuditRow[]>`
    select a.* from audit_log a where a.tenant_id = ${tenantId} and (
      ${target.everything ?? false}
      or (${target.userId ?? null}::text is not null and (a.actor_id = ${target.userId ?? null} or a.target_id = ${target.userId ?? null}))
      or a::text ilike any(${patterns}::text[]))
      ${target.upToSeq !== undefined ? tx`and a.seq <= ${target.upToSeq}` : tx``}
    order by seq`;
  let changed = 0;
  for (const r of rows) {
    const isSubject = (v: string | null) => !!target.userId && v === target.userId;
    const actorIsSubject = isSubject(r.actor_id);
    const e: AuditEntry = {
      tenantId: r.tenant_id,
      seq: Number(r.seq),
      at: r.at.toISOString(),
      actorType: r.actor_type,
      actorId: actorIsSubject ? target.pseudonym : r.actor_id,
      actorLabel:
        target.everything || actorIsSubject
          ? r.actor_label === null
            ? null
            : target.pseudonym
          : r.actor_label === null
            ? null
            : scrubString(r.actor_label, needles, target.pseudonym),
      action: r.action,
      targetType: r.target_type,
      targetId: isSubject(r.target_id) ? target.pseudonym : r.target_id,
      outcome: r.outcome,
      requestId: r.request_id,
      ip: target.everything || actorIsSubject ? null : r.ip,
      details: target.everything
        ? {}
        : (scrubJson(r.details, needles, target.pseudonym) as Record<string, unknown>),
      prevHash: r.prev_hash,
      hash: r.hash,
    };
    const mac = redactionMac(master, e);
    await tx`
      update audit_log set actor_id = ${e.actorId}, actor_label = ${e.actorLabel}, target_id = ${e.targetId}, ip = ${e.ip},
        details = ${tx.json(e.details as never)}, redacted_at = now(), redaction_mac = ${mac}
      where tenant_id = ${tenantId} and seq = ${e.seq}`;
    changed++;
  }
  return changed;
}
