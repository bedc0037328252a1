import type { Tx } from '@steward/db/database';
import { actionHash } from '../approvals/action-hash.ts';
import { auditActor, SYSTEM_ACTOR, type Resources } from '../resources.ts';
import {
  FINAL_TASK_STATUSES,
  type ApprovalRow,
  type PlanAction,
  type StepRow,
  type TaskRow,
  type TaskStatus,
} from '../tasks/task-types.ts';
import { enqueue } from './job-queue.ts';

const DONE_OK = new Set(['succeeded']);
const DONE_BAD = new Set(['failed', 'dead', 'cancelled', 'skipped']);

/** Is there an approved, unexpired approval for exactly this step's tool and arguments? */
export function approvedFor(
  step: StepRow,
  approvals: ApprovalRow[],
  now = new Date(),
): ApprovalRow | undefined {
  return approvals.find((a) => {
    if (a.status !== 'approved' || a.expires_at <= now) return false;
    if (a.used_at && a.scope === 'step') {
      // Single use: consumed by this step's own (possibly retried) execution only.
      if (a.step_id !== step.id) return false;
    }
    if (a.scope === 'step') return a.step_id === step.id && a.action_hash === step.action_hash;
    const covered = (a.action as unknown as PlanAction).steps ?? [];
    return covered.some((c) => c.stepId === step.id && c.hash === step.action_hash);
  });
}

export interface AdvanceOptions {
  /** Collects the steps made ready that need no approval instead of queueing them (takeReadySteps). */
  inline?: StepRow[] | undefined;
  /**
   * The task's row as this transaction locked it (FOR UPDATE, or inserted it) and last changed it,
   * to save reading and locking it again; its `status` is kept up to date here.
   */
  locked?: TaskRow | undefined;
  /** The task's steps as this transaction locked and last changed them, in position order. */
  steps?: StepRow[] | undefined;
  /** Collects the task's new status instead of writing it, for the caller to write in bulk (writeTaskStatuses). */
  statuses?: TaskStatusWrite[] | undefined;
}

/** A task status change that `advance` left to its caller (see writeTaskStatuses). */
export interface TaskStatusWrite {
  id: string;
  status: TaskStatus;
  /** When the task reached a final status (ISO time), else null. */
  finishedAt: string | null;
}

/** Write the status changes collected by `advance` in one statement. */
export async function writeTaskStatuses(tx: Tx, tenantId: string, writes: TaskStatusWrite[]): Promise<void> {
  if (!writes.length) return;
  await tx`
    update tasks t set status = x.status, updated_at = now(), finished_at = x.finished_at
    from jsonb_to_recordset(${tx.json(writes.map((w) => ({ id: w.id, status: w.status, finished_at: w.finishedAt })) as never)}::jsonb)
      as x(id uuid, status text, finished_at timestamptz)
    where t.tenant_id = ${tenantId} and t.id = x.id`;
}

/**
 * Move a task forward after anything changed: steps whose dependencies succeeded become ready
 * (queued, or collected in `inline` for the caller to take) or wait for approval; the task's
 * status follows its steps. Runs inside the transaction that made the change, with the task row
 * locked.
 */
export async function advance(
  res: Resources,
  tx: Tx,
  tenantId: string,
  taskId: string,
  { inline, locked, steps: lockedSteps, statuses }: AdvanceOptions = {},
): Promise<TaskStatus> {
  const task =
    locked ??
    (await tx<TaskRow[]>`select * from tasks where tenant_id = ${tenantId} and id = ${taskId} for update`)[0];
  if (!task) return 'failed';
  if (FINAL_TASK_STATUSES.has(task.status) && task.status !== 'failed') return task.status;
  const steps =
    lockedSteps ??
    (await tx<StepRow[]>`
      select * from steps where tenant_id = ${tenantId} and task_id = ${taskId} order by position for update`);
  // Approvals matter only to a step that needs one and may still start.
  const mayNeedApproval = steps.some(
    (s) =>
      s.kind === 'action' && s.needs_approval && (s.status === 'pending' || s.status === 'awaiting_approval'),
  );
  const approvals = mayNeedApproval
    ? await tx<ApprovalRow[]>`
        select * from approvals where tenant_id = ${tenantId} and task_id = ${taskId} and status = 'approved'`
    : [];
  const byKey = new Map(steps.filter((s) => s.kind === 'action').map((s) => [s.key, s]));

  const actions = steps.filter((s) => s.kind === 'action');
  const failed = actions.some((s) => s.status === 'dead' || s.status === 'failed');

  if (!failed && task.status !== 'failed') {
    for (const step of actions) {
      if (step.status !== 'pending' && step.status !== 'awaiting_approval') continue;
      const deps = step.depends_on.map((k) => byKey.get(k));
      if (deps.some((d) => !d || DONE_BAD.has(d.status))) {
        await setStep(tx, step, 'skipped');
        continue;
      }
      if (!deps.every((d) => d && DONE_OK.has(d.status))) continue;
      if (step.needs_approval && !approvedFor(step, approvals)) {
        if (step.status !== 'awaiting_approval') await setStep(tx, step, 'awaiting_approval');
        continue;
      }
      await setStep(tx, step, 'ready');
      if (inline && !step.needs_approval) inline.push(step);
      else await enqueue(tx, 'run-step', { tenantId, stepId: step.id }, { jobKey: `step:${step.id}` });
    }
  }

  let status: TaskStatus;
  if (failed || task.status === 'failed') {
    status = 'failed';
    await startCompensation(res, tx, tenantId, task, steps);
  } else if (actions.every((s) => s.status === 'succeeded' || s.status === 'skipped')) {
    status = actions.some((s) => s.status === 'succeeded') ? 'done' : 'failed';
  } else if (actions.some((s) => s.status === 'awaiting_approval')) {
    status = 'pending_approval';
  } else if (actions.some((s) => s.status === 'running' || s.status === 'succeeded')) {
    status = 'executing';
  } else {
    status = 'approved';
  }
  if (status !== task.status) {
    const final = FINAL_TASK_STATUSES.has(status);
    if (statuses) statuses.push({ id: taskId, status, finishedAt: final ? new Date().toISOString() : null });
    else
      await tx`update tasks set status = ${status}, updated_at = now(), finished_at = ${final ? new Date() : null}
               where tenant_id = ${tenantId} and id = ${taskId}`;
    const from = task.status;
    task.status = status;
    await res.audit.record(tx, tenantId, {
      ...auditActor(SYSTEM_ACTOR),
      action: `task.${status}`,
      targetType: 'task',
      targetId: taskId,
      details: { from },
    });
  }
  return status;
}

async function setStep(tx: Tx, step: StepRow, status: string): Promise<void> {
  step.status = status;
  await tx`update steps set status = ${status}, updated_at = now() where tenant_id = ${step.tenant_id} and id = ${step.id}`;
}

/**
 * After a failure, undo what was done: the declared compensation of every succeeded step, in
 * reverse order, each after the previous one. Created once per task.
 */
async function startCompensation(
  res: Resources,
  tx: Tx,
  tenantId: string,
  task: TaskRow,
  steps: StepRow[],
): Promise<void> {
  if (steps.some((s) => s.kind === 'compensation')) return;
  // Nothing new starts once the plan failed.
  for (const s of steps) {
    if (
      s.kind === 'action' &&
      (s.status === 'pending' || s.status === 'awaiting_approval' || s.status === 'ready')
    ) {
      await setStep(tx, s, 'skipped');
    }
  }
  const done = steps
    .filter((s) => s.kind === 'action' && s.status === 'succeeded' && s.compensation)
    .reverse();
  if (!done.length) return;
  let previous: string | undefined;
  let position = Math.max(...steps.map((s) => s.position)) + 1;
  let first: string | undefined;
  for (const s of done) {
    const key = `undo-${s.key}`;
    const [row] = await tx<{ id: string }[]>`
      insert into steps (tenant_id, task_id, key, position, kind, compensates, tool, args, action_hash, depends_on, risk,
                         status, idempotency_key, max_attempts)
      values (${tenantId}, ${task.id}, ${key}, ${position++}, 'compensation', ${s.id}, ${s.compensation!.tool},
              ${tx.json(s.compensation!.args as never)}, ${actionHash(s.compensation!.tool, s.compensation!.args)},
              ${previous ? [previous] : []}, ${s.risk}, ${first ? 'pending' : 'ready'}, ${`stw-comp-${s.id}`}, 5)
      returning id`;
    if (!first) first = row!.id;
    previous = key;
  }
  await enqueue(tx, 'run-step', { tenantId, stepId: first! }, { jobKey: `step:${first}` });
  await res.audit.record(tx, tenantId, {
    ...auditActor(SYSTEM_ACTOR),
    action: 'task.compensating',
    targetType: 'task',
    targetId: task.id,
    details: { steps: done.map((s) => s.key) },
  });
}

/** After a compensation step finishes, queue the next one (they run strictly in reverse order). */
export async function advanceCompensation(tx: Tx, tenantId: string, taskId: string): Promise<void> {
  const steps = await tx<StepRow[]>`
    select * from steps where tenant_id = ${tenantId} and task_id = ${taskId} and kind = 'compensation' order by position for update`;
  const byKey = new Map(steps.map((s) => [s.key, s]));
  for (const s of steps) {
    if (s.status !== 'pending') continue;
    const deps = s.depends_on.map((k) => byKey.get(k));
    if (deps.every((d) => d && (d.status === 'succeeded' || d.status === 'dead'))) {
      await tx`update steps set status = 'ready', updated_at = now() where tenant_id = ${tenantId} and id = ${s.id}`;
      await enqueue(tx, 'run-step', { tenantId, stepId: s.id }, { jobKey: `step:${s.id}` });
    }
  }
}
