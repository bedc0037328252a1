import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Database } from '@steward/db/database';

/**
 * Leases in PostgreSQL for leader election: at most one holder per name at a time, with an expiry
 * so a process that dies (kill -9) loses its leases after `ttl`. Every time is the database's
 * `now()`, so clocks of different machines never disagree about who holds a lease.
 *
 * The `leases` table is not tenant data: it is reachable only under system access.
 */

/**
 * Which process table a pid belongs to: the kernel boot and the PID namespace (a container has its
 * own). Undefined where it cannot be told (then no lease is ever taken early).
 */
function processTable(): string | undefined {
  try {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const ns = readlinkSync('/proc/self/ns/pid');
    return createHash('sha256').update(`${boot}/${ns}`).digest('hex').slice(0, 12);
  } catch {
    return undefined;
  }
}

const HOST = hostname().replace(/:/g, '_').slice(0, 100);

/** A holder name for a process: `host:process-table:pid:random` (readable by operators, unique). */
export function holderIdFor(pid: number): string {
  return `${HOST}:${processTable() ?? 'unknown'}:${pid}:${randomBytes(4).toString('hex')}`;
}

/** A holder name that identifies this process and is unique. */
export function processHolderId(): string {
  return holderIdFor(process.pid);
}

/**
 * True when `holder` is a process of this machine's own process table that no longer exists (it was
 * killed without releasing its leases): its leases may be taken without waiting for them to expire.
 * Anything uncertain (another host, another container, a live or reused pid) is false.
 */
export function isDeadLocalHolder(holder: string): boolean {
  const parts = holder.split(':');
  if (parts.length !== 4) return false;
  const [host, table, pidText] = parts as [string, string, string, string];
  const mine = processTable();
  if (!mine || host !== HOST || table !== mine) return false;
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

const seconds = (ttlMs: number) => Math.max(0.001, ttlMs / 1000);

/**
 * Take the lease `name` for `ttlMs` when it is free, expired, or already ours (then it is renewed).
 * True when `holder` holds it afterwards.
 */
export async function acquireLease(
  db: Database,
  name: string,
  holder: string,
  ttlMs: number,
): Promise<boolean> {
  const rows = await db.withSystemAccess(
    (tx) => tx<{ holder: string }[]>`
      insert into leases as l (name, holder, expires_at)
      values (${name}, ${holder}, now() + make_interval(secs => ${seconds(ttlMs)}))
      on conflict (name) do update
        set holder = excluded.holder,
            expires_at = excluded.expires_at,
            acquired_at = case when l.holder = excluded.holder then l.acquired_at else now() end,
            renewed_at = now()
        where l.holder = excluded.holder or l.expires_at <= now()
      returning holder`,
  );
  return rows.length === 1 && rows[0]!.holder === holder;
}

/** Take a lease from `from` (a dead holder), only if `from` still holds it. */
export async function takeLeaseFrom(
  db: Database,
  name: string,
  holder: string,
  from: string,
  ttlMs: number,
): Promise<boolean> {
  const rows = await db.withSystemAccess(
    (tx) => tx`
      update leases set holder = ${holder}, expires_at = now() + make_interval(secs => ${seconds(ttlMs)}),
        acquired_at = now(), renewed_at = now()
      where name = ${name} and holder = ${from}
      returning name`,
  );
  return rows.length === 1;
}

/** Extend a lease we hold and that has not expired. False when it was lost (expired or taken). */
export async function renewLease(
  db: Database,
  name: string,
  holder: string,
  ttlMs: number,
): Promise<boolean> {
  const rows = await db.withSystemAccess(
    (tx) => tx`
      update leases set expires_at = now() + make_interval(secs => ${seconds(ttlMs)}), renewed_at = now()
      where name = ${name} and holder = ${holder} and expires_at > now()
      returning name`,
  );
  return rows.length === 1;
}

/** Give a lease up (on shutdown), so another process can take it at once. */
export async function releaseLease(db: Database, name: string, holder: string): Promise<boolean> {
  const rows = await db.withSystemAccess(
    (tx) => tx`delete from leases where name = ${name} and holder = ${holder} returning name`,
  );
  return rows.length === 1;
}

/** The current holder of a lease that has not expired. */
export async function leaseHolder(db: Database, name: string): Promise<string | null> {
  const [row] = await db.withSystemAccess(
    (tx) => tx<{ holder: string }[]>`select holder from leases where name = ${name} and expires_at > now()`,
  );
  return row?.holder ?? null;
}

export interface LeadershipOptions {
  db: Database;
  /** The lease name, e.g. 'watch:folder' or 'scheduler'. */
  name: string;
  holder?: string;
  /** Lease lifetime; it is renewed every ttl/3. */
  ttlMs: number;
  /** Runs when this process becomes the leader; returns how to stop the work. */
  lead: () => Promise<() => Promise<void>>;
  log?: (level: 'info' | 'warn' | 'error', message: string) => void;
}

/**
 * Run `lead()` only while this process holds the lease: try to take it every ttl/3, renew it on the
 * same beat, stop the work as soon as a renewal fails, and release it on stop().
 */
export class Leadership {
  readonly holder: string;
  #opts: LeadershipOptions;
  #timer: NodeJS.Timeout | undefined;
  #stopWork: (() => Promise<void>) | undefined;
  #leading = false;
  #stopped = false;
  #tick: Promise<void> = Promise.resolve();

  constructor(opts: LeadershipOptions) {
    this.#opts = opts;
    this.holder = opts.holder ?? processHolderId();
  }

  get isLeader(): boolean {
    return this.#leading;
  }

  start(): void {
    this.#stopped = false;
    this.#schedule(0);
  }

  #schedule(delay: number) {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#tick = this.#beat().finally(() =>
        this.#schedule(Math.max(100, Math.floor(this.#opts.ttlMs / 3))),
      );
    }, delay);
    this.#timer.unref?.();
  }

  async #beat(): Promise<void> {
    const { db, name, ttlMs, log } = this.#opts;
    try {
      if (this.#leading) {
        if (await renewLease(db, name, this.holder, ttlMs)) return;
        log?.('warn', `lost the lease ${name}; stopping its work`);
        await this.#abdicate();
        return;
      }
      if (!(await acquireLease(db, name, this.holder, ttlMs))) {
        // A holder on this machine that was killed: no need to wait for its lease to expire.
        const current = await leaseHolder(db, name);
        if (!current || !isDeadLocalHolder(current)) return;
        if (!(await takeLeaseFrom(db, name, this.holder, current, ttlMs))) return;
        log?.('info', `the holder of ${name} is gone; taking over`);
      }
      if (this.#stopped) {
        await releaseLease(db, name, this.holder).catch(() => {});
        return;
      }
      this.#leading = true;
      log?.('info', `took the lease ${name}`);
      try {
        this.#stopWork = await this.#opts.lead();
      } catch (error) {
        log?.('error', `could not start the work of ${name}: ${(error as Error).message}`);
        this.#leading = false;
        await releaseLease(db, name, this.holder).catch(() => {});
      }
    } catch (error) {
      // The database is unreachable: if we cannot renew, we must assume we lost the lease.
      log?.('warn', `lease ${name}: ${(error as Error).message}`);
      if (this.#leading) await this.#abdicate();
    }
  }

  async #abdicate(): Promise<void> {
    this.#leading = false;
    const stop = this.#stopWork;
    this.#stopWork = undefined;
    await stop?.().catch((e: unknown) =>
      this.#opts.log?.('error', `stopping failed: ${(e as Error).message}`),
    );
  }

  /** Stop the work (if leading) and release the lease. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#tick.catch(() => {});
    if (this.#leading) {
      await this.#abdicate();
      await releaseLease(this.#opts.db, this.#opts.name, this.holder).catch(() => {});
    }
  }
}
