import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { PLATFORM_TENANT_ID } from '../audit/audit-log.ts';
import type { Resources } from '../resources.ts';
import { ensureWeeklyBriefing } from './briefing.ts';
import { processDecisionFiles } from './vault-decisions.ts';
import { vaultDir } from './vault-files.ts';
import type { VaultProblem } from './vault-render.ts';
import { syncTenantVault, type VaultLimits, type WrittenFiles } from './vault-sync.ts';

export interface VaultSyncerOptions {
  /** How often tenants are checked for changes (default 1 s)... */
  intervalMs?: number;
  /**
   * ...but never sooner than this many times the last pass took (default 4): under load a pass
   * re-renders up to the snapshot limits, and back to back it took ~18 % of a worker's CPU in the
   * pipeline benchmark. The mirror stays eventually consistent, only later; moved notes still start
   * a pass at once.
   */
  busyFactor?: number;
  /** Every tenant is rewritten and its Approved/ and Rejected/ folders scanned this often anyway. */
  fullSyncMs?: number;
  /** Watch Approved/ and Rejected/ for moved notes (default true)... */
  watch?: boolean;
  /** ...and scan them this often anyway, for file systems that send no events (default 5 s). */
  scanMs?: number;
  /** Make sure each tenant's weekly briefing job is scheduled (default true). */
  scheduleBriefings?: boolean;
  limits?: VaultLimits;
  log?: (level: 'info' | 'warn' | 'error', message: string) => void;
}

interface TenantState {
  slug: string;
  fingerprint: string | null;
  written: WrittenFiles;
  problems: VaultProblem[];
  ignore: Map<string, number>;
  lastFull: number;
  lastScan: number;
  briefingScheduled: boolean;
}

/**
 * Keeps every tenant's vault a mirror of the database: a full sync at start, then, every second,
 * a sync of the tenants whose tasks, steps, approvals or audit chain changed since the last one.
 * Notes people move into Approved/ or Rejected/ are decided first (watched with chokidar, and
 * scanned on every full pass in case a file system sends no events).
 *
 * Run it in one process only (the holder of the `vault` lease): two syncers would race on files.
 */
export class VaultSyncer {
  readonly #res: Resources;
  readonly #opts: Required<Omit<VaultSyncerOptions, 'limits' | 'log'>> &
    Pick<VaultSyncerOptions, 'limits' | 'log'>;
  readonly #tenants = new Map<string, TenantState>();
  readonly #dirty = new Set<string>();
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  /** Passes run one after another, never two at once (they would decide the same note twice). */
  #chain: Promise<void> = Promise.resolve();
  #stopped = true;

  constructor(res: Resources, opts: VaultSyncerOptions = {}) {
    this.#res = res;
    this.#opts = {
      intervalMs: opts.intervalMs ?? 1000,
      busyFactor: opts.busyFactor ?? 4,
      fullSyncMs: opts.fullSyncMs ?? 60_000,
      scanMs: opts.scanMs ?? 5000,
      watch: opts.watch ?? true,
      scheduleBriefings: opts.scheduleBriefings ?? true,
      limits: opts.limits,
      log: opts.log,
    };
  }

  /** Sync every tenant once, then keep going in the background. */
  async start(): Promise<void> {
    this.#stopped = false;
    if (this.#opts.watch) {
      this.#watcher = watch([], {
        ignoreInitial: true,
        depth: 0,
        awaitWriteFinish: { stabilityThreshold: 150, pollInterval: 50 },
      });
      const onFile = (file: string) => {
        const tenant = this.#tenantOfPath(file);
        if (tenant) {
          this.#dirty.add(tenant);
          this.#kick(0);
        }
      };
      this.#watcher.on('add', onFile).on('change', onFile);
      this.#watcher.on('error', (e) => this.#opts.log?.('warn', `vault watcher: ${(e as Error).message}`));
    }
    await this.#serial(true);
    this.#kick(this.#opts.intervalMs);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#chain;
    await this.#watcher?.close().catch(() => {});
    this.#watcher = undefined;
  }

  /** Run one pass now (all tenants when `full`), waiting for a running one first. */
  async syncNow(full = true): Promise<void> {
    await this.#serial(full);
  }

  #serial(full: boolean): Promise<void> {
    const pass = this.#chain.then(() => this.#pass(full));
    this.#chain = pass.catch(() => {});
    return pass;
  }

  /** Problems met in a tenant's vault (shown in its Dashboard.md). */
  problems(tenantId: string): VaultProblem[] {
    return this.#tenants.get(tenantId)?.problems ?? [];
  }

  #tenantOfPath(file: string): string | undefined {
    const rel = path.relative(path.join(this.#res.dataDir, 'tenants'), file).split(path.sep);
    const slug = rel[0];
    for (const [id, state] of this.#tenants) if (state.slug === slug) return id;
    return undefined;
  }

  #kick(delay: number) {
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#running) {
        // A pass is under way: check again right after it.
        void this.#running.finally(() => this.#kick(0));
        return;
      }
      const started = Date.now();
      this.#running = this.#serial(false)
        .catch((e: unknown) => this.#opts.log?.('error', `vault sync failed: ${(e as Error).message}`))
        .finally(() => {
          this.#running = undefined;
          this.#kick(nextPassDelay(this.#opts.intervalMs, this.#opts.busyFactor, Date.now() - started));
        });
    }, delay);
    this.#timer.unref?.();
  }

  async #pass(full: boolean): Promise<void> {
    const tenants = await this.#res.db.withSystemAccess(
      (tx) => tx<{ id: string; slug: string }[]>`
        select id, slug from tenants where status = 'active' and id <> ${PLATFORM_TENANT_ID} order by slug`,
    );
    const now = Date.now();
    for (const t of tenants) {
      if (this.#stopped && !full) return;
      let state = this.#tenants.get(t.id);
      if (!state || state.slug !== t.slug) {
        state = {
          slug: t.slug,
          fingerprint: null,
          written: new Map(),
          problems: [],
          ignore: new Map(),
          lastFull: 0,
          lastScan: 0,
          briefingScheduled: false,
        };
        this.#tenants.set(t.id, state);
        const root = vaultDir(this.#res.dataDir, t.slug);
        this.#watcher?.add([path.join(root, 'Approved'), path.join(root, 'Rejected')]);
      }
      try {
        await this.#syncTenant(t.id, state, full || now - state.lastFull >= this.#opts.fullSyncMs);
      } catch (error) {
        this.#opts.log?.('error', `vault of ${t.slug}: ${(error as Error).message}`);
      }
    }
  }

  async #syncTenant(tenantId: string, state: TenantState, full: boolean): Promise<void> {
    const res = this.#res;
    if (this.#opts.scheduleBriefings && !state.briefingScheduled) {
      // A failure here must not stop the vault: it is tried again on the next pass.
      try {
        await ensureWeeklyBriefing(res, tenantId);
        state.briefingScheduled = true;
      } catch (error) {
        this.#opts.log?.(
          'warn',
          `could not schedule the weekly briefing of ${state.slug}: ${(error as Error).message}`,
        );
      }
    }
    const dirty = this.#dirty.delete(tenantId);
    if (full || dirty || Date.now() - state.lastScan >= this.#opts.scanMs) {
      state.lastScan = Date.now();
      const problemsBefore = state.problems.length ? state.problems[0] : undefined;
      const scan = await processDecisionFiles(res, tenantId, state.slug, {
        problems: state.problems,
        ignore: state.ignore,
      });
      for (const o of scan.outcomes) {
        this.#opts.log?.(o.decided ? 'info' : 'warn', `vault of ${state.slug}: ${o.file}: ${o.message}`);
      }
      if (scan.again) {
        this.#dirty.add(tenantId);
      }
      if (scan.outcomes.length || state.problems[0] !== problemsBefore) state.fingerprint = null;
    }
    const fingerprint = await this.#fingerprint(tenantId);
    if (!full && fingerprint === state.fingerprint) return;
    await syncTenantVault(res, tenantId, {
      written: state.written,
      problems: state.problems,
      ...(this.#opts.limits ? { limits: this.#opts.limits } : {}),
    });
    state.fingerprint = fingerprint;
    if (full) state.lastFull = Date.now();
  }

  /** Changes to anything the vault shows move at least one of these. */
  async #fingerprint(tenantId: string): Promise<string> {
    const [row] = await this.#res.db.withTenant(
      tenantId,
      (tx) => tx<{ f: string }[]>`
        select concat_ws('|',
          (select seq from audit_heads where tenant_id = ${tenantId}),
          (select max(updated_at) from tasks where tenant_id = ${tenantId}),
          (select max(updated_at) from steps where tenant_id = ${tenantId}),
          (select count(*) from approvals where tenant_id = ${tenantId} and status = 'pending' and expires_at > now()),
          (select settings::text from tenants where id = ${tenantId})
        ) as f`,
    );
    return row?.f ?? '';
  }
}

/** The wait before the next periodic pass: the interval, or `busyFactor` × the last pass if longer. */
export function nextPassDelay(intervalMs: number, busyFactor: number, lastPassMs: number): number {
  return Math.max(intervalMs, Math.round(busyFactor * lastPassMs));
}
