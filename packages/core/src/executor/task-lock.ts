import type { Tx } from '@steward/db/database';

// One lock order everywhere — the task row first, then its steps and approvals — so concurrent
// workers and deciders queue up on the task instead of deadlocking on each other's rows.

export async function lockTaskOfStep(tx: Tx, tenantId: string, stepId: string): Promise<void> {
  await tx`select 1 from tasks where tenant_id = ${tenantId}
             and id = (select task_id from steps where tenant_id = ${tenantId} and id = ${stepId}) for update`;
}

export async function lockTaskOfApproval(tx: Tx, tenantId: string, approvalId: string): Promise<void> {
  await tx`select 1 from tasks where tenant_id = ${tenantId}
             and id = (select task_id from approvals where tenant_id = ${tenantId} and id = ${approvalId}) for update`;
}
