import { readFile } from 'node:fs/promises';
import { loadMigrations } from '@steward/db/migrate';
import pino from 'pino';
import type { buildApp } from './app.ts';
import { REDACT_PATHS } from './http/redact-paths.ts';
import type { Config } from './config.ts';
import { DEMO_SLUG, provisionDemo } from './demo.ts';
import { openRuntime } from './runtime.ts';
import type { WorkerHandle } from './worker/worker-runner.ts';
import type { WatchersHandle } from '@steward/core/watchers/watchers';
import type { VaultHandle } from '@steward/core/vault/vault-service';
import type { SiemForwardingHandle } from '@steward/core/siem/siem-forwarding';

export type Role = 'all' | 'api' | 'worker';

/**
 * A long-running Steward process: `start` (every role, demo on first start), `serve` (API) or
 * `work` (background roles). Stops gracefully on SIGTERM/SIGINT: stop accepting, finish in-flight
 * requests, flush audit checkpoints, close the pool, stop the embedded PostgreSQL.
 */
export async function runServer(config: Config, role: Role): Promise<void> {
  const logger = pino({ level: config.logLevel, redact: { paths: REDACT_PATHS, censor: '[redacted]' } });
  const runtime = await openRuntime(config, {
    log: (m) => logger.info(m),
    longRunning: true,
    pageCache: role !== 'worker',
  });
  const { res } = runtime;
  runtime.checkpointer.start();

  let app: Awaited<ReturnType<typeof buildApp>> | undefined;
  let worker: WorkerHandle | undefined;
  let watchers: WatchersHandle | undefined;
  let vault: VaultHandle | undefined;
  let siem: SiemForwardingHandle | undefined;
  let stopPush: (() => void) | undefined;
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      logger.warn(`${signal} again: exiting now`);
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      logger.error('shutdown took longer than 30 s; exiting');
      process.exit(1);
    }, 30_000);
    timer.unref();
    try {
      stopPush?.();
      await app?.close();
      await watchers?.stop();
      await vault?.stop();
      await siem?.stop();
      await worker?.stop();
      await runtime.close();
      logger.info('stopped');
      process.exit(0);
    } catch (error) {
      logger.error({ err: error }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));

  try {
    if (role === 'all' && !config.noDemo) {
      const demo = await provisionDemo(res, config.demoPassword);
      if (demo) {
        const lines = [
          '',
          `  Demo tenant "${DEMO_SLUG}" created.`,
          `  Sign in at ${config.baseUrl} as ${demo.email}`,
          demo.password
            ? `  Password (shown once, save it): ${demo.password}`
            : '  Password: the value of STEWARD_DEMO_PASSWORD',
          `  Drop files into ${demo.inbox}`,
          '',
        ];
        process.stdout.write(lines.join('\n') + '\n');
      }
    }
    if (role !== 'api') {
      // Loaded only by processes that run workers (graphile-worker, pg, chokidar, mailparser, yaml…):
      // `steward serve` stays smaller without them.
      const [{ startWorker }, { startWatchers }, { startVault }, { startSiemForwarding }] = await Promise.all(
        [
          import('./worker/worker-runner.ts'),
          import('@steward/core/watchers/watchers'),
          import('@steward/core/vault/vault-service'),
          import('@steward/core/siem/siem-forwarding'),
        ],
      );
      worker = await startWorker(res, {
        appUrl: runtime.appUrl,
        concurrency: config.workerConcurrency,
        fetchBatch: config.workerFetchBatch,
        completeDelayMs: config.workerCompleteDelayMs,
        log: (level, message) => logger[level](message),
      });
      // Folder watcher and scheduler: every worker process offers; the lease holder of each runs it.
      watchers = startWatchers(res, {
        leaseMs: config.leaseSeconds * 1000,
        log: (level, message) => logger[level](message),
      });
      // The vault mirror (and its Approved/Rejected decisions): the holder of the `vault` lease runs it.
      vault = startVault(res, {
        leaseMs: config.leaseSeconds * 1000,
        log: (level, message) => logger[level](message),
      });
      // SIEM forwarding: one lease per destination (`siem:<key>`), taken by one worker process each.
      siem = startSiemForwarding(res, {
        leaseMs: config.leaseSeconds * 1000,
        installation: config.siemDestinations,
        log: (level, message) => logger[level](message),
      });
    }
    if (role !== 'worker') {
      const migrations = await loadMigrations();
      // Loaded only by processes that serve HTTP: a worker starts faster without it.
      const { buildApp } = await import('./app.ts');
      app = await buildApp(res, {
        logger,
        bodyLimit: config.bodyLimit,
        trustProxy: config.trustProxy,
        https: config.tls
          ? { cert: await readFile(config.tls.certFile), key: await readFile(config.tls.keyFile) }
          : undefined,
        expectedSchemaVersion: Math.max(0, ...migrations.map((m) => m.version)),
      });
      await app.listen({ port: config.port, host: config.host });
      logger.info(`Steward API on ${config.baseUrl} (docs at ${config.baseUrl}/docs)`);
      // Web push for new approvals (the dashboard's "notify me"); see packages/core/src/push/.
      const { startPushNotifier } = await import('@steward/core/push/push-notifier');
      const { webPushSender } = await import('@steward/core/push/web-push-sender');
      const subject = config.baseUrl.startsWith('https:') ? config.baseUrl : 'mailto:admin@localhost';
      stopPush = await startPushNotifier(res, webPushSender(res.master, subject), (m) => logger.warn(m));
    } else {
      logger.info('Steward worker running');
    }
  } catch (error) {
    logger.error({ err: error }, 'start-up failed');
    await app?.close().catch(() => {});
    await watchers?.stop();
    await vault?.stop();
    await siem?.stop();
    await worker?.stop();
    await runtime.close();
    throw error;
  }
}
