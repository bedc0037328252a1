import { createHmac } from 'node:crypto';
import { beforeCommit, type Tx } from '@steward/db/database';
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

/** The fields an entry's HMAC covers, in canonical (code unit) order, each with its `"name":` prefix. */
const HASHED_FIELDS = (
  [
    'tenantId',
    'seq',
    'at',
    'actorType',
    'actorId',
    'actorLabel',
    'action',
    'targetType',
    'targetId',
    'outcome',
    'requestId',
    'ip',
    'details',
    'prevHash',
  ] satisfies (keyof Omit<AuditEntry, 'hash'>)[]
)
  .sort()
  .map((name) => ({ name, prefix: JSON.stringify(name) + ':' }));

/**
 * The HMAC of one entry: it covers every field and the previous entry's hash. The text is
 * `canonicalJson` of those fields, written here in their fixed order (no object, key list or sort per
 * entry: every audit write hashes each of its entries).
 */
export function entryHash(key: Buffer, e: Omit<AuditEntry, 'hash'>): string {
  let body = '{';
  for (const { name, prefix } of HASHED_FIELDS) {
    const value = e[name];
    if (value === undefined) continue;
    body += (body.length > 1 ? ',' : '') + prefix + canonicalJson(value);
  }
  return createHmac('sha256', key)
    .update(body + '}')
    .digest('hex');
}

/** The tenant's chain head, locked until the transaction ends. */
const lockedHead = (tx: Tx, tenantId: string) =>
  tx<
    { seq: string; hash: string }[]
  >`select seq, hash from audit_heads where tenant_id = ${tenantId} for update`;

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
  /** Chain keys by tenant: an HKDF derivation per append was ~3 % of a worker's CPU in the pipeline. */
  readonly #keys = new Map<string, Buffer>();

  constructor(master: MasterKey) {
    this.#master = master;
  }

  onAppend(listener: AppendListener): void {
    this.#listeners.push(listener);
  }

  #chainKey(tenantId: string): Buffer {
    let key = this.#keys.get(tenantId);
    if (!key) {
      // Deterministic (master key and tenant id only), so a cached key never goes stale; bounded.
      if (this.#keys.size >= 10_000) this.#keys.clear();
      key = chainKey(this.#master, tenantId);
      this.#keys.set(tenantId, key);
    }
    return key;
  }

  /** Entries recorded with `record` and not yet written, per transaction and tenant. */
  readonly #pending = new WeakMap<Tx, Map<string, AuditInput[]>>();
  /** Head rows asked for by `lockHead` and not yet used, per transaction and tenant. */
  readonly #heads = new WeakMap<Tx, Map<string, Promise<{ seq: string; hash: string }[]>>>();

  /**
   * Send the select that locks the tenant's chain head now, without waiting for it: pipelined
   * behind the statement in flight, it saves the round trip the next write of entries would spend
   * on it. For a transaction that records entries right after its current statement; the lock is
   * held from there to the commit, as it would be anyway.
   */
  lockHead(tx: Tx, tenantId: string): void {
    let byTenant = this.#heads.get(tx);
    if (!byTenant) this.#heads.set(tx, (byTenant = new Map()));
    if (byTenant.has(tenantId)) return;
    const head = lockedHead(tx, tenantId).execute();
    head.catch(() => {}); // a failure fails the transaction; #write sees it if it gets that far
    byTenant.set(tenantId, head);
  }

  /** Append one entry now (entries this transaction recorded before it are written first, in order). */
  async append(tx: Tx, tenantId: string, input: AuditInput): Promise<AuditEntry> {
    const entries = await this.appendMany(tx, tenantId, [input]);
    return entries[entries.length - 1]!;
  }

  /**
   * Record an entry that is written just before the transaction commits, together with every other
   * entry the transaction recorded for the tenant: one chain step under one head lock, taken as late
   * as possible, so the tenant's chain is locked for two statements and the commit instead of for
   * the rest of the transaction. The entry commits exactly when the change it records commits.
   */
  async record(tx: Tx, tenantId: string, input: AuditInput): Promise<void> {
    let byTenant = this.#pending.get(tx);
    if (!byTenant) {
      byTenant = new Map();
      const queued = beforeCommit(tx, () => this.#flush(tx));
      if (!queued) {
        await this.append(tx, tenantId, input);
        return;
      }
      this.#pending.set(tx, byTenant);
    }
    const list = byTenant.get(tenantId);
    if (list) list.push(input);
    else byTenant.set(tenantId, [input]);
  }

  async #flush(tx: Tx): Promise<{ tail: Promise<unknown> } | void> {
    const byTenant = this.#pending.get(tx);
    this.#pending.delete(tx);
    if (!byTenant) return;
    const tenants = [...byTenant].filter(([, inputs]) => inputs.length);
    for (const [i, [tenantId, inputs]] of tenants.entries()) {
      const last = i === tenants.length - 1;
      const written = await this.#write(tx, tenantId, inputs, last);
      if (last && written.tail) return { tail: written.tail };
    }
  }

  /** Append several entries in order under one lock of the tenant's chain head. */
  async appendMany(tx: Tx, tenantId: string, inputs: AuditInput[]): Promise<AuditEntry[]> {
    const earlier = this.#pending.get(tx)?.get(tenantId);
    if (earlier?.length) {
      this.#pending.get(tx)!.delete(tenantId);
      inputs = [...earlier, ...inputs];
    }
    return (await this.#write(tx, tenantId, inputs, false)).entries;
  }

  /**
   * Lock the head, chain the entries, write them and the new head in one statement. With `leave`,
   * that statement is returned unawaited (`tail`), to be sent together with COMMIT.
   */
  async #write(
    tx: Tx,
    tenantId: string,
    inputs: AuditInput[],
    leave: boolean,
  ): Promise<{ entries: AuditEntry[]; tail?: Promise<unknown> }> {
    if (!inputs.length) return { entries: [] };
    const heads = this.#heads.get(tx);
    const locked = heads?.get(tenantId);
    heads?.delete(tenantId);
    let [head] = await (locked ?? lockedHead(tx, tenantId));
    if (!head) {
      await tx`insert into audit_heads (tenant_id, seq, hash) values (${tenantId}, 0, ${GENESIS_HASH})
               on conflict (tenant_id) do nothing`;
      [head] = await lockedHead(tx, tenantId);
    }
    const key = this.#chainKey(tenantId);
    const at = new Date().toISOString();
    let seq = Number(head!.seq);
    let prevHash = head!.hash;
    const entries: AuditEntry[] = inputs.map((input) => {
      const base: Omit<AuditEntry, 'hash'> = {
        tenantId,
        seq: ++seq,
        at,
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
        prevHash,
      };
      const entry: AuditEntry = { ...base, hash: entryHash(key, base) };
      prevHash = entry.hash;
      return entry;
    });
    const last = entries[entries.length - 1]!;
    const rows = entries.map((e) => ({
      tenant_id: e.tenantId,
      seq: e.seq,
      at: e.at,
      actor_type: e.actorType,
      actor_id: e.actorId,
      actor_label: e.actorLabel,
      action: e.action,
      target_type: e.targetType,
      target_id: e.targetId,
      outcome: e.outcome,
      request_id: e.requestId,
      ip: e.ip,
      details: e.details,
      prev_hash: e.prevHash,
      hash: e.hash,
    }));
    // One statement: the rows and the new head.
    const write = tx`with added as (
               insert into audit_log (tenant_id, seq, at, actor_type, actor_id, actor_label, action, target_type,
                 target_id, outcome, request_id, ip, details, prev_hash, hash)
               select tenant_id, seq, at, actor_type, actor_id, actor_label, action, target_type,
                 target_id, outcome, request_id, ip, details, prev_hash, hash
               from jsonb_to_recordset(${tx.json(rows as never)}::jsonb) as r(tenant_id uuid, seq bigint,
                 at timestamptz, actor_type text, actor_id text, actor_label text, action text, target_type text,
                 target_id text, outcome text, request_id text, ip text, details jsonb, prev_hash text, hash text)
               returning 1)
             update audit_heads set seq = ${last.seq}, hash = ${last.hash}, updated_at = now()
             where tenant_id = ${tenantId}`.execute();
    if (leave) {
      write.catch(() => {});
      const tail = write.then(() => {
        for (const e of entries) for (const l of this.#listeners) l(tenantId, e.seq);
      });
      return { entries, tail };
    }
    await write;
    for (const e of entries) for (const l of this.#listeners) l(tenantId, e.seq);
    return { entries };
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
