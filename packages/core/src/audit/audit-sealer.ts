import type { Database } from '@steward/db/database';
import type { AuditLog } from './audit-log.ts';

export interface AuditSealerOptions {
  /** Wait this long after a commit staged entries before sealing (more entries per seal). */
  delayMs?: number;
  /** How often to look for entries staged by any process and not sealed (a process that died). */
  sweepMs?: number;
  onError?: (error: unknown) => void;
}

/**
 * Chains the entries `AuditLog.record` staged (audit_pending) into each tenant's audit chain, in
 * batches, shortly after the transactions that staged them commit (`kick`, wired to
 * `AuditLog.onStage`). Every process runs one; a seal that finds the tenant's chain head held by
 * another (a seal of another process, or an `append`) tries again a moment later instead of waiting.
 * `seal` is for readers: it waits, so that everything committed before it is in the chain.
 */
export class AuditSealer {
  readonly #db: Database;
  readonly #audit: AuditLog;
  readonly #delayMs: number;
  readonly #sweepMs: number;
  readonly #onError: (error: unknown) => void;
  readonly #dirty = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #sweep: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(db: Database, audit: AuditLog, opts: AuditSealerOptions = {}) {
    this.#db = db;
    this.#audit = audit;
    this.#delayMs = opts.delayMs ?? 5;
    this.#sweepMs = opts.sweepMs ?? 2000;
    this.#onError = opts.onError ?? (() => {});
  }

  /** The tenant has newly staged entries: seal them soon. */
  kick = (tenantId: string): void => {
    this.#dirty.add(tenantId);
    this.#schedule();
  };

  /** Seal everything the tenant has staged and committed so far, waiting for its chain head if held. */
  async seal(tenantId: string): Promise<number> {
    let sealed = 0;
    for (;;) {
      const r = await this.#db.withTenant(tenantId, (tx) =>
        this.#audit.sealPending(tx, tenantId, { wait: true }),
      );
      sealed += r.sealed;
      if (!r.more) return sealed;
    }
  }

  /** Start the sweep for entries left behind (by a process that died between commit and seal). */
  start(): void {
    this.#sweep = setInterval(() => void this.sweep(), this.#sweepMs);
    this.#sweep.unref();
  }

  /** Kick every tenant with staged entries. */
  async sweep(): Promise<void> {
    try {
      const rows = await this.#db.withSystemAccess(
        (tx) => tx<{ tenant_id: string }[]>`select distinct tenant_id from audit_pending`,
      );
      for (const r of rows) this.kick(r.tenant_id);
    } catch (error) {
      this.#onError(error);
    }
  }

  /** Stop the timers and seal what this process staged. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#sweep) clearInterval(this.#sweep);
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
    const left = [...this.#dirty];
    this.#dirty.clear();
    for (const tenantId of left) await this.seal(tenantId).catch(this.#onError);
  }

  #schedule(): void {
    if (this.#timer || this.#running || this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#running = this.#run().finally(() => {
        this.#running = undefined;
        if (this.#dirty.size) this.#schedule();
      });
    }, this.#delayMs);
    this.#timer.unref();
  }

  async #run(): Promise<void> {
    const tenants = [...this.#dirty];
    this.#dirty.clear();
    for (const tenantId of tenants) {
      try {
        const r = await this.#db.withTenant(tenantId, (tx) =>
          this.#audit.sealPending(tx, tenantId, { wait: false }),
        );
        if (r.busy || r.more) this.#dirty.add(tenantId);
      } catch (error) {
        // Not retried here (a database that is down would be hammered): the sweep finds the entries.
        this.#onError(error);
      }
    }
  }
}
