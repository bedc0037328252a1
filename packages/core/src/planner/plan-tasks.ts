import { enqueue } from '../executor/job-queue.ts';
import { executeSteps } from '../executor/execute-steps.ts';
import type { StepBudget, TakenStep } from '../executor/run-step.ts';
import type { Resources } from '../resources.ts';
import type { TaskRow } from '../tasks/task-types.ts';
import { llmConfigured } from './llm/llm-settings.ts';
import { loadPlanContext, planTask, planWithPlaybooks, type EventRow } from './plan-task.ts';

/**
 * The `plan-tasks` job: plan a batch of one tenant's new tasks (the tasks of one intake batch) from
 * its playbooks in one transaction, then run the steps taken there together (executeSteps). The
 * tenant's settings, tools and playbooks are read once, the task rows are locked in id order, and
 * the audit entries of the whole batch are one chain step, so a burst of events costs a few commits
 * per batch instead of several per task. A task that needs the model gets its own `plan-task` job
 * (the model is called outside any transaction). If the batch's transaction fails, every task is
 * planned on its own (planTask), so one bad task holds up nobody; tasks already planned are
 * skipped, so the job is safe to run again.
 */
export async function planTasks(res: Resources, tenantId: string, taskIds: readonly string[]): Promise<void> {
  const llm = !!llmConfigured(res.llm);
  let taken: TakenStep[];
  try {
    taken = await res.db.withTenant(tenantId, async (tx) => {
      const tasks = await tx<TaskRow[]>`
        select * from tasks where tenant_id = ${tenantId} and id = any(${taskIds as string[]}::uuid[])
        order by id for update`;
      const open = tasks.filter((t) => t.status === 'needs_action' && !t.planner);
      if (!open.length) return [];
      const events = await tx<EventRow[]>`
        select * from events where tenant_id = ${tenantId} and task_id = any(${open.map((t) => t.id)}::uuid[])`;
      const eventOf = new Map(events.map((e) => [e.task_id, e]));
      const ctx = await loadPlanContext(res, tx, tenantId);
      const budget: StepBudget = {};
      const all: TakenStep[] = [];
      for (const task of open) {
        const planned = await planWithPlaybooks(res, tx, task, eventOf.get(task.id), ctx, { llm, budget });
        if (planned === 'model') await enqueue(tx, 'plan-task', { tenantId, taskId: task.id });
        else all.push(...planned);
      }
      return all;
    });
  } catch (error) {
    if (taskIds.length === 1) throw error;
    const failed: unknown[] = [];
    for (const id of taskIds) await planTask(res, tenantId, id).catch((e) => failed.push(e));
    // The job runs again (with graphile's backoff); what was planned meanwhile is skipped then.
    if (failed.length) throw failed[0];
    return;
  }
  await executeSteps(res, taken);
}
