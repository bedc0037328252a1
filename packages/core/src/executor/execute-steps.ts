import type { Resources } from '../resources.ts';
import type { TaskRow } from '../tasks/task-types.ts';
import { callTool, storeOutcome, type StepOutcome, type TakenStep } from './run-step.ts';

/**
 * Run steps this worker took together (a plan's independent first steps, or the first steps of a
 * batch of tasks planned in one transaction): the calls at once, then every outcome in one
 * transaction per tenant, so the batch costs one commit and one audit chain step instead of one per
 * step. The task rows are locked first, in id order (every other transaction locks one task), then
 * each outcome is stored exactly as a single step's would be. If that transaction fails, each
 * outcome is stored on its own, so one bad outcome costs only itself.
 */
export async function executeSteps(res: Resources, taken: readonly TakenStep[]): Promise<void> {
  if (!taken.length) return;
  const outcomes = await Promise.all(taken.map((t) => callTool(res, t)));
  const byTenant = new Map<string, StepOutcome[]>();
  for (const o of outcomes) {
    const list = byTenant.get(o.taken.step.tenant_id);
    if (list) list.push(o);
    else byTenant.set(o.taken.step.tenant_id, [o]);
  }
  for (const [tenantId, list] of byTenant) {
    try {
      await res.db.withTenant(tenantId, async (tx) => {
        const ids = [...new Set(list.map((o) => o.taken.step.task_id))];
        const tasks = await tx<TaskRow[]>`
          select * from tasks where tenant_id = ${tenantId} and id = any(${ids}::uuid[]) order by id for update`;
        const byId = new Map(tasks.map((t) => [t.id, t]));
        for (const o of list) await storeOutcome(res, tx, o, byId.get(o.taken.step.task_id));
      });
    } catch (error) {
      if (list.length === 1) throw error;
      const failed: unknown[] = [];
      for (const o of list) {
        await res.db.withTenant(tenantId, (tx) => storeOutcome(res, tx, o)).catch((e) => failed.push(e));
      }
      // A step whose outcome could not be stored stays `running`: its reaper tries it again.
      if (failed.length) throw failed[0];
    }
  }
}
