import { policyFromSettings } from '../approvals/approval-policy.ts';
import { enqueue } from '../executor/job-queue.ts';
import { executeSteps } from '../executor/execute-steps.ts';
import type { StepBudget, TakenStep } from '../executor/run-step.ts';
import type { Resources } from '../resources.ts';
import type { TaskRow } from '../tasks/task-types.ts';
import { llmConfigured } from './llm/llm-settings.ts';
import { validateDraft } from './plan-draft.ts';
import {
  decideDraft,
  draftRecipients,
  knownRecipients,
  loadPlanContext,
  planTask,
  planWithPlaybooks,
  storePlan,
  viewOf,
  type EventRow,
} from './plan-task.ts';
import { planFromPlaybooks } from './playbook.ts';
import { storeAutoPlans, type AutoPlan } from './store-auto-plans.ts';

/**
 * The `plan-tasks` job: plan a batch of one tenant's new tasks (the tasks of one intake batch) from
 * its playbooks in one transaction, then run the steps taken there together (executeSteps). The
 * tenant's settings, tools and playbooks are read once, the task rows are locked in id order, the
 * plans that need no approval are written in bulk (storeAutoPlans), and the audit entries of the
 * whole batch are one chain step, so a burst of events costs a few commits and statements per batch
 * instead of several per task. A plan that needs an approval is stored as planTask would; a task
 * that needs the model gets its own `plan-task` job (the model is called outside any transaction).
 * If the batch's transaction fails, every task is planned on its own (planTask), so one bad task
 * holds up nobody; tasks already planned are skipped, so the job is safe to run again.
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
      // Valid plans found by a playbook; anything else (no event, no playbook, an invalid plan, the
      // model) goes the way of a single task.
      const found = [];
      for (const task of open) {
        const event = eventOf.get(task.id);
        const match = event && planFromPlaybooks(ctx.playbooks, viewOf(event));
        if (match && match.draft.steps.length && !validateDraft(match.draft, ctx.tools).length) {
          found.push({ task, draft: match.draft, planner: `playbook:${match.playbook.name}` });
          continue;
        }
        const planned = await planWithPlaybooks(res, tx, task, event, ctx, { llm, budget });
        if (planned === 'model') await enqueue(tx, 'plan-task', { tenantId, taskId: task.id });
        else all.push(...planned);
      }
      const policy = policyFromSettings(ctx.settings);
      const known = await knownRecipients(
        tx,
        tenantId,
        found.flatMap((f) => draftRecipients(f.draft, ctx.tools)),
      );
      const auto: AutoPlan[] = [];
      for (const f of found) {
        const decisions = decideDraft(policy, ctx.tools, f.draft, known);
        if (!decisions.some((d) => d.required)) {
          auto.push({ ...f, decisions });
          continue;
        }
        all.push(
          ...(await storePlan(res, tx, f.task, f.draft, ctx.tools, ctx.settings, f.planner, {
            slug: ctx.slug,
            budget,
          })),
        );
      }
      all.push(...(await storeAutoPlans(res, tx, ctx, auto, budget)));
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
