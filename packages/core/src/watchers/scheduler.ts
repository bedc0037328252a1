import type { Resources } from '../resources.ts';
import { runDueSchedules } from './schedule-service.ts';

export interface SchedulerOptions {
  /** Pause between passes (default 1000 ms). */
  intervalMs?: number;
  log?: (level: 'info' | 'warn' | 'error', message: string) => void;
}

export interface Loop {
  stop(): Promise<void>;
}

/**
 * The scheduler loop: every second, fire the schedules that are due. Run it only in the process
 * holding the 'scheduler' lease; a second scheduler would still not double-fire (each run's event is
 * deduplicated by `${scheduleId}:${slot}`), it would only do the work twice.
 */
export function startScheduler(res: Resources, opts: SchedulerOptions = {}): Loop {
  const interval = opts.intervalMs ?? 1000;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let pass: Promise<void> = Promise.resolve();

  const tick = async () => {
    try {
      const fired = await runDueSchedules(res, new Date(), (run, error) =>
        opts.log?.(
          'error',
          `schedule ${run.id} of tenant ${run.tenantId} failed: ${(error as Error).message}`,
        ),
      );
      const created = fired.filter((f) => !f.duplicate).length;
      if (created) opts.log?.('info', `scheduler: ${created} run(s) submitted`);
    } catch (error) {
      opts.log?.('warn', `scheduler pass failed: ${(error as Error).message}`);
    }
  };
  const loop = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      pass = tick().finally(loop);
    }, interval);
  };
  pass = tick().finally(loop);
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await pass.catch(() => {});
    },
  };
}
