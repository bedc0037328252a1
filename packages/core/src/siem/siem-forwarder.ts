import { toEntry, type AuditEntry, type AuditRow } from '../audit/audit-log.ts';
import type { Tx } from '@steward/db/database';
import type { Resources } from '../resources.ts';
import type { ResolvedDestination } from './siem-destination.ts';
import { createSender, type Sender, type SenderOptions } from './siem-senders.ts';

/**
 * Forwards the audit chains in scope of one destination, oldest first, one bounded batch at a time:
 * read the entries after the destination's cursor, send them, and move the cursor only once the
 * destination acknowledged them. While the destination is down the same batch is retried with
 * exponential backoff; nothing is skipped, and at most one batch is in memory.
 *
 * Delivery is at least once: a batch acknowledged by the destination but whose cursor update was
 * lost (crash, lost lease) is sent again; receivers drop duplicates by (tenant, seq).
 */

export interface ForwarderOptions extends SenderOptions {
  /** Entries per batch unless the destination sets batchSize. */
  batchSize: number;
  /** How often to look for new entries when idle (appends in this process wake it sooner). */
  pollMs: number;
  /** Backoff after a failure: from minBackoffMs doubling to maxBackoffMs. */
  minBackoffMs: number;
  maxBackoffMs: number;
  log?: ((level: 'info' | 'warn' | 'error', message: string) => void) | undefined;
}

export const DEFAULT_FORWARDER_OPTIONS: ForwarderOptions = {
  batchSize: 100,
  pollMs: 2000,
  minBackoffMs: 500,
  maxBackoffMs: 60_000,
  settleMs: 200,
  timeoutMs: 30_000,
};

export interface ForwarderHandle {
  wake(): void;
  stop(): Promise<void>;
}

export class GapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GapError';
  }
}

/** Every tenant (and the platform chain) for an installation-wide destination, else the one tenant. */
async function tenantsInScope(res: Resources, dest: ResolvedDestination): Promise<string[]> {
  if (dest.tenantId) return [dest.tenantId];
  const rows = await res.db.withSystemAccess(
    (tx) => tx<{ id: string }[]>`select id from tenants order by created_at, id`,
  );
  return rows.map((r) => r.id);
}

/** Read the next batch after the cursor (inside the tenant's own transaction). */
async function nextBatch(
  res: Resources,
  dest: ResolvedDestination,
  tenantId: string,
  limit: number,
): Promise<{ after: number; entries: AuditEntry[] }> {
  return res.db.withTenant(tenantId, async (tx) => {
    const [cursor] = await tx<{ last_seq: string }[]>`
      select last_seq from siem_cursors where tenant_id = ${tenantId} and destination = ${dest.key}`;
    const after = Number(cursor?.last_seq ?? 0);
    const rows = await tx<AuditRow[]>`
      select * from audit_log where tenant_id = ${tenantId} and seq > ${after} order by seq limit ${limit}`;
    return { after, entries: rows.map(toEntry) };
  });
}

/**
 * Rows of a tenant destination's cursor are written only while the destination exists (a
 * destination deleted mid-batch leaves no cursor behind).
 */
const exists = (tx: Tx, dest: ResolvedDestination, tenantId: string) =>
  dest.tenantId
    ? tx`where exists (select 1 from siem_destinations where tenant_id = ${tenantId}
           and 'tenant:' || id::text = ${dest.key})`
    : tx``;

/** Move the cursor from `after` to the last entry; false when another process moved it meanwhile. */
async function advance(
  res: Resources,
  dest: ResolvedDestination,
  tenantId: string,
  after: number,
  entries: AuditEntry[],
): Promise<boolean> {
  const last = entries.at(-1)!;
  const rows = await res.db.withTenant(
    tenantId,
    (tx) => tx`
      insert into siem_cursors as c (tenant_id, destination, last_seq, last_hash, forwarded)
      select ${tenantId}::uuid, ${dest.key}, ${last.seq}::bigint, ${last.hash}, ${entries.length}::bigint
      ${exists(tx, dest, tenantId)}
      on conflict (tenant_id, destination) do update
        set last_seq = excluded.last_seq, last_hash = excluded.last_hash,
            forwarded = c.forwarded + excluded.forwarded, attempts = 0, last_error = null,
            last_error_at = null, updated_at = now()
        where c.last_seq = ${after}
      returning last_seq`,
  );
  return rows.length === 1;
}

async function noteFailure(res: Resources, dest: ResolvedDestination, tenantId: string, message: string) {
  await res.db
    .withTenant(
      tenantId,
      (tx) => tx`
        insert into siem_cursors as c (tenant_id, destination, attempts, last_error, last_error_at)
        select ${tenantId}::uuid, ${dest.key}, 1, ${message.slice(0, 500)}, now()
        ${exists(tx, dest, tenantId)}
        on conflict (tenant_id, destination) do update
          set attempts = c.attempts + 1, last_error = excluded.last_error, last_error_at = now(),
              updated_at = now()`,
    )
    .catch(() => {});
}

/** One forwarding pass over a tenant: at most one batch. Returns how many entries were delivered. */
export async function forwardOnce(
  res: Resources,
  dest: ResolvedDestination,
  sender: Sender,
  tenantId: string,
  batchSize: number,
): Promise<number> {
  const { after, entries } = await nextBatch(res, dest, tenantId, batchSize);
  if (!entries.length) return 0;
  // The chain has no holes (seq is head + 1 under the head's row lock); refuse to skip if it had.
  entries.forEach((e, i) => {
    if (e.seq !== after + 1 + i) {
      throw new GapError(`audit seq ${after + 1 + i} of tenant ${tenantId} is missing; not skipping it`);
    }
  });
  await sender.send(tenantId, entries);
  await advance(res, dest, tenantId, after, entries);
  return entries.length;
}

/** Run the forwarding loop of one destination until stop(). */
export function startForwarder(
  res: Resources,
  dest: ResolvedDestination,
  options: Partial<ForwarderOptions> = {},
): ForwarderHandle {
  const opts = { ...DEFAULT_FORWARDER_OPTIONS, ...options };
  const batchSize = dest.config.batchSize ?? opts.batchSize;
  const sender = createSender(dest, opts);
  let stopped = false;
  let wakeUp: (() => void) | undefined;
  let interrupt: (() => void) | undefined;
  let backoff = 0;
  /** Sleep; stop() ends any pause, an append (wake) only an idle one, not a backoff. */
  const pause = (ms: number, wakeable: boolean) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeUp = interrupt = undefined;
        resolve();
      }
      interrupt = done;
      if (wakeable) wakeUp = done;
    });

  const loop = (async () => {
    while (!stopped) {
      let delivered = 0;
      let failed = false;
      try {
        for (const tenantId of await tenantsInScope(res, dest)) {
          if (stopped) break;
          try {
            delivered += await forwardOnce(res, dest, sender, tenantId, batchSize);
          } catch (error) {
            failed = true;
            const message = (error as Error).message;
            opts.log?.('warn', `SIEM destination ${dest.name}: ${message}; retrying`);
            await noteFailure(res, dest, tenantId, message);
            break;
          }
        }
      } catch (error) {
        failed = true;
        opts.log?.('warn', `SIEM destination ${dest.name}: ${(error as Error).message}`);
      }
      if (stopped) break;
      if (failed) {
        backoff = backoff ? Math.min(opts.maxBackoffMs, backoff * 2) : opts.minBackoffMs;
        // Jitter keeps many forwarders from retrying in step.
        await pause(backoff * (0.75 + Math.random() * 0.5), false);
      } else {
        backoff = 0;
        if (!delivered) await pause(opts.pollMs, true);
      }
    }
  })();

  return {
    wake: () => wakeUp?.(),
    async stop() {
      stopped = true;
      interrupt?.();
      await loop;
      sender.close();
    },
  };
}
