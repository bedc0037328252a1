import type { Tx } from '@steward/db/database';

/** Jobs carry ids only, never secrets or personal data; handlers open withTenant themselves. */
export interface JobPayloads {
  'plan-task': { tenantId: string; taskId: string };
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
