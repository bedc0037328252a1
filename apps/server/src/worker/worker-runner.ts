import { expireApproval } from '@steward/core/approvals/approval-service';
import { PLAN_BATCH, type JobPayloads } from '@steward/core/executor/job-queue';
import { reapStep, runStep } from '@steward/core/executor/run-step';
import { planTask } from '@steward/core/planner/plan-task';
import { planTasks } from '@steward/core/planner/plan-tasks';
import { runWeeklyBriefing } from '@steward/core/vault/briefing';
import { runExport } from '@steward/core/privacy/export-service';
import { purgeAllTenants } from '@steward/core/privacy/retention-service';
import { SYSTEM_ACTOR, type Resources } from '@steward/core/resources';
import { isUuid } from '@steward/db/database';
import { EventEmitter } from 'node:events';
import { Logger, run, type Runner, type Task, type WorkerEvents } from 'graphile-worker';
import pg from 'pg';
import postgres from 'postgres';
import { livenessName, startDeadWorkerSweeper } from './dead-workers.ts';

export interface WorkerOptions {
  /** Runtime (non-owner) connection URL. */
  appUrl: string;
  concurrency?: number;
  pollIntervalMs?: number;
  /** Jobs fetched (and locked) per query, served to the slots from memory (graphile's localQueue); 1 = off. */
  fetchBatch?: number;
  /** Ms to wait to mark finished jobs complete in one statement (graphile's completeJobBatchDelay); -1 = off. */
  completeDelayMs?: number;
  log?: (level: 'error' | 'warn' | 'info', message: string) => void;
}

export interface WorkerHandle {
  stop(): Promise<void>;
}

/** A payload value: a uuid, or a short non-empty list of uuids (a batch). */
const idsOnly = (v: unknown) =>
  isUuid(v) || (Array.isArray(v) && v.length > 0 && v.length <= PLAN_BATCH && v.every(isUuid));

/** Each job's payload must name a tenant and uuids only; anything else is dropped, not retried. */
function handler<N extends keyof JobPayloads>(fn: (p: JobPayloads[N]) => Promise<void>): Task {
  return async (payload, helpers) => {
    const p = payload as Record<string, unknown>;
    if (!p || typeof p !== 'object' || !isUuid(p.tenantId) || !Object.values(p).every(idsOnly)) {
      helpers.logger.error(`dropped a ${helpers.job.task_identifier} job with a malformed payload`);
      return;
    }
    await fn(p as JobPayloads[N]);
  };
}

/**
 * The durable executor: graphile-worker runs the jobs (SKIP LOCKED, LISTEN/NOTIFY); our handlers
 * keep the product state (tasks, steps, approvals) in our own tables. A cancel notification aborts
 * steps running in this process.
 */
export async function startWorker(res: Resources, opts: WorkerOptions): Promise<WorkerHandle> {
  const log = opts.log ?? (() => {});
  const pool = new pg.Pool({ connectionString: opts.appUrl, max: (opts.concurrency ?? 8) + 2 });
  pool.on('error', (e) => log('warn', `job queue connection error: ${e.message}`));
  pool.on('connect', (client) =>
    client.on('error', (e) => log('warn', `job queue connection error: ${e.message}`)),
  );
  const logger = new Logger((scope) => (level, message) => {
    if (level === 'error' || level === 'warning')
      log(level === 'error' ? 'error' : 'warn', `[queue${scope.label ? ' ' + scope.label : ''}] ${message}`);
  });
  // The queue pool's id names this process's liveness session (see dead-workers.ts).
  const events: WorkerEvents = new EventEmitter();
  let poolId = '';
  events.on('pool:create', ({ workerPool }) => (poolId = workerPool.id));
  const runner: Runner = await run({
    events,
    pgPool: pool,
    concurrency: opts.concurrency ?? 8,
    pollInterval: opts.pollIntervalMs ?? 1000,
    noHandleSignals: true,
    preset: {
      worker: {
        ...((opts.fetchBatch ?? 1) > 1 ? { localQueue: { size: opts.fetchBatch! } } : {}),
        completeJobBatchDelay: opts.completeDelayMs ?? -1,
      },
    },
    logger,
    // The retention purge: daily, once per installation (graphile-worker's cron dedupes across workers).
    crontab: '30 3 * * * retention-purge',
    taskList: {
      'plan-task': handler<'plan-task'>((p) => planTask(res, p.tenantId, p.taskId)),
      'plan-tasks': handler<'plan-tasks'>((p) => planTasks(res, p.tenantId, p.taskIds)),
      'run-step': handler<'run-step'>((p) => runStep(res, p.tenantId, p.stepId)),
      'reap-step': handler<'reap-step'>((p) => reapStep(res, p.tenantId, p.stepId)),
      'expire-approval': handler<'expire-approval'>((p) => expireApproval(res, p.tenantId, p.approvalId)),
      'weekly-briefing': handler<'weekly-briefing'>((p) => runWeeklyBriefing(res, p.tenantId)),
      'privacy-export': handler<'privacy-export'>((p) => runExport(res, p.tenantId, p.exportId)),
      'retention-purge': async () => {
        await purgeAllTenants(res, { ...SYSTEM_ACTOR, label: 'retention purge' });
      },
    },
  });
  const listener = postgres(opts.appUrl, {
    max: 1,
    onnotice: () => {},
    connection: { application_name: livenessName(poolId) },
  });
  const subscription = await listener.listen('steward_cancel', (payload) => {
    try {
      const { stepIds } = JSON.parse(payload) as { stepIds: string[] };
      for (const id of stepIds) res.executor.running.get(id)?.abort();
    } catch {
      // ignore malformed notifications
    }
  });
  const sweeper = startDeadWorkerSweeper(listener, {
    intervalMs: Math.max(500, res.executor.leaseSeconds * 500),
    graceMs: res.executor.leaseSeconds * 1000,
    log,
  });
  return {
    async stop() {
      sweeper.stop();
      await subscription.unlisten().catch(() => {});
      await listener.end({ timeout: 2 }).catch(() => {});
      await runner.stop().catch(() => {});
      await pool.end().catch(() => {});
    },
  };
}
