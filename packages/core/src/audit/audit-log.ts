import { createHmac } from 'node:crypto';
import { afterCommit, beforeCommit, type Tx } from '@steward/db/database';
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

/** The tenant's chain head, locked until the transaction ends. */
const lockedHead = (tx: Tx, tenantId: string) =>
  tx<
    { seq: string; hash: string }[]
  >`select seq, hash from audit_heads where tenant_id = ${tenantId} for update`;

export interface AppendListener {
  (tenantId: string, seq: number): void;
}

/** An entry to chain, with the time it was staged (unset: when it is chained). */
type Timed = AuditInput & { at?: string };

/** Staged entries a sealer chains per transaction at most (the rest in the next one). */
export const SEAL_BATCH = 5000;

export interface SealResult {
  /** Entries chained. */
  sealed: number;
  /** Another transaction held the chain head (only when not waiting): try again later. */
  busy: boolean;
  /** More staged entries are left than one batch took. */
  more: boolean;
}

/**
 * A tenant's audit chain, written inside the caller's transaction. `append` chains entries at once
 * (the chain head row stays locked until the transaction ends); `record` stages them, to be chained
 * by `sealPending` after the commit (see AuditSealer), so that busy transactions never wait for each
 * other's commits on the chain head. Either way an entry commits exactly when its change commits.
 */
export class AuditLog {
  readonly #master: MasterKey;
  readonly #listeners: AppendListener[] = [];
  readonly #stageListeners: ((tenantId: string) => void)[] = [];
  /** Chain keys by tenant: an HKDF derivation per append was ~3 % of a worker's CPU in the pipeline. */
  readonly #keys = new Map<string, Buffer>();

  constructor(master: MasterKey) {
    this.#master = master;
  }

  /** Called after entries are chained (inside the chaining transaction, after its write). */
  onAppend(listener: AppendListener): void {
    this.#listeners.push(listener);
  }

  /** Called after a transaction that staged entries for the tenant has committed. */
  onStage(listener: (tenantId: string) => void): void {
    this.#stageListeners.push(listener);
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

  /** Entries recorded with `record` and not yet staged, per transaction and tenant. */
  readonly #pending = new WeakMap<Tx, Map<string, AuditInput[]>>();

  /** Append one entry now (entries this transaction recorded before it are written first, in order). */
  async append(tx: Tx, tenantId: string, input: AuditInput): Promise<AuditEntry> {
    const entries = await this.appendMany(tx, tenantId, [input]);
    return entries[entries.length - 1]!;
  }

  /**
   * Record an entry that is staged in the transaction's last statement (sent with COMMIT) and
   * chained after the commit. Takes no lock. Outside a withTenant transaction it is appended at once.
   */
  async record(tx: Tx, tenantId: string, input: AuditInput): Promise<void> {
    let byTenant = this.#pending.get(tx);
    if (!byTenant) {
      byTenant = new Map();
      const queued = beforeCommit(tx, () => this.#stage(tx));
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

  /** Insert the transaction's recorded entries into audit_pending, unawaited (pipelined with COMMIT). */
  async #stage(tx: Tx): Promise<{ tail: Promise<unknown> } | void> {
    const byTenant = this.#pending.get(tx);
    this.#pending.delete(tx);
    if (!byTenant) return;
    const now = new Date().toISOString(); // one time for the transaction's entries, as in one append
    const rows = [...byTenant]
      .flatMap(([tenantId, inputs]) => inputs.map((input) => columns(tenantId, row(input, now))))
      .map((r, ord) => ({ ord, ...r }));
    if (!rows.length) return;
    const staged =
      tx`insert into audit_pending (tenant_id, at, actor_type, actor_id, actor_label, action, target_type,
                 target_id, outcome, request_id, ip, details)
               select tenant_id, at, actor_type, actor_id, actor_label, action, target_type,
                 target_id, outcome, request_id, ip, details
               from jsonb_to_recordset(${tx.json(rows as never)}::jsonb)
                 as r(ord int, tenant_id uuid, at timestamptz, actor_type text, actor_id text, actor_label text,
                   action text, target_type text, target_id text, outcome text, request_id text, ip text,
                   details jsonb)
               order by ord`.execute();
    staged.catch(() => {}); // fails the COMMIT it is sent with, which reports it
    const tenants = [...byTenant.keys()];
    afterCommit(tx, () => {
      for (const tenantId of tenants) for (const l of this.#stageListeners) l(tenantId);
    });
    return { tail: staged };
  }

  /** Append several entries in order under one lock of the tenant's chain head. */
  async appendMany(tx: Tx, tenantId: string, inputs: AuditInput[]): Promise<AuditEntry[]> {
    const earlier = this.#pending.get(tx)?.get(tenantId);
    if (earlier?.length) {
      this.#pending.get(tx)!.delete(tenantId);
      inputs = [...earlier, ...inputs];
    }
    return this.#write(tx, tenantId, inputs);
  }

  /**
   * Chain up to SEAL_BATCH of the tenant's staged entries (committed ones, oldest first) under its
   * chain head, in the caller's transaction. With `wait` false, a head another transaction holds is
   * not waited for: the result says `busy`.
   */
  async sealPending(tx: Tx, tenantId: string, opts: { wait: boolean }): Promise<SealResult> {
    const idle = { sealed: 0, busy: false, more: false };
    let [head] = opts.wait
      ? await lockedHead(tx, tenantId)
      : await tx<{ seq: string; hash: string }[]>`
          select seq, hash from audit_heads where tenant_id = ${tenantId} for update skip locked`;
    if (!head) {
      if (!opts.wait) {
        const [held] = await tx`select 1 from audit_heads where tenant_id = ${tenantId}`;
        if (held) return { ...idle, busy: true };
      }
      head = await this.#newHead(tx, tenantId);
    }
    const staged = await tx<StagedRow[]>`
      delete from audit_pending where tenant_id = ${tenantId} and id = any(array(
        select id from audit_pending where tenant_id = ${tenantId} order by id limit ${SEAL_BATCH}))
      returning *`;
    if (!staged.length) return idle;
    staged.sort((a, b) => Number(a.id) - Number(b.id));
    await this.#write(tx, tenantId, staged.map(fromStaged), head);
    return { sealed: staged.length, busy: false, more: staged.length === SEAL_BATCH };
  }

  /** Create the tenant's chain head at the genesis hash (if another transaction has not) and lock it. */
  async #newHead(tx: Tx, tenantId: string): Promise<{ seq: string; hash: string }> {
    await tx`insert into audit_heads (tenant_id, seq, hash) values (${tenantId}, 0, ${GENESIS_HASH})
             on conflict (tenant_id) do nothing`;
    const [head] = await lockedHead(tx, tenantId);
    return head!;
  }

  /** Lock the head (unless the caller holds it), chain the entries, write them and the new head. */
  async #write(
    tx: Tx,
    tenantId: string,
    inputs: Timed[],
    locked?: { seq: string; hash: string },
  ): Promise<AuditEntry[]> {
    if (!inputs.length) return [];
    const head = locked ?? (await lockedHead(tx, tenantId))[0] ?? (await this.#newHead(tx, tenantId));
    const key = this.#chainKey(tenantId);
    const now = new Date().toISOString();
    let seq = Number(head.seq);
    let prevHash = head.hash;
    const entries: AuditEntry[] = inputs.map((input) => {
      const base: Omit<AuditEntry, 'hash'> = {
        tenantId,
        seq: ++seq,
        ...row(input, now),
        prevHash,
      };
      const entry: AuditEntry = { ...base, hash: entryHash(key, base) };
      prevHash = entry.hash;
      return entry;
    });
    const last = entries[entries.length - 1]!;
    const rows = entries.map((e) => ({
      ...columns(tenantId, e),
      seq: e.seq,
      prev_hash: e.prevHash,
      hash: e.hash,
    }));
    // One statement: the rows and the new head.
    await tx`with added as (
               insert into audit_log (tenant_id, seq, at, actor_type, actor_id, actor_label, action, target_type,
                 target_id, outcome, request_id, ip, details, prev_hash, hash)
               select tenant_id, seq, at, actor_type, actor_id, actor_label, action, target_type,
                 target_id, outcome, request_id, ip, details, prev_hash, hash
               from jsonb_to_recordset(${tx.json(rows as never)}::jsonb) as r(tenant_id uuid, seq bigint,
                 at timestamptz, actor_type text, actor_id text, actor_label text, action text, target_type text,
                 target_id text, outcome text, request_id text, ip text, details jsonb, prev_hash text, hash text)
               returning 1)
             update audit_heads set seq = ${last.seq}, hash = ${last.hash}, updated_at = now()
             where tenant_id = ${tenantId}`;
    for (const e of entries) for (const l of this.#listeners) l(tenantId, e.seq);
    return entries;
  }
}

/** An entry's fields as chained (and staged): defaults filled in, details in canonical form. */
type Fields = Omit<AuditEntry, 'tenantId' | 'seq' | 'prevHash' | 'hash'>;

/** The columns audit_log and audit_pending share, named as in the tables. */
function columns(tenantId: string, f: Fields) {
  return {
    tenant_id: tenantId,
    at: f.at,
    actor_type: f.actorType,
    actor_id: f.actorId,
    actor_label: f.actorLabel,
    action: f.action,
    target_type: f.targetType,
    target_id: f.targetId,
    outcome: f.outcome,
    request_id: f.requestId,
    ip: f.ip,
    details: f.details,
  };
}

type StagedRow = Omit<AuditRow, 'seq' | 'prev_hash' | 'hash'> & { id: string };

function fromStaged(r: StagedRow): Timed {
  return {
    at: r.at.toISOString(),
    actorType: r.actor_type as ActorType,
    actorId: r.actor_id,
    actorLabel: r.actor_label,
    action: r.action,
    targetType: r.target_type,
    targetId: r.target_id,
    outcome: r.outcome as Outcome,
    requestId: r.request_id,
    ip: r.ip,
    details: r.details,
  };
}

function row(input: Timed, now = new Date().toISOString()): Fields {
  return {
    at: input.at ?? now,
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
  };
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
