import type { Tx } from '@steward/db/database';
import { actionHash } from '../approvals/action-hash.ts';
import { auditActor, SYSTEM_ACTOR, type Resources } from '../resources.ts';
import type { ApprovalRow, StepRow, TaskRow } from '../tasks/task-types.ts';
import { ToolError, type Tool } from '../tools/tool.ts';
import { advance, advanceCompensation, approvedFor } from './advance.ts';
import { enqueue, enqueueMany, enqueueTimer } from './job-queue.ts';
import { lockTaskOfStep } from './task-lock.ts';
import { toolsForTenant } from '../mcp/mcp-service.ts';

/** Exponential backoff with full jitter: 1 s, 2 s, 4 s, ... capped at 5 minutes. */
export function backoffMs(attempt: number, random = Math.random): number {
  const ceiling = Math.min(300_000, 1000 * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** Error details safe to store and show: a code and a message, never a stack or a secret-bearing cause. */
function errorInfo(error: unknown): { code: string; message: string; retryable: boolean } {
  if (error instanceof ToolError)
    return { code: error.code, message: error.message.slice(0, 1000), retryable: error.retryable };
  if ((error as Error)?.name === 'AbortError')
    return { code: 'CANCELLED', message: 'the call was cancelled', retryable: false };
  return {
    code: 'TOOL_FAILED',
    message: String((error as Error)?.message ?? error).slice(0, 1000),
    retryable: true,
  };
}

/** A step this worker holds the lease of: it runs the tool, then finishes the step. */
export interface TakenStep {
  step: StepRow;
  tool: Tool;
  tenantSlug: string;
}

/**
 * The job key of the reaper of one attempt of a step. Per attempt, so the reaper of a new attempt
 * never collides with the previous attempt's reaper job while that one is still running.
 */
export function reaperKey(stepId: string, attempt: number): string {
  return `reap:${stepId}:${attempt}`;
}

/** How late a held-back step's own job runs if no finishing step wakes it first. */
export const THROTTLE_BACKSTOP_MS = 2000;

/**
 * Steps of the tenant left `running`, so slots are free: queue the steps that have waited longest
 * for one now (their backstop jobs are moved forward), one per slot. SKIP LOCKED: never waits for
 * another task's row. The candidates are chosen once (`array(...)`): as `id in (subquery)` the
 * planner may run the subquery again per row, and steps held back together tie on throttled_at, so
 * each run could pick others and more steps than slots were woken. With `reapers` (job keys), the
 * same statement deletes those reaper jobs (see storeOutcome).
 */
export async function wakeThrottled(
  tx: Tx,
  tenantId: string,
  reapers: string[] = [],
  slots = 1,
): Promise<void> {
  const woken = await tx<{ id: string }[]>`
    ${
      reapers.length
        ? tx`with reaper as (
               delete from graphile_worker._private_jobs where key = any(${reapers}::text[]) and locked_at is null)`
        : tx``
    }
    update steps set throttled_at = null
    where tenant_id = ${tenantId} and id = any(array(
      select id from steps where tenant_id = ${tenantId} and throttled_at is not null and status = 'ready'
      order by throttled_at, id limit ${slots} for update skip locked))
    returning id`;
  await enqueueMany(
    tx,
    'run-step',
    woken.map((w) => ({ payload: { tenantId, stepId: w.id }, jobKey: `step:${w.id}` })),
  );
}

type Claim = { kind: 'skip' } | ({ kind: 'run' } & TakenStep);

/**
 * The tenant's free step slots, counted once per transaction when many steps are taken in it (a
 * batch of tasks planned together), instead of once per step.
 */
export interface StepBudget {
  free?: number;
}

/** The tenant's free step slots: its limit less its running steps, counted once per budget. */
export async function freeSlots(
  res: Resources,
  tx: Tx,
  tenantId: string,
  settings: Record<string, unknown>,
  budget: StepBudget,
): Promise<number> {
  if (budget.free === undefined) {
    const limit =
      Number((settings as { maxConcurrentSteps?: unknown }).maxConcurrentSteps) ||
      res.executor.tenantConcurrency;
    const [{ n } = { n: '0' }] = await tx<{ n: string }[]>`
      select count(*) as n from steps where tenant_id = ${tenantId} and status = 'running' and lease_expires_at > now()`;
    budget.free = limit - Number(n);
  }
  return budget.free;
}

/**
 * Take the lease of a `ready` step in the caller's transaction (the task row locked): the tenant's
 * concurrency limit, then `running` with a lease, the approval consumed, the reaper's job, the audit
 * entry. At the limit the step stays `ready` and its `run-step` job is queued again: false.
 */
async function take(
  res: Resources,
  tx: Tx,
  step: StepRow,
  task: TaskRow,
  settings: Record<string, unknown>,
  approval: ApprovalRow | undefined,
  budget: StepBudget = {},
): Promise<boolean> {
  const tenantId = step.tenant_id;
  const stepId = step.id;
  if ((await freeSlots(res, tx, tenantId, settings, budget)) <= 0) {
    // Fairness: this tenant is at its limit. The step waits in line (throttled_at) without holding a
    // worker: the next step of the tenant to leave `running` wakes it (wakeThrottled); the job queued
    // here is only the backstop for a wake-up missed by a race.
    await tx`update steps set throttled_at = coalesce(throttled_at, now())
             where tenant_id = ${tenantId} and id = ${stepId}`;
    await enqueue(
      tx,
      'run-step',
      { tenantId, stepId },
      { jobKey: `step:${stepId}`, runAt: new Date(Date.now() + THROTTLE_BACKSTOP_MS) },
    );
    return false;
  }
  budget.free = (budget.free ?? 0) - 1;
  const lease = new Date(Date.now() + res.executor.leaseSeconds * 1000);
  await tx`update steps set status = 'running', attempts = attempts + 1, lease_expires_at = ${lease},
             throttled_at = null, started_at = coalesce(started_at, now()), updated_at = now()
           where tenant_id = ${tenantId} and id = ${stepId}`;
  step.attempts += 1;
  step.status = 'running';
  if (approval && approval.scope === 'step' && !approval.used_at) {
    await tx`update approvals set used_at = now() where tenant_id = ${tenantId} and id = ${approval.id}`;
  }
  // Compensation runs for a task that already failed: it stays failed.
  if (step.kind === 'action' && task.status !== 'executing') {
    await tx`update tasks set status = 'executing', updated_at = now() where tenant_id = ${tenantId} and id = ${task.id}`;
    task.status = 'executing';
  }
  // If this worker dies, the reaper picks the step up when the lease runs out (one reaper job per
  // attempt, queued without waking the workers: it is due a lease from now).
  await enqueueTimer(
    tx,
    'reap-step',
    { tenantId, stepId },
    { runAt: new Date(lease.getTime() + 1000), jobKey: reaperKey(stepId, step.attempts) },
  );
  await res.audit.record(tx, tenantId, {
    ...auditActor(SYSTEM_ACTOR),
    action: 'step.started',
    targetType: 'step',
    targetId: stepId,
    details: {
      taskId: step.task_id,
      tool: step.tool,
      attempt: step.attempts,
      approvalId: approval?.id ?? null,
    },
  });
  return true;
}

/**
 * Take the steps that `advance` made ready (no approval needed) straight away, in the transaction
 * that made them ready, instead of a `run-step` job round trip each: the caller runs them with
 * `executeStep` after its commit. A step over the tenant's limit gets its job as usual.
 */
export async function takeReadySteps(
  res: Resources,
  tx: Tx,
  task: TaskRow,
  ready: StepRow[],
  tools: ReadonlyMap<string, Tool>,
  tenant: { slug: string; settings: Record<string, unknown> },
  budget: StepBudget = {},
): Promise<TakenStep[]> {
  const taken: TakenStep[] = [];
  for (const step of ready) {
    const tool = tools.get(step.tool);
    if (!tool || step.needs_approval || actionHash(step.tool, step.args) !== step.action_hash) {
      await enqueue(
        tx,
        'run-step',
        { tenantId: step.tenant_id, stepId: step.id },
        { jobKey: `step:${step.id}` },
      );
      continue;
    }
    if (await take(res, tx, step, task, tenant.settings, undefined, budget))
      taken.push({ step, tool, tenantSlug: tenant.slug });
  }
  return taken;
}

/**
 * Claim a step for execution, in its own transaction: re-check everything (task not cancelled,
 * approval still valid for exactly these arguments, tenant under its concurrency limit), take a
 * lease and consume the approval. Returns what to run, or nothing.
 */
async function claim(res: Resources, tenantId: string, stepId: string): Promise<Claim> {
  return res.db.withTenant(tenantId, async (tx) => {
    const task = await lockTaskOfStep(tx, tenantId, stepId);
    const [step] = await tx<
      StepRow[]
    >`select * from steps where tenant_id = ${tenantId} and id = ${stepId} for update`;
    if (!step || !task) return { kind: 'skip' };
    const expiredLease =
      step.status === 'running' && step.lease_expires_at !== null && step.lease_expires_at <= new Date();
    if (step.status !== 'ready' && !expiredLease) return { kind: 'skip' };
    if (expiredLease) {
      // A re-delivered job of a step whose worker died: recovered like the reaper does (counted, capped).
      await recoverLost(res, tx, step);
      return { kind: 'skip' };
    }
    if (task.cancel_requested || task.status === 'cancelled') {
      await tx`update steps set status = 'cancelled', updated_at = now() where tenant_id = ${tenantId} and id = ${stepId}`;
      return { kind: 'skip' };
    }
    const [tenant] = await tx<{ slug: string; settings: Record<string, unknown> }[]>`
      select slug, settings from tenants where id = ${tenantId}`;
    const tool = (await toolsForTenant(res, tx, tenantId, tenant?.settings ?? {})).get(step.tool);
    if (!tool) {
      await finish(res, tx, step, 'dead', null, {
        code: 'TOOL_UNAVAILABLE',
        message: `tool ${step.tool} is not available`,
        retryable: false,
      });
      return { kind: 'skip' };
    }
    // The arguments must still be exactly what was planned (and approved).
    if (actionHash(step.tool, step.args) !== step.action_hash) {
      await finish(res, tx, step, 'dead', null, {
        code: 'ACTION_CHANGED',
        message: 'the step no longer matches its approved action',
        retryable: false,
      });
      return { kind: 'skip' };
    }
    let approval: ApprovalRow | undefined;
    if (step.kind === 'action' && step.needs_approval) {
      const approvals = await tx<ApprovalRow[]>`
        select * from approvals where tenant_id = ${tenantId} and task_id = ${step.task_id} and status = 'approved'`;
      approval = approvedFor(step, approvals);
      if (!approval) {
        await tx`update steps set status = 'awaiting_approval', updated_at = now() where tenant_id = ${tenantId} and id = ${stepId}`;
        await advance(res, tx, tenantId, step.task_id);
        return { kind: 'skip' };
      }
    }
    const taken = await take(res, tx, step, task, tenant?.settings ?? {}, approval);
    if (!taken) return { kind: 'skip' };
    return { kind: 'run', step, tool, tenantSlug: tenant!.slug };
  });
}

/**
 * The worker running a step died mid-call (its lease ran out). The lost run already counted as an
 * attempt when it was claimed. A tool that is never retried automatically (a payment) becomes a dead
 * letter at once: whether its side effect happened is unknown, so a person checks and retries it by
 * hand. A retryable tool runs again with the same idempotency key after a backoff, until its attempts
 * are used up; then it is a dead letter too (WORKER_LOST), so a step that keeps killing its worker
 * cannot loop forever. From the reaper and from a re-delivered job alike.
 */
async function recoverLost(res: Resources, tx: Tx, step: StepRow): Promise<void> {
  const tenantId = step.tenant_id;
  // The lost run leaves `running`: its slot goes to the tenant's longest-waiting step.
  await wakeThrottled(tx, tenantId);
  if (!step.retryable || step.attempts >= step.max_attempts) {
    return finish(res, tx, step, 'dead', null, {
      code: 'WORKER_LOST',
      message: step.retryable
        ? `the worker running this step stopped mid-call on each of its ${step.attempts} attempts; check its effect, then retry the dead letter by hand`
        : 'the worker running this step stopped mid-call; this tool is never retried automatically: check its effect, then retry the dead letter by hand',
      retryable: false,
    });
  }
  const runAt = new Date(Date.now() + backoffMs(step.attempts));
  const error = {
    code: 'WORKER_LOST',
    message: 'the worker running this step stopped mid-call',
    retryable: true,
  };
  await tx`update steps set status = 'ready', error = ${tx.json(error as never)}, lease_expires_at = null,
             next_attempt_at = ${runAt}, updated_at = now() where tenant_id = ${tenantId} and id = ${step.id}`;
  await res.audit.append(tx, tenantId, {
    ...auditActor(SYSTEM_ACTOR),
    action: 'step.recovered',
    targetType: 'step',
    targetId: step.id,
    details: { taskId: step.task_id, attempt: step.attempts, maxAttempts: step.max_attempts },
  });
  await enqueue(tx, 'run-step', { tenantId, stepId: step.id }, { jobKey: `step:${step.id}`, runAt });
}

/** The audit entry of a step that finished (its status already set): step.succeeded or step.failed. */
export async function recordFinished(
  res: Resources,
  tx: Tx,
  step: StepRow,
  error: { code: string } | null,
): Promise<void> {
  const ok = step.status === 'succeeded';
  await res.audit.record(tx, step.tenant_id, {
    ...auditActor(SYSTEM_ACTOR),
    action: ok ? 'step.succeeded' : 'step.failed',
    outcome: ok ? 'success' : 'failure',
    targetType: 'step',
    targetId: step.id,
    details: { taskId: step.task_id, tool: step.tool, attempt: step.attempts, error: error?.code ?? null },
  });
}

async function finish(
  res: Resources,
  tx: Tx,
  step: StepRow,
  status: 'succeeded' | 'dead' | 'failed',
  result: Record<string, unknown> | null,
  error: { code: string; message: string; retryable: boolean } | null,
  /** The step's task as this transaction locked it, if it did (see advance). */
  task?: TaskRow,
): Promise<void> {
  const tenantId = step.tenant_id;
  await tx`update steps set status = ${status}, result = ${result ? tx.json(result as never) : null},
             error = ${error ? tx.json(error as never) : null}, lease_expires_at = null, finished_at = now(), updated_at = now()
           where tenant_id = ${tenantId} and id = ${step.id}`;
  step.status = status;
  await recordFinished(res, tx, step, error);
  if (step.kind === 'compensation') {
    if (status === 'succeeded' && step.compensates) {
      await tx`update steps set status = 'compensated', updated_at = now() where tenant_id = ${tenantId} and id = ${step.compensates}`;
    }
    await advanceCompensation(tx, tenantId, step.task_id);
  } else {
    await advance(res, tx, tenantId, step.task_id, { locked: task });
  }
}

/**
 * The `run-step` job. At-least-once: the call carries the step's idempotency key, and its result
 * is stored in the same transaction that marks the step done. Retryable failures of retryable
 * tools are tried again with backoff; anything else becomes a dead letter.
 */
export async function runStep(res: Resources, tenantId: string, stepId: string): Promise<void> {
  const c = await claim(res, tenantId, stepId);
  if (c.kind === 'skip') return;
  await executeStep(res, c);
}

/** Run a step this worker took the lease of, and store its outcome (see runStep). */
export async function executeStep(res: Resources, taken: TakenStep): Promise<void> {
  const outcome = await callTool(res, taken);
  await res.db.withTenant(taken.step.tenant_id, (tx) => storeOutcome(res, tx, outcome));
}

/** What a step's tool call came to: its result, or the error to store (safe to show). */
export interface StepOutcome {
  taken: TakenStep;
  result: Record<string, unknown> | null;
  error: { code: string; message: string; retryable: boolean } | null;
}

/**
 * Call the tool of a step this worker holds the lease of, with the step's idempotency key; the
 * lease is renewed while the call runs, and a cancel aborts it. Never throws: a failure is the
 * outcome's error.
 */
export async function callTool(res: Resources, taken: TakenStep): Promise<StepOutcome> {
  const { step, tool, tenantSlug } = taken;
  const tenantId = step.tenant_id;
  const stepId = step.id;
  const controller = new AbortController();
  res.executor.running.set(step.id, controller);
  const heartbeat = setInterval(
    () => {
      const lease = new Date(Date.now() + res.executor.leaseSeconds * 1000);
      void res.db
        .withTenant(
          tenantId,
          (tx) =>
            tx`update steps set lease_expires_at = ${lease} where tenant_id = ${tenantId} and id = ${stepId} and status = 'running'`,
        )
        .catch(() => {});
    },
    (res.executor.leaseSeconds * 1000) / 3,
  );
  heartbeat.unref();
  try {
    const result = await tool.execute(
      {
        tenantId,
        tenantSlug,
        taskId: step.task_id,
        idempotencyKey: step.idempotency_key,
        signal: controller.signal,
        withTenant: (fn) => res.db.withTenant(tenantId, fn),
      },
      step.args,
    );
    return { taken, result, error: null };
  } catch (e) {
    const error = errorInfo(
      controller.signal.aborted ? Object.assign(new Error('aborted'), { name: 'AbortError' }) : e,
    );
    return { taken, result: null, error };
  } finally {
    clearInterval(heartbeat);
    res.executor.running.delete(step.id);
  }
}

/**
 * Store a step's outcome in the caller's transaction: succeeded (and the task moves on), tried again
 * later, cancelled, or a dead letter. `locked`: the step's task row, if the caller locked it already.
 */
export async function storeOutcome(
  res: Resources,
  tx: Tx,
  { taken, result, error }: StepOutcome,
  locked?: TaskRow,
): Promise<void> {
  const { step, tool } = taken;
  const tenantId = step.tenant_id;
  const stepId = step.id;
  const task = locked ?? (await lockTaskOfStep(tx, tenantId, stepId));
  const [current] = await tx<
    StepRow[]
  >`select * from steps where tenant_id = ${tenantId} and id = ${stepId} for update`;
  // Another worker took over after our lease ran out and already finished: keep its outcome.
  if (!current || !task || current.status !== 'running') return;
  // The step leaves `running` below in every branch: its reaper job has nothing left to do, and
  // its slot goes to the tenant's longest-waiting step.
  // (A plain delete, not remove_job: that one NOTIFYs every worker of a job that is gone.)
  await wakeThrottled(tx, tenantId, [reaperKey(stepId, current.attempts)]);
  current.attempts = Math.max(current.attempts, step.attempts);
  if (!error) {
    await rememberRecipients(tx, tenantId, tool.recipients?.(current.args) ?? []);
    return finish(res, tx, current, 'succeeded', result, null, task);
  }
  if (task.cancel_requested) {
    await tx`update steps set status = 'cancelled', error = ${tx.json(error as never)}, lease_expires_at = null,
               finished_at = now(), updated_at = now() where tenant_id = ${tenantId} and id = ${stepId}`;
    return;
  }
  if (error.retryable && current.retryable && current.attempts < current.max_attempts) {
    const runAt = new Date(Date.now() + backoffMs(current.attempts));
    await tx`update steps set status = 'ready', error = ${tx.json(error as never)}, lease_expires_at = null,
               next_attempt_at = ${runAt}, updated_at = now() where tenant_id = ${tenantId} and id = ${stepId}`;
    await enqueue(tx, 'run-step', { tenantId, stepId }, { jobKey: `step:${stepId}`, runAt });
    return;
  }
  return finish(res, tx, current, 'dead', null, error, task);
}

/** Remember who the tenant has now sent to or paid (the new-recipient rule), lower case. */
export async function rememberRecipients(tx: Tx, tenantId: string, recipients: string[]): Promise<void> {
  const unique = [...new Set(recipients.map((r) => r.toLowerCase()))];
  if (!unique.length) return;
  await tx`insert into known_recipients (tenant_id, value)
           select ${tenantId}, unnest(${unique}::text[]) on conflict do nothing`;
}

/**
 * The `reap-step` job, scheduled just after a step's lease: if the step is still running and its
 * lease ran out (the worker died or hung), hand it to another attempt with the same idempotency key
 * (after a backoff, while it has attempts left; else it becomes a WORKER_LOST dead letter).
 */
export async function reapStep(res: Resources, tenantId: string, stepId: string): Promise<void> {
  await res.db.withTenant(tenantId, async (tx) => {
    await lockTaskOfStep(tx, tenantId, stepId);
    const [step] = await tx<
      StepRow[]
    >`select * from steps where tenant_id = ${tenantId} and id = ${stepId} for update`;
    if (!step || step.status !== 'running') return;
    if (step.lease_expires_at && step.lease_expires_at > new Date()) {
      await enqueue(
        tx,
        'reap-step',
        { tenantId, stepId },
        {
          runAt: new Date(step.lease_expires_at.getTime() + 1000),
          jobKey: reaperKey(stepId, step.attempts),
        },
      );
      return;
    }
    await recoverLost(res, tx, step);
  });
}
