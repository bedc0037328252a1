import type { Tx } from '@steward/db/database';
import type { TaskRow } from '../tasks/task-types.ts';

// One lock order everywhere — the task row first, then its steps and approvals — so concurrent
// workers and deciders queue up on the task instead of deadlocking on each other's rows.

/** Lock the task of a step and return its row as locked (current for the rest of the transaction). */
export async function lockTaskOfStep(tx: Tx, tenantId: string, stepId: string): Promise<TaskRow | undefined> {
  const [task] = await tx<TaskRow[]>`select * from tasks where tenant_id = ${tenantId}
             and id = (select task_id from steps where tenant_id = ${tenantId} and id = ${stepId}) for update`;
  return task;
}

export async function lockTaskOfApproval(tx: Tx, tenantId: string, approvalId: string): Promise<void> {
  await tx`select 1 from tasks where tenant_id = ${tenantId}
             and id = (select task_id from approvals where tenant_id = ${tenantId} and id = ${approvalId}) for update`;
}
