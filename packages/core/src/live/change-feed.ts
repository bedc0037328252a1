import type { Sql } from '@steward/db/database';
import { isUuid } from '@steward/db/database';

/** A change of state, as announced by the 0014 triggers: ids only, never content. */
export interface Change {
  tenantId: string;
  kind: 'task' | 'step' | 'approval';
  id: string;
  taskId: string;
}

export const CHANGES_CHANNEL = 'steward_changes';

type Listener = (change: Change) => void;

/** Parse a notification payload; anything malformed is dropped (undefined). */
export function parseChange(payload: string): Change | undefined {
  try {
    const c = JSON.parse(payload) as Partial<Change>;
    if (!isUuid(c.tenantId) || !isUuid(c.id) || !isUuid(c.taskId)) return undefined;
    if (c.kind !== 'task' && c.kind !== 'step' && c.kind !== 'approval') return undefined;
    return { tenantId: c.tenantId, kind: c.kind, id: c.id, taskId: c.taskId };
  } catch {
    return undefined;
  }
}

/**
 * One LISTEN connection per process, fanned out to subscribers by tenant: a subscriber only ever
 * receives the changes of the tenant it subscribed to. The connection opens with the first
 * subscriber (postgres.js re-listens by itself after a reconnect).
 */
export class ChangeFeed {
  private readonly byTenant = new Map<string, Set<Listener>>();
  private readonly everyone = new Set<Listener>();
  private listening: Promise<unknown> | undefined;

  constructor(private readonly sql: Sql) {}

  /** Start receiving one tenant's changes; resolves once the LISTEN is in place. Returns the unsubscribe. */
  async subscribe(tenantId: string, listener: Listener): Promise<() => void> {
    if (!isUuid(tenantId)) throw new TypeError('subscribe needs a tenant uuid');
    let set = this.byTenant.get(tenantId);
    if (!set) this.byTenant.set(tenantId, (set = new Set()));
    set.add(listener);
    const unsubscribe = () => {
      const s = this.byTenant.get(tenantId);
      s?.delete(listener);
      if (s && s.size === 0) this.byTenant.delete(tenantId);
    };
    try {
      this.listening ??= this.sql.listen(CHANGES_CHANNEL, (payload) => this.dispatch(payload));
      await this.listening;
    } catch (error) {
      this.listening = undefined;
      unsubscribe();
      throw error;
    }
    return unsubscribe;
  }

  /** Every tenant's changes, for server-side work (web push); resolves once listening. */
  async subscribeAll(listener: Listener): Promise<() => void> {
    this.everyone.add(listener);
    try {
      this.listening ??= this.sql.listen(CHANGES_CHANNEL, (payload) => this.dispatch(payload));
      await this.listening;
    } catch (error) {
      this.listening = undefined;
      this.everyone.delete(listener);
      throw error;
    }
    return () => this.everyone.delete(listener);
  }

  /** Number of live subscribers (metrics, tests). */
  get size(): number {
    let n = 0;
    for (const s of this.byTenant.values()) n += s.size;
    return n;
  }

  private dispatch(payload: string): void {
    const change = parseChange(payload);
    if (!change) return;
    const set = this.byTenant.get(change.tenantId);
    for (const listener of [...(set ?? []), ...this.everyone]) {
      try {
        listener(change);
      } catch {
        // one broken subscriber must not starve the others
      }
    }
  }

  async close(): Promise<void> {
    this.byTenant.clear();
    this.everyone.clear();
    await this.sql.end({ timeout: 5 }).catch(() => {});
  }
}
