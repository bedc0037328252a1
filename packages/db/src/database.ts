import postgres from 'postgres';

export type Sql = postgres.Sql;
/** A query handle bound to one transaction whose tenant (or system) context is already set. */
export type Tx = postgres.ReservedSql;
/** What the pool and a transaction have in common: for a statement that may run on either. */
export type Queryable = postgres.ISql;

export interface PoolStats {
  max: number;
  inUse: number;
  waiting: number;
}

export interface TransactionContext {
  tenantId?: string | undefined;
  userId?: string | undefined;
  system?: boolean;
}

export interface Database {
  /** Run `fn` in a transaction scoped to one tenant: RLS shows and accepts only that tenant's rows. */
  withTenant<T>(tenantId: string, fn: (tx: Tx) => Promise<T>, opts?: { userId?: string }): Promise<T>;
  /**
   * Run ONE statement scoped to one tenant, like withTenant, in a READ ONLY transaction (a write is
   * refused by PostgreSQL) and in a single round trip:
   * BEGIN, the context, the statement and COMMIT are sent together (withTenant waits for `fn` before
   * it sends COMMIT). `query` must build the statement and return it without awaiting it; a failed
   * statement aborts the transaction, and its COMMIT then ends it as a rollback.
   */
  readTenant<T extends readonly postgres.MaybeRow[]>(
    tenantId: string,
    query: (tx: Tx) => postgres.PendingQuery<T>,
    opts?: { userId?: string },
  ): Promise<postgres.RowList<T>>;
  /**
   * Run `fn` in a transaction that may READ the identity tables across tenants (login by email,
   * API key lookup). Grep for withSystemAccess to review every use.
   */
  withSystemAccess<T>(fn: (tx: Tx) => Promise<T>, opts?: { tenantId?: string; userId?: string }): Promise<T>;
  /**
   * After each committed withTenant/withSystemAccess transaction, call `listener` with the value the
   * transaction left in the transaction-local setting `setting` (when not empty), before the
   * transaction's promise resolves. The setting is read in the same round trip as COMMIT. One
   * watch per database (the page cache's app.changed_tenants, see migration 0023); readTenant is
   * read-only and is not watched.
   */
  watchCommits(setting: string, listener: (value: string) => void): void;
  /** True when the runtime connection answers. */
  ping(): Promise<boolean>;
  stats(): PoolStats;
  close(): Promise<void>;
}

/** Work queued by beforeCommit, per open transaction handle (see transaction below). */
const commitHooks = new WeakMap<object, CommitHook[]>();

/** What a hook may leave in flight: its last statement, sent together with COMMIT (one round trip). */
export type CommitHook = () => Promise<{ tail: Promise<unknown> } | void>;

/**
 * Run `fn` inside `tx` just before it commits (after the caller's work, so locks it takes are held
 * only for the last statements of the transaction). A hook may return its last statement unawaited
 * as `tail`: it is pipelined with COMMIT, and its failure fails (and rolls back) the transaction.
 * False when `tx` is not a transaction opened by
 * withTenant/withSystemAccess: the caller must then do the work right away.
 */
export function beforeCommit(tx: Tx, fn: CommitHook): boolean {
  const hooks = commitHooks.get(tx);
  if (!hooks) return false;
  hooks.push(fn);
  return true;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

export interface DatabaseOptions {
  url: string;
  max?: number;
  /** application_name shown in pg_stat_activity */
  applicationName?: string;
  /**
   * Run on this pool instead of opening one from `url` (tests use it to look at a pooled
   * connection between two transactions). Closing the database ends it.
   */
  pool?: Sql;
}

export interface ConnectOptions {
  max?: number;
  applicationName?: string;
  /**
   * Seconds a query or transaction may wait for a connection before it fails with QUEUE_TIMEOUT
   * (the API answers 503); none by default.
   */
  queueTimeout?: number;
}

export function connect(url: string, opts: ConnectOptions = {}): Sql {
  return postgres(url, {
    max: opts.max ?? 10,
    idle_timeout: 30,
    connect_timeout: 10,
    queue_timeout: opts.queueTimeout ?? 0,
    // While PostgreSQL cannot be reached, try again after 15-30 ms, 45-90 ms, 0.14-0.27 s,
    // 0.4-0.8 s, then every 1-2 s (postgres.js's own curve goes on to 10-20 s): a restarted
    // database is back in use within two seconds.
    backoff: (retries: number) => (0.5 + Math.random() / 2) * Math.min(3 ** retries / 100, 2),
    // postgres.js 4 sends a Date, boolean, Buffer or bigint untyped and lets the server decide; v3
    // typed them from the JavaScript value, and Steward's queries are written for that.
    infer: true,
    onnotice: () => {},
    connection: {
      application_name: opts.applicationName ?? 'steward',
      // postgres.js prepares every statement; after five runs PostgreSQL may keep one generic plan
      // per statement (and per foreign-key check) for the life of the connection. One made while a
      // table was empty or tiny (a fresh installation, the first minute of a new table) is a
      // sequential scan, and stays one while the table grows, until an ANALYZE of that table
      // invalidates it: single-row updates and FK checks then cost milliseconds, growing with the
      // table (measured: 2-3 ms instead of 0.1-0.2 ms per step update, and an intake whose commit
      // cost grew run after run). Planning every execution for its parameters and the table's
      // current size costs microseconds and cannot go stale.
      plan_cache_mode: 'force_custom_plan',
    },
  });
}

/**
 * How long a transaction of the runtime database waits for a connection: then it fails with
 * QUEUE_TIMEOUT and the API answers 503 (while PostgreSQL refuses connections, say, postgres.js
 * keeps trying for connect_timeout before it gives up on what waits).
 */
const QUEUE_TIMEOUT_SECONDS = 5;

/** The runtime database: every query goes through withTenant or withSystemAccess. */
export function createDatabase(options: DatabaseOptions): Database {
  const max = options.max ?? 10;
  const sql =
    options.pool ??
    connect(options.url, {
      max,
      applicationName: options.applicationName ?? 'steward-app',
      queueTimeout: QUEUE_TIMEOUT_SECONDS,
    });
  let inUse = 0;
  let waiting = 0;
  let watch: { setting: string; listener: (value: string) => void } | undefined;

  async function transaction<T>(ctx: TransactionContext, fn: (tx: Tx) => Promise<T>): Promise<T> {
    if (ctx.tenantId !== undefined && !isUuid(ctx.tenantId)) throw new TypeError('tenantId must be a uuid');
    if (ctx.userId !== undefined && !isUuid(ctx.userId)) throw new TypeError('userId must be a uuid');
    waiting++;
    let conn: postgres.ReservedSql;
    try {
      conn = await sql.reserve();
    } finally {
      waiting--;
    }
    inUse++;
    try {
      // BEGIN and the context are pipelined with the first query of `fn`: one round trip, not three.
      // set_config(..., true) is transaction-local, so nothing survives on the pooled connection.
      const setup = [
        conn.unsafe('begin'),
        conn`select set_config('app.tenant_id', ${ctx.tenantId ?? ''}, true),
                    set_config('app.user_id', ${ctx.userId ?? ''}, true),
                    set_config('app.system', ${ctx.system ? 'on' : ''}, true)`,
      ];
      for (const p of setup) p.catch(() => {});
      commitHooks.set(conn, []);
      try {
        const result = await fn(conn);
        await Promise.all(setup);
        const hooks = commitHooks.get(conn)!;
        const tails: Promise<unknown>[] = [];
        for (let i = 0; i < hooks.length; i++) {
          const left = await hooks[i]!();
          if (left) tails.push(left.tail);
        }
        const w = watch;
        // Sent after the tails (they may write too), in the same round trip as COMMIT.
        const watched = w && conn<{ v: string | null }[]>`select current_setting(${w.setting}, true) as v`;
        if (watched) tails.push(watched);
        if (tails.length) {
          // A failed statement before it turns COMMIT into a rollback: report that statement's error.
          const settled = await Promise.allSettled([...tails, conn.unsafe('commit')]);
          const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
          if (failed) throw failed.reason;
        } else {
          await conn.unsafe('commit');
        }
        if (watched) {
          const value = (await watched)[0]?.v;
          if (value) w.listener(value);
        }
        return result;
      } catch (error) {
        await conn.unsafe('rollback').catch(() => {});
        throw error;
      }
    } finally {
      commitHooks.delete(conn);
      inUse--;
      conn.release();
    }
  }

  async function readOne<T extends readonly postgres.MaybeRow[]>(
    ctx: TransactionContext,
    query: (tx: Tx) => postgres.PendingQuery<T>,
  ): Promise<postgres.RowList<T>> {
    if (ctx.userId !== undefined && !isUuid(ctx.userId)) throw new TypeError('userId must be a uuid');
    waiting++;
    let conn: postgres.ReservedSql;
    try {
      conn = await sql.reserve();
    } finally {
      waiting--;
    }
    inUse++;
    try {
      // One pipeline, one round trip. If any statement fails, PostgreSQL aborts the transaction and
      // answers the COMMIT with a rollback, so nothing can commit; the explicit ROLLBACK after an
      // error only makes sure no transaction is left open on the pooled connection.
      const sent = [
        conn.unsafe('begin read only'),
        conn`select set_config('app.tenant_id', ${ctx.tenantId ?? ''}, true),
                    set_config('app.user_id', ${ctx.userId ?? ''}, true),
                    set_config('app.system', '', true)`,
      ];
      const result = query(conn);
      const commit = conn.unsafe('commit');
      for (const p of [...sent, result, commit]) p.catch(() => {});
      try {
        await Promise.all(sent);
        const rows = await result;
        await commit;
        return rows;
      } catch (error) {
        await conn.unsafe('rollback').catch(() => {});
        throw error;
      }
    } finally {
      inUse--;
      conn.release();
    }
  }

  return {
    withTenant(tenantId, fn, opts) {
      if (!isUuid(tenantId)) return Promise.reject(new TypeError('withTenant needs a tenant uuid'));
      return transaction({ tenantId, userId: opts?.userId }, fn);
    },
    readTenant(tenantId, query, opts) {
      if (!isUuid(tenantId)) return Promise.reject(new TypeError('readTenant needs a tenant uuid'));
      return readOne({ tenantId, userId: opts?.userId }, query);
    },
    withSystemAccess(fn, opts) {
      return transaction({ tenantId: opts?.tenantId, userId: opts?.userId, system: true }, fn);
    },
    watchCommits(setting, listener) {
      if (watch) throw new Error('watchCommits: this database is already watched');
      watch = { setting, listener };
    },
    async ping() {
      try {
        await sql`select 1`;
        return true;
      } catch {
        return false;
      }
    },
    stats: () => ({ max, inUse, waiting }),
    close: () => sql.end({ timeout: 5 }),
  };
}
