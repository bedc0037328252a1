import { randomUUID } from 'node:crypto';
import type { Tx } from '@steward/db/database';
import { actionHash } from '../approvals/action-hash.ts';
import type { StepDecision } from '../approvals/approval-policy.ts';
import { enqueueMany, enqueueTimers } from '../executor/job-queue.ts';
import {
  freeSlots,
  reaperKey,
  THROTTLE_BACKSTOP_MS,
  type StepBudget,
  type TakenStep,
} from '../executor/run-step.ts';
import { auditActor, SYSTEM_ACTOR, type Resources } from '../resources.ts';
import type { StepRow, TaskRow } from '../tasks/task-types.ts';
import type { PlanContext } from './plan-task.ts';
import type { PlanDraft } from './plan-draft.ts';

/** A validated plan of a locked task in which no step needs an approval. */
export interface AutoPlan {
  task: TaskRow;
  draft: PlanDraft;
  planner: string;
  /** The policy's decision for each step of the draft (none of them required). */
  decisions: StepDecision[];
}

/**
 * Store the plans of many tasks that need no approval, in a few statements for all of them: what
 * storePlan, advance and takeReadySteps write for one such plan, written in bulk. Every step is
 * stored in its state after the plan: a step without dependencies is taken (`running`, first
 * attempt, lease, reaper job) while the tenant has free slots, else `ready` and held back
 * (throttled, with its backstop job); the others wait (`pending`). Each task ends `executing` (or
 * `approved` if none of its steps could start), with the same audit entries as one plan at a time:
 * task.planned, task.approved, step.started. Returns the steps taken, for the caller to run after
 * the commit.
 */
export async function storeAutoPlans(
  res: Resources,
  tx: Tx,
  ctx: PlanContext,
  plans: readonly AutoPlan[],
  budget: StepBudget,
): Promise<TakenStep[]> {
  if (!plans.length) return [];
  const tenantId = plans[0]!.task.tenant_id;
  let free = await freeSlots(res, tx, tenantId, ctx.settings, budget);
  const lease = new Date(Date.now() + res.executor.leaseSeconds * 1000);
  const steps = [];
  const tasks = [];
  for (const { task, draft, planner, decisions } of plans) {
    let started = false;
    for (const [position, s] of draft.steps.entries()) {
      const tool = ctx.tools.get(s.tool)!;
      const decision = decisions[position]!;
      const id = randomUUID();
      const root = s.dependsOn.length === 0;
      const take = root && free > 0;
      if (take) free--;
      started ||= take;
      steps.push({
        id,
        task_id: task.id,
        key: s.key,
        position,
        tool: s.tool,
        args: s.args,
        action_hash: actionHash(s.tool, s.args),
        depends_on: s.dependsOn,
        risk: decision.effectiveRisk,
        compensation: s.compensation ?? null,
        approval_reasons: decision.reasons,
        status: take ? 'running' : root ? 'ready' : 'pending',
        // The idempotency key is the step's identity: stable across every retry and every worker.
        idempotency_key: `stw-${id}`,
        max_attempts: tool.retryable ? 5 : 1,
        retryable: tool.retryable,
        attempts: take ? 1 : 0,
        lease_expires_at: take ? lease.toISOString() : null,
        throttled: root && !take,
      });
    }
    tasks.push({ id: task.id, status: started ? 'executing' : 'approved', planner, summary: draft.summary });
    task.status = started ? 'executing' : 'approved';
  }
  budget.free = free;
  const stored = await tx<StepRow[]>`
    insert into steps (tenant_id, id, task_id, key, position, tool, args, action_hash, depends_on, risk, compensation,
                       needs_approval, approval_reasons, status, idempotency_key, max_attempts, retryable, attempts,
                       lease_expires_at, started_at, throttled_at)
    select ${tenantId}, x.id, x.task_id, x.key, x.position, x.tool, x.args, x.action_hash, x.depends_on, x.risk,
           x.compensation, false, x.approval_reasons, x.status, x.idempotency_key, x.max_attempts, x.retryable,
           x.attempts, x.lease_expires_at, case when x.status = 'running' then now() end,
           case when x.throttled then now() end
    from jsonb_to_recordset(${tx.json(steps as never)}::jsonb) as x(
      id uuid, task_id uuid, key text, position int, tool text, args jsonb, action_hash text, depends_on text[],
      risk text, compensation jsonb, approval_reasons text[], status text, idempotency_key text, max_attempts int,
      retryable boolean, attempts int, lease_expires_at timestamptz, throttled boolean)
    returning *`;
  await tx`
    update tasks t set status = x.status, planner = x.planner, plan_summary = x.summary, needs_action_reason = null,
                       updated_at = now()
    from jsonb_to_recordset(${tx.json(tasks as never)}::jsonb) as x(id uuid, status text, planner text, summary text)
    where t.tenant_id = ${tenantId} and t.id = x.id`;
  const taken = stored.filter((s) => s.status === 'running');
  // If this worker dies, the reaper picks a step up when its lease runs out (no wake-up: due later).
  await enqueueTimers(
    tx,
    'reap-step',
    taken.map((s) => ({
      payload: { tenantId, stepId: s.id },
      runAt: new Date(lease.getTime() + 1000),
      jobKey: reaperKey(s.id, 1),
    })),
  );
  // Held back by the tenant's limit: the next step to leave `running` wakes them; this is the backstop.
  const backstop = new Date(Date.now() + THROTTLE_BACKSTOP_MS);
  await enqueueMany(
    tx,
    'run-step',
    stored
      .filter((s) => s.status === 'ready')
      .map((s) => ({ payload: { tenantId, stepId: s.id }, jobKey: `step:${s.id}`, runAt: backstop })),
  );
  const system = auditActor(SYSTEM_ACTOR);
  for (const { task, draft, planner } of plans) {
    const details = { planner, steps: draft.steps.map((s) => ({ key: s.key, tool: s.tool })) };
    await res.audit.record(tx, tenantId, {
      ...system,
      action: 'task.planned',
      targetType: 'task',
      targetId: task.id,
      details,
    });
    await res.audit.record(tx, tenantId, {
      ...system,
      action: 'task.approved',
      targetType: 'task',
      targetId: task.id,
      details: { from: 'planning' },
    });
  }
  for (const s of taken) {
    await res.audit.record(tx, tenantId, {
      ...system,
      action: 'step.started',
      targetType: 'step',
      targetId: s.id,
      details: { taskId: s.task_id, tool: s.tool, attempt: 1, approvalId: null },
    });
  }
  return taken.map((s) => ({ step: s, tool: ctx.tools.get(s.tool)!, tenantSlug: ctx.slug }));
}
