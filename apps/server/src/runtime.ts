import { connect, createDatabase, type Database } from '@steward/db/database';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '@steward/db/embedded-postgres';
import { migrateJobQueue } from '@steward/db/job-queue-schema';
import { migrate } from '@steward/db/migrate';
import { checkRuntimeRole, ensureRuntimeRole, grantAppRole } from '@steward/db/runtime-role';
import { AuditLog } from '@steward/core/audit/audit-log';
import { Checkpointer } from '@steward/core/audit/checkpointer';
import { CheckpointStore } from '@steward/core/audit/checkpoint-store';
import { loadMasterKey, type MasterKey } from '@steward/core/crypto/master-key';
import { AccessTokens } from '@steward/core/identity/access-tokens';
import { Authenticator } from '@steward/core/identity/authenticator';
import type { Resources } from '@steward/core/resources';
import { Guard } from '@steward/core/guard/guard';
import { databaseKeyRing } from '@steward/core/keys/key-ring-store';
import { registerKeyProviders } from '@steward/core/keys/key-providers';
import { createKeyProviders } from '@steward/core/keys/key-settings';
import { FileTenantKeystore } from '@steward/core/keys/tenant-keystore';
import { ChangeFeed } from '@steward/core/live/change-feed';
import { McpClientPool } from '@steward/core/mcp/mcp-pool';
import { PageCache } from '@steward/core/cache/page-cache';
import { PageCacheListener } from '@steward/core/cache/page-cache-listener';
import type { Config } from './config.ts';
import { builtinTools } from './tools.ts';

export interface Runtime {
  res: Resources;
  /** The runtime (non-owner) connection URL, for the job queue's own pool. */
  appUrl: string;
  checkpointer: Checkpointer;
  /** Close in reverse order of opening: checkpoints, pool, embedded PostgreSQL. */
  close(): Promise<void>;
}

export interface OpenOptions {
  log?: (message: string) => void;
  /** Apply pending migrations first (default true). */
  migrate?: boolean;
  /** A long-running server: adopt an embedded PostgreSQL orphaned by a killed run. */
  longRunning?: boolean;
  /** Open the page cache and its LISTEN connection (default true; one-shot commands and workers: false). */
  pageCache?: boolean;
}

/** The owner connection URL: DATABASE_URL, or the embedded cluster (started or adopted). */
export async function ownerDatabase(
  config: Config,
  log: (m: string) => void,
  takeOwnership = false,
): Promise<{ url: string; embedded?: EmbeddedPostgres }> {
  if (config.databaseUrl) return { url: config.databaseUrl };
  const embedded = await startEmbeddedPostgres({
    dataDir: config.dataDir,
    port: config.embeddedPgPort,
    log,
    takeOwnership,
  });
  return { url: embedded.url, embedded };
}

export function runtimeRolePassword(master: MasterKey): string {
  return master.derive('database-runtime-role').toString('hex');
}

/** Connect everything a Steward process needs, in one place. */
export async function openRuntime(config: Config, opts: OpenOptions = {}): Promise<Runtime> {
  const log = opts.log ?? (() => {});
  const master = await loadMasterKey(config.masterKey, config.dataDir);
  const { url: ownerUrl, embedded } = await ownerDatabase(config, log, opts.longRunning);
  let db: Database | undefined;
  try {
    const owner = connect(ownerUrl, { max: 2, applicationName: 'steward-owner' });
    let appUrl: string;
    try {
      if (opts.migrate !== false) {
        const result = await migrate(owner);
        if (result.applied.length) log(`applied migrations: ${result.applied.join(', ')}`);
        await migrateJobQueue(ownerUrl, owner);
      }
      if (config.databaseAppUrl) {
        appUrl = config.databaseAppUrl;
        const role = decodeURIComponent(new URL(appUrl).username);
        await grantAppRole(owner, role).catch((error: unknown) => {
          log(`could not grant steward_app to ${role} (${(error as Error).message}); grant it yourself`);
        });
      } else {
        appUrl = await ensureRuntimeRole(owner, ownerUrl, runtimeRolePassword(master));
      }
    } finally {
      await owner.end({ timeout: 5 });
    }
    db = createDatabase({ url: appUrl, max: config.dbPoolMax });
    const check = await db.withSystemAccess(async (tx) => checkRuntimeRole(tx));
    if (check.problems.length) {
      throw new Error(`the runtime database role is unsafe: ${check.problems.join('; ')}`);
    }
    const keys = createKeyProviders(
      config.keys,
      master,
      databaseKeyRing(db),
      FileTenantKeystore.inDataDir(config.dataDir, master),
    );
    registerKeyProviders(master, keys);
    const tokens = new AccessTokens(master, { issuer: config.baseUrl, ttlSeconds: config.accessTokenTtl });
    const audit = new AuditLog(master);
    const checkpoints = new CheckpointStore(config.dataDir, master);
    const checkpointer = new Checkpointer(db, checkpoints, {
      onError: (e) => log(`audit checkpoint failed: ${(e as Error).message}`),
    });
    audit.onAppend(checkpointer.noteAppend);
    const res: Resources = {
      db,
      master,
      audit,
      checkpoints,
      tokens,
      auth: new Authenticator(db, tokens),
      tools: builtinTools(config.dataDir, { master }),
      executor: {
        leaseSeconds: config.stepLeaseSeconds,
        tenantConcurrency: config.tenantConcurrency,
        running: new Map(),
      },
      dataDir: config.dataDir,
      llm: config.llm,
      mcp: { allowStdio: config.mcpAllowStdio },
      guard: await createGuard(db, config, log),
      keys,
      changes: new ChangeFeed(connect(appUrl, { max: 1, applicationName: 'steward-live' })),
      mcpClients: new McpClientPool({ idleMs: config.mcpIdleSeconds * 1000, max: config.mcpMaxConnections }),
    };
    const pages = await openPageCache(db, appUrl, config, opts, log);
    res.pages = pages?.cache;
    const database = db;
    const guard = res.guard;
    return {
      res,
      appUrl,
      checkpointer,
      async close() {
        await checkpointer.stop().catch(() => {});
        await guard?.close().catch(() => {});
        await keys.close().catch(() => {});
        await res.changes?.close();
        await pages?.listener.close();
        await res.mcpClients?.closeAll();
        await database.close().catch(() => {});
        await embedded?.stop();
      },
    };
  } catch (error) {
    await db?.close().catch(() => {});
    await embedded?.stop();
    throw error;
  }
}

/** Rate limits in Redis when REDIS_URL is set (shared by every instance), else in this process. */
async function createGuard(db: Database, config: Config, log: (m: string) => void): Promise<Guard> {
  let lastReport = 0;
  // The Redis client is loaded only when it is used.
  const store = config.redisUrl
    ? (await import('@steward/core/guard/redis-rate-limit-store')).RedisRateLimitStore.connect(
        config.redisUrl,
      )
    : undefined;
  return new Guard(db, {
    limits: config.rateLimits,
    store,
    onStoreError: (error) => {
      if (Date.now() - lastReport < 10_000) return;
      lastReport = Date.now();
      log(`rate-limit store (Redis) failed, counting in this process meanwhile: ${(error as Error).message}`);
    },
  });
}

/**
 * The page cache (STEWARD_PAGE_CACHE_TTL_MS > 0): dropped synchronously by this process's own
 * committed writes (app.changed_tenants, migration 0023) and by every process's through NOTIFY.
 */
async function openPageCache(
  db: Database,
  appUrl: string,
  config: Config,
  opts: OpenOptions,
  log: (m: string) => void,
): Promise<{ cache: PageCache; listener: PageCacheListener } | undefined> {
  if (opts.pageCache === false || config.pageCacheTtlMs === 0) return undefined;
  const cache = new PageCache({ ttlMs: config.pageCacheTtlMs, maxBytes: config.pageCacheMaxBytes });
  db.watchCommits('app.changed_tenants', (changed) => cache.invalidate(changed));
  const listener = new PageCacheListener(appUrl, cache, { log });
  // Until the LISTEN is in place the cache is bypassed; a failure retries in the background.
  await listener.start();
  return { cache, listener };
}
