import type { Tx } from '@steward/db/database';
import type { Resources } from '../resources.ts';
import type { StepRow, TaskRow } from '../tasks/task-types.ts';
import { advance, writeTaskStatuses, type TaskStatusWrite } from './advance.ts';
import {
  callTool,
  recordFinished,
  rememberRecipients,
  reaperKey,
  storeOutcome,
  wakeThrottled,
  type StepOutcome,
  type TakenStep,
} from './run-step.ts';

/**
 * Run steps this worker took together (a plan's independent first steps, or the first steps of a
 * batch of tasks planned in one transaction): the calls at once, then every outcome in one
 * transaction per tenant, so the batch costs one commit and one audit chain step instead of one per
 * step. If that transaction fails, each outcome is stored on its own, so one bad outcome costs only
 * itself.
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
      await res.db.withTenant(tenantId, (tx) => storeOutcomes(res, tx, tenantId, list));
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

/**
 * Store one tenant's outcomes in the caller's transaction. The task rows are locked first, in id
 * order (every other transaction locks one task), then their steps. The successful actions of tasks
 * without a failure in this batch are written in bulk — the steps `succeeded`, their reaper jobs
 * gone and as many held-back steps woken as slots were freed, one `advance` per task on the rows
 * already read — exactly what storeOutcome writes for each; every other outcome (a failure, a
 * compensation) goes through storeOutcome itself.
 */
async function storeOutcomes(res: Resources, tx: Tx, tenantId: string, list: StepOutcome[]): Promise<void> {
  const taskIds = [...new Set(list.map((o) => o.taken.step.task_id))];
  const tasks = await tx<TaskRow[]>`
    select * from tasks where tenant_id = ${tenantId} and id = any(${taskIds}::uuid[]) order by id for update`;
  const taskOf = new Map(tasks.map((t) => [t.id, t]));
  const rows = await tx<StepRow[]>`
    select * from steps where tenant_id = ${tenantId} and task_id = any(${taskIds}::uuid[])
    order by task_id, position for update`;
  const stepsOf = new Map<string, StepRow[]>();
  for (const r of rows) {
    const s = stepsOf.get(r.task_id);
    if (s) s.push(r);
    else stepsOf.set(r.task_id, [r]);
  }
  const current = new Map(rows.map((r) => [r.id, r]));
  const oneByOne = new Set(
    list.filter((o) => o.error || o.taken.step.kind !== 'action').map((o) => o.taken.step.task_id),
  );
  // Another worker took over after our lease ran out and already finished: keep its outcome.
  const bulk = new Set(
    list.filter(
      (o) =>
        !oneByOne.has(o.taken.step.task_id) &&
        current.get(o.taken.step.id)?.status === 'running' &&
        taskOf.has(o.taken.step.task_id),
    ),
  );
  if (bulk.size) {
    const done = [...bulk].map((o) => ({ o, step: current.get(o.taken.step.id)! }));
    await wakeThrottled(
      tx,
      tenantId,
      done.map((d) => reaperKey(d.step.id, d.step.attempts)),
      done.length,
    );
    await rememberRecipients(
      tx,
      tenantId,
      done.flatMap((d) => d.o.taken.tool.recipients?.(d.step.args) ?? []),
    );
    await tx`
      update steps s set status = 'succeeded', result = x.result, error = null, lease_expires_at = null,
                         finished_at = now(), updated_at = now()
      from jsonb_to_recordset(${tx.json(done.map((d) => ({ id: d.step.id, result: d.o.result })) as never)}::jsonb)
        as x(id uuid, result jsonb)
      where s.tenant_id = ${tenantId} and s.id = x.id`;
    for (const { o, step } of done) {
      step.status = 'succeeded';
      step.attempts = Math.max(step.attempts, o.taken.step.attempts);
      await recordFinished(res, tx, step, null);
    }
    // Independent tasks: their statements are pipelined on the connection.
    const moved = [...new Set(done.map((d) => d.step.task_id))];
    const statuses: TaskStatusWrite[] = [];
    await Promise.all(
      moved.map((id) =>
        advance(res, tx, tenantId, id, { locked: taskOf.get(id), steps: stepsOf.get(id), statuses }),
      ),
    );
    await writeTaskStatuses(tx, tenantId, statuses);
  }
  for (const o of list) {
    if (bulk.has(o)) continue;
    await storeOutcome(res, tx, o, taskOf.get(o.taken.step.task_id));
  }
}
