import { createHmac } from 'node:crypto';
import type { Tx } from '@steward/db/database';
import { canonicalJson } from '../crypto/canonical-json.ts';
import type { MasterKey } from '../crypto/master-key.ts';

export const GENESIS_HASH = '0'.repeat(64);
/** Tenant id of the platform chain: events that belong to no tenant (unknown-tenant logins, tenant creation). */
export const PLATFORM_TENANT_ID = '00000000-0000-0000-0000-000000000000';

export type ActorType = 'user' | 'api_key' | 'system' | 'anonymous' | 'vault';
export type Outcome = 'success' | 'failure' | 'denied';

export interface AuditInput {
  actorType: ActorType;
  actorId?: string | null | undefined;
  actorLabel?: string | null | undefined;
  action: string;
  targetType?: string | null | undefined;
  targetId?: string | null | undefined;
  outcome?: Outcome;
  requestId?: string | null | undefined;
  ip?: string | null | undefined;
  details?: Record<string, unknown>;
}

export interface AuditEntry {
  tenantId: string;
  seq: number;
  at: string;
  actorType: string;
  actorId: string | null;
  actorLabel: string | null;
  action: string;
  targetType: string | null;
  targetId: string | null;
  outcome: string;
  requestId: string | null;
  ip: string | null;
  details: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

export function chainKey(master: MasterKey, tenantId: string): Buffer {
  return master.derive('audit-chain:' + tenantId);
}

/** The HMAC of one entry: it covers every field and the previous entry's hash. */
export function entryHash(key: Buffer, e: Omit<AuditEntry, 'hash'>): string {
  const body = canonicalJson({
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
  });
  return createHmac('sha256', key).update(body).digest('hex');
}

export interface AppendListener {
  (tenantId: string, seq: number): void;
}

/**
 * Appends to a tenant's audit chain inside the caller's transaction, so an entry commits exactly
 * when the change it records commits. The chain head row is locked for the rest of the transaction.
 */
export class AuditLog {
  readonly #master: MasterKey;
  readonly #listeners: AppendListener[] = [];

  constructor(master: MasterKey) {
    this.#master = master;
  }

  onAppend(listener: AppendListener): void {
    this.#listeners.push(listener);
  }

  async append(tx: Tx, tenantId: string, input: AuditInput): Promise<AuditEntry> {
    let [head] = await tx<{ seq: string; hash: string }[]>`
      select seq, hash from audit_heads where tenant_id = ${tenantId} for update`;
    if (!head) {
      await tx`insert into audit_heads (tenant_id, seq, hash) values (${tenantId}, 0, ${GENESIS_HASH})
               on conflict (tenant_id) do nothing`;
      [head] = await tx<{ seq: string; hash: string }[]>`
        select seq, hash from audit_heads where tenant_id = ${tenantId} for update`;
    }
    const base: Omit<AuditEntry, 'hash'> = {
      tenantId,
      seq: Number(head!.seq) + 1,
      at: new Date().toISOString(),
      actorType: input.actorType,
      actorId: input.actorId ?? null,
      actorLabel: input.actorLabel ?? null,
      action: input.action,
      targetType: input.targetType ?? null,
      targetId: input.targetId ?? null,
      outcome: input.outcome ?? 'success',
      requestId: input.requestId ?? null,
      ip: input.ip ?? null,
      details: JSON.parse(canonicalJson(input.details ?? {})) as Record<string, unknown>,
      prevHash: head!.hash,
    };
    const entry: AuditEntry = { ...base, hash: entryHash(chainKey(this.#master, tenantId), base) };
    await tx`insert into audit_log (tenant_id, seq, at, actor_type, actor_id, actor_label, action, target_type,
               target_id, outcome, request_id, ip, details, prev_hash, hash)
             values (${tenantId}, ${entry.seq}, ${entry.at}, ${entry.actorType}, ${entry.actorId}, ${entry.actorLabel},
               ${entry.action}, ${entry.targetType}, ${entry.targetId}, ${entry.outcome}, ${entry.requestId},
               ${entry.ip}, ${tx.json(entry.details as never)}, ${entry.prevHash}, ${entry.hash})`;
    await tx`update audit_heads set seq = ${entry.seq}, hash = ${entry.hash}, updated_at = now()
             where tenant_id = ${tenantId}`;
    for (const l of this.#listeners) l(tenantId, entry.seq);
    return entry;
  }
}

export interface AuditRow {
  tenant_id: string;
  seq: string;
  at: Date;
  actor_type: string;
  actor_id: string | null;
  actor_label: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  outcome: string;
  request_id: string | null;
  ip: string | null;
  details: Record<string, unknown>;
  prev_hash: string;
  hash: string;
}

export function toEntry(r: AuditRow): AuditEntry {
  return {
    tenantId: r.tenant_id,
    seq: Number(r.seq),
    at: r.at.toISOString(),
    actorType: r.actor_type,
    actorId: r.actor_id,
    actorLabel: r.actor_label,
    action: r.action,
    targetType: r.target_type,
    targetId: r.target_id,
    outcome: r.outcome,
    requestId: r.request_id,
    ip: r.ip,
    details: r.details,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}
