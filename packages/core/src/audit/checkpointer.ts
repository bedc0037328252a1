import type { Database } from '@steward/db/database';
import type { CheckpointStore } from './checkpoint-store.ts';

export interface CheckpointerOptions {
  intervalMs?: number;
  everyEntries?: number;
  onError?: (error: unknown) => void;
}

/**
 * Writes a signed checkpoint of a tenant's chain head every minute while it changes, and at once
 * after every `everyEntries` appends. It reads the committed head, never an uncommitted one.
 */
export class Checkpointer {
  readonly #db: Database;
  readonly #store: CheckpointStore;
  readonly #intervalMs: number;
  readonly #everyEntries: number;
  readonly #onError: (error: unknown) => void;
  readonly #pending = new Map<string, number>();
  readonly #written = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();

  constructor(db: Database, store: CheckpointStore, opts: CheckpointerOptions = {}) {
    this.#db = db;
    this.#store = store;
    this.#intervalMs = opts.intervalMs ?? 60_000;
    this.#everyEntries = opts.everyEntries ?? 1000;
    this.#onError = opts.onError ?? (() => {});
  }

  /** Called for every append (see AuditLog.onAppend). */
  noteAppend = (tenantId: string): void => {
    const n = (this.#pending.get(tenantId) ?? 0) + 1;
    this.#pending.set(tenantId, n);
    if (n >= this.#everyEntries) {
      this.#pending.set(tenantId, 0);
      setTimeout(() => void this.flush([tenantId]), 50).unref();
    }
  };

  start(): void {
    this.#timer = setInterval(() => void this.flush([...this.#pending.keys()]), this.#intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.flush([...this.#pending.keys()]);
  }

  flush(tenantIds: string[]): Promise<void> {
    this.#flushing = this.#flushing.then(async () => {
      for (const tenantId of tenantIds) {
        try {
          const head = await this.#db.withTenant(tenantId, async (tx) => {
            const [row] = await tx<{ seq: string; hash: string }[]>`
              select seq, hash from audit_heads where tenant_id = ${tenantId}`;
            return row;
          });
          if (!head) continue;
          const seq = Number(head.seq);
          if (seq > (this.#written.get(tenantId) ?? 0)) {
            await this.#store.write(tenantId, seq, head.hash);
            this.#written.set(tenantId, seq);
          }
          this.#pending.delete(tenantId);
        } catch (error) {
          this.#onError(error);
        }
      }
    });
    return this.#flushing;
  }
}
