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

/** One job of a bulk enqueue (enqueueMany, enqueueTimers). */
export interface JobItem<N extends JobName> {
  payload: JobPayloads[N];
  runAt?: Date | undefined;
  jobKey?: string | undefined;
}

/**
 * Add many jobs of one task in the caller's transaction, in one statement (graphile's add_jobs:
 * the same job-key semantics as add_job, one wake-up notification for all of them).
 */
export async function enqueueMany<N extends JobName>(
  tx: Tx,
  name: N,
  items: readonly JobItem<N>[],
  opts: { maxAttempts?: number } = {},
): Promise<void> {
  if (!items.length) return;
  const specs = items.map((i) => ({
    payload: i.payload,
    run_at: i.runAt?.toISOString() ?? null,
    job_key: i.jobKey ?? null,
  }));
  await tx`select count(*) from graphile_worker.add_jobs(array(
    select row(${name}::text, s.payload, null, s.run_at, ${opts.maxAttempts ?? 10}::int, s.job_key, 0, null)::graphile_worker.job_spec
    from jsonb_to_recordset(${tx.json(specs as never)}::jsonb) as s(payload json, run_at timestamptz, job_key text)))`;
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
  await enqueueTimers(tx, name, [{ payload, runAt: opts.runAt, jobKey: opts.jobKey }], opts);
}

/** Many timers of one task in one statement (see enqueueTimer). */
export async function enqueueTimers<N extends JobName>(
  tx: Tx,
  name: N,
  items: readonly (JobItem<N> & { runAt: Date; jobKey: string })[],
  opts: { maxAttempts?: number } = {},
): Promise<void> {
  if (!items.length) return;
  const rows = items.map((i) => ({ payload: i.payload, run_at: i.runAt.toISOString(), key: i.jobKey }));
  const added = await tx<{ key: string }[]>`
    insert into graphile_worker._private_jobs (task_id, payload, run_at, max_attempts, key)
    select k.id, r.payload, r.run_at, ${opts.maxAttempts ?? 10}::int, r.key
    from graphile_worker._private_tasks k, jsonb_to_recordset(${tx.json(rows as never)}::jsonb) as r(payload json, run_at timestamptz, key text)
    where k.identifier = ${name}::text
    on conflict (key) do nothing
    returning key`;
  if (added.length === items.length) return;
  const done = new Set(added.map((a) => a.key));
  await enqueueMany(
    tx,
    name,
    items.filter((i) => !done.has(i.jobKey)),
    opts,
  );
}
