import type { Tx } from '@steward/db/database';

/** Most tasks one `plan-tasks` job plans: the intake's largest batch. */
export const PLAN_BATCH = 100;

/** Jobs carry ids only, never secrets or personal data; handlers open withTenant themselves. */
export interface JobPayloads {
  'plan-task': { tenantId: string; taskId: string };
  /** The new tasks of one intake batch (at most PLAN_BATCH), planned together. */
  'plan-tasks': { tenantId: string; taskIds: string[] };
  'run-step': { tenantId: string; stepId: string };
  'reap-step': { tenantId: string; stepId: string };
  'expire-approval': { tenantId: string; approvalId: string };
  'weekly-briefing': { tenantId: string };
  'privacy-export': { tenantId: string; exportId: string };
}

export type JobName = keyof JobPayloads;

export interface EnqueueOptions {
  runAt?: Date;
  /** A pending job with the same key is replaced, so the same work is never queued twice. */
  jobKey?: string;
  /** Attempts for infrastructure failures (the handlers do their own retries for tool errors). */
  maxAttempts?: number;
  priority?: number;
}

/**
 * Add a job inside the caller's transaction (graphile-worker's add_job): the state change and the
 * job that acts on it commit together or not at all.
 */
export async function enqueue<N extends JobName>(
  tx: Tx,
  name: N,
  payload: JobPayloads[N],
  opts: EnqueueOptions = {},
): Promise<void> {
  await tx`select graphile_worker.add_job(
    ${name}::text,
    ${tx.json(payload as never)}::json,
    run_at => ${opts.runAt ?? null}::timestamptz,
    max_attempts => ${opts.maxAttempts ?? 10}::int,
    job_key => ${opts.jobKey ?? null}::text,
    priority => ${opts.priority ?? 0}::int
  )`;
}

/**
 * Add a job that is due later (a timer, e.g. the reaper of a step's lease) in the caller's
 * transaction without waking every worker now: graphile's add_job sends a NOTIFY for every job,
 * and each worker process it wakes asks for work and finds none (a future job is found by the
 * workers' regular poll when it falls due). A plain insert into the queue table; when the key is
 * already taken, or the task name is not yet known to the queue, it falls back to add_job, whose
 * job-key semantics then apply unchanged.
 */
export async function enqueueTimer<N extends JobName>(
  tx: Tx,
  name: N,
  payload: JobPayloads[N],
  opts: { runAt: Date; jobKey: string; maxAttempts?: number },
): Promise<void> {
  const added = await tx`
    insert into graphile_worker._private_jobs (task_id, payload, run_at, max_attempts, key)
    select id, ${tx.json(payload as never)}::json, ${opts.runAt}::timestamptz, ${opts.maxAttempts ?? 10}::int, ${opts.jobKey}::text
    from graphile_worker._private_tasks where identifier = ${name}::text
    on conflict (key) do nothing
    returning id`;
  if (!added.length) await enqueue(tx, name, payload, opts);
}
