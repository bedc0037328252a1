import type { Sql } from 'postgres';

/**
 * Jobs locked by a worker process that died.
 *
 * graphile-worker locks a job while a worker runs it and only releases the lock of a worker that
 * vanished after 4 hours. Our product state recovers sooner (a step's lease and the reaper), but the
 * job itself can be what carries the work: a `run-step` job fetched by a worker that was killed
 * before its claim committed leaves the step `ready` with its only job locked; a killed `plan-task(s)`
 * or `reap-step` job does the same to a task or a running step. Such tasks would sit for 4 hours.
 *
 * So every worker process announces itself: its job-queue pool id is the application_name of one
 * long-lived connection (the cancel listener). A session ends when its process dies, even with
 * SIGKILL (the socket closes). Each worker sweeps periodically: jobs locked for longer than a grace
 * period by a pool with no such session anywhere in the cluster are released with graphile-worker's
 * own force_unlock_workers, and run again, without that lost run counting as one of its attempts. A job released while its worker still runs (its session
 * dropped) is harmless: every handler re-checks state under the task lock (a step with a live lease
 * is not claimed again) and connector calls carry idempotency keys.
 */

export const LIVENESS_PREFIX = 'steward-worker ';

export function livenessName(poolId: string): string {
  return `${LIVENESS_PREFIX}${poolId}`;
}

/** Release the jobs of worker pools whose process is gone; returns the pools released. */
export async function unlockDeadWorkers(sql: Sql, graceMs: number): Promise<string[]> {
  const rows = await sql<{ locked_by: string }[]>`
    select distinct j.locked_by from graphile_worker._private_jobs j
    where j.locked_by is not null
      and j.locked_at < now() - make_interval(secs => ${graceMs / 1000})
      and not exists (select 1 from pg_stat_activity a
                      where a.application_name = ${LIVENESS_PREFIX} || j.locked_by)`;
  const dead = rows.map((r) => r.locked_by);
  if (!dead.length) return dead;
  await sql.begin(async (tx) => {
    // The run a dead worker took does not count against the job's attempts: graphile-worker counts
    // it when it hands the job out, so a worker restarted and killed again and again (a crash loop,
    // a deploy) would otherwise use up a job's attempts without it ever failing, and the job would
    // sit dead with no error while its task waits forever. Work that may have happened is counted
    // where it matters: a step's own attempts (the claim) cap its recoveries (WORKER_LOST).
    await tx`update graphile_worker._private_jobs set attempts = greatest(attempts - 1, 0)
             where locked_by = any(${dead}::text[])`;
    await tx`select graphile_worker.force_unlock_workers(${dead}::text[])`;
  });
  return dead;
}

export interface Sweeper {
  stop(): void;
}

export function startDeadWorkerSweeper(
  sql: Sql,
  opts: { intervalMs: number; graceMs: number; log: (level: 'warn', message: string) => void },
): Sweeper {
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    unlockDeadWorkers(sql, opts.graceMs)
      .then((dead) => {
        if (dead.length) opts.log('warn', `released the jobs of ${dead.length} worker(s) that died`);
      })
      .catch(() => {})
      .finally(() => {
        busy = false;
      });
  }, opts.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
