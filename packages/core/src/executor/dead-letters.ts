import { conflict, notFound } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { decodeCursor, encodeCursor, type Page } from '../shared/cursor.ts';
import { toStepView, type StepView } from '../tasks/task-service.ts';
import type { StepRow, TaskRow } from '../tasks/task-types.ts';
import { enqueue } from './job-queue.ts';
import { lockTaskOfStep } from './task-lock.ts';

export async function listDeadLetters(
  res: Resources,
  tenantId: string,
  q: { limit: number; cursor?: string | undefined },
): Promise<Page<StepView & { taskId: string }>> {
  const before = decodeCursor(q.cursor, ['t', 'id']);
  return res.db.withTenant(tenantId, async (tx) => {
    const rows = await tx<(StepRow & { cursor_t: string })[]>`
      select *, updated_at::text as cursor_t from steps where tenant_id = ${tenantId} and status = 'dead'
        ${before ? tx`and (updated_at, id) < (${before.t}::text::timestamptz, ${before.id}::uuid)` : tx``}
      order by updated_at desc, id desc limit ${q.limit + 1}`;
    const items = rows.slice(0, q.limit).map((s) => ({ ...toStepView(s), taskId: s.task_id }));
    const last = rows[q.limit - 1];
    return {
      items,
      nextCursor: rows.length > q.limit && last ? encodeCursor({ t: last.cursor_t, id: last.id }) : null,
    };
  });
}

/**
 * A person retries a dead step: it runs once more with the same idempotency key (so a call that
 * did reach its receiver is not repeated there). Not possible once compensation has started.
 */
export async function retryDeadLetter(
  res: Resources,
  tenantId: string,
  actor: Actor,
  stepId: string,
): Promise<string> {
  return res.db.withTenant(tenantId, async (tx) => {
    await lockTaskOfStep(tx, tenantId, stepId);
    const [step] = await tx<
      StepRow[]
    >`select * from steps where tenant_id = ${tenantId} and id = ${stepId} for update`;
    if (!step) throw notFound('step');
    if (step.status !== 'dead') throw conflict(`the step is ${step.status}, not a dead letter`);
    const [task] = await tx<
      TaskRow[]
    >`select * from tasks where tenant_id = ${tenantId} and id = ${step.task_id} for update`;
    if (!task || task.status === 'cancelled') throw conflict('the task was cancelled');
    const [comp] =
      await tx`select 1 from steps where tenant_id = ${tenantId} and task_id = ${step.task_id} and kind = 'compensation' and status <> 'pending' limit 1`;
    if (comp && step.kind === 'action') throw conflict('compensation has already started for this task');
    if (step.kind === 'action') {
      // No compensation step exists here: the first one is created ready, so the check above refuses.
      await tx`update steps set status = 'pending', updated_at = now()
               where tenant_id = ${tenantId} and task_id = ${step.task_id} and kind = 'action' and status = 'skipped'`;
      await tx`update tasks set status = 'executing', finished_at = null, updated_at = now() where tenant_id = ${tenantId} and id = ${step.task_id}`;
    }
    await tx`update steps set status = 'ready', max_attempts = attempts + 1, error = null, updated_at = now()
             where tenant_id = ${tenantId} and id = ${stepId}`;
    await enqueue(tx, 'run-step', { tenantId, stepId }, { jobKey: `step:${stepId}` });
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'step.retried',
      targetType: 'step',
      targetId: stepId,
      details: { taskId: step.task_id },
    });
    return step.task_id;
  });
}
