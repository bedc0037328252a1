import { randomUUID } from 'node:crypto';
import { AppError, conflict, forbidden, invalid, notFound } from '../errors/app-error.ts';
import { advance } from '../executor/advance.ts';
import { enqueue } from '../executor/job-queue.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { decodeCursor, encodeCursor, type Page } from '../shared/cursor.ts';
import { approvalViews, type ApprovalView } from '../tasks/task-service.ts';
import type { ApprovalRow, StepRow, TaskRow } from '../tasks/task-types.ts';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { actionHash } from './action-hash.ts';
import { decideStep, policyFromSettings } from './approval-policy.ts';
import { lockTaskOfApproval } from '../executor/task-lock.ts';
import { toolsForTenant } from '../mcp/mcp-service.ts';

export async function listApprovals(
  res: Resources,
  tenantId: string,
  q: { limit: number; cursor?: string | undefined; status?: string | undefined; taskId?: string | undefined },
): Promise<Page<ApprovalView>> {
  const before = decodeCursor(q.cursor, ['t', 'id']);
  return res.db.withTenant(tenantId, async (tx) => {
    const rows = await tx<(ApprovalRow & { cursor_t: string })[]>`
      select *, created_at::text as cursor_t from approvals where tenant_id = ${tenantId}
        ${q.status ? tx`and status = ${q.status}` : tx``}
        ${q.taskId ? tx`and task_id = ${q.taskId}` : tx``}
        ${before ? tx`and (created_at, id) < (${before.t}::text::timestamptz, ${before.id}::uuid)` : tx``}
      order by created_at desc, id desc limit ${q.limit + 1}`;
    const page = rows.slice(0, q.limit);
    const last = rows[q.limit - 1];
    return {
      items: await approvalViews(tx, tenantId, page),
      nextCursor: rows.length > q.limit && last ? encodeCursor({ t: last.cursor_t, id: last.id }) : null,
    };
  });
}

export async function getApproval(res: Resources, tenantId: string, id: string): Promise<ApprovalView> {
  return res.db.withTenant(tenantId, async (tx) => {
    const rows = await tx<
      ApprovalRow[]
    >`select * from approvals where tenant_id = ${tenantId} and id = ${id}`;
    if (!rows.length) throw notFound('approval');
    return (await approvalViews(tx, tenantId, rows))[0]!;
  });
}

export interface DecisionInput {
  decision: 'approve' | 'reject';
  comment?: string | undefined;
  /** Approve edited arguments instead (step approvals only): creates a new approval for them. */
  args?: Record<string, unknown> | undefined;
}

export interface DecisionResult {
  approval: ApprovalView;
  /** Set when edited arguments replaced the action: the new approval to decide. */
  replacedBy?: ApprovalView;
}

/**
 * Decide an approval. Each approver decides once; `quorum` distinct approvals approve it; any
 * rejection rejects it (and the task). The requester may not approve when the policy forbids
 * self-approval. A decided, expired or superseded approval answers 409. Editing the arguments
 * supersedes this approval with a new one for the edited action, which still needs approval.
 */
export async function decideApproval(
  res: Resources,
  tenantId: string,
  actor: Actor & { id: string },
  approvalId: string,
  input: DecisionInput,
): Promise<DecisionResult> {
  try {
    return await decideInTx(res, tenantId, actor, approvalId, input);
  } catch (error) {
    // The refusal rolled its transaction back; record the expiry (and its audit entry) on its own.
    if (error instanceof ApprovalExpired) await expireApproval(res, tenantId, approvalId);
    throw error;
  }
}

class ApprovalExpired extends AppError {
  constructor() {
    super('CONFLICT', 'the approval has expired');
  }
}

function decideInTx(
  res: Resources,
  tenantId: string,
  actor: Actor & { id: string },
  approvalId: string,
  input: DecisionInput,
): Promise<DecisionResult> {
  return res.db.withTenant(tenantId, async (tx) => {
    await lockTaskOfApproval(tx, tenantId, approvalId);
    const [a] = await tx<
      ApprovalRow[]
    >`select * from approvals where tenant_id = ${tenantId} and id = ${approvalId} for update`;
    if (!a) throw notFound('approval');
    if (a.status === 'pending' && a.expires_at <= new Date()) throw new ApprovalExpired();
    if (a.status !== 'pending') throw conflict(`the approval was already ${a.status}`);
    if (
      input.decision === 'approve' &&
      a.forbid_self &&
      a.requested_by_id &&
      a.requested_by_id === actor.id
    ) {
      throw forbidden('you started this task, so someone else must approve it');
    }
    const [already] = await tx`
      select 1 from approval_decisions where tenant_id = ${tenantId} and approval_id = ${approvalId}
        and actor_type = ${actor.type} and actor_id = ${actor.id}`;
    if (already) throw conflict('you have already decided this approval');

    if (input.args !== undefined) {
      if (input.decision !== 'approve') throw invalid('body/args can only be given with an approve decision');
      const replaced = await supersede(res, tx, tenantId, actor, a, input.args);
      return {
        approval: (await approvalViews(tx, tenantId, [{ ...a, status: 'superseded' }]))[0]!,
        replacedBy: replaced,
      };
    }

    await tx`insert into approval_decisions (tenant_id, approval_id, actor_type, actor_id, actor_label, decision, comment)
             values (${tenantId}, ${approvalId}, ${actor.type}, ${actor.id}, ${actor.label ?? null}, ${input.decision},
                     ${input.comment ?? null})`;
    let status = 'pending';
    if (input.decision === 'reject') status = 'rejected';
    else {
      const [{ n } = { n: '0' }] = await tx<{ n: string }[]>`
        select count(*) as n from approval_decisions
        where tenant_id = ${tenantId} and approval_id = ${approvalId} and decision = 'approve'`;
      if (Number(n) >= a.quorum) status = 'approved';
    }
    if (status !== 'pending') {
      await tx`update approvals set status = ${status}, decided_at = now() where tenant_id = ${tenantId} and id = ${approvalId}`;
    }
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: `approval.${input.decision === 'approve' ? 'approved' : 'rejected'}`,
      targetType: 'approval',
      targetId: approvalId,
      details: {
        taskId: a.task_id,
        stepId: a.step_id,
        actionHash: a.action_hash,
        quorumReached: status === 'approved',
        comment: input.comment ?? null,
      },
    });
    if (status === 'rejected') await rejectTask(res, tx, tenantId, a.task_id, actor);
    else if (status === 'approved') await advance(res, tx, tenantId, a.task_id);
    const [fresh] = await tx<
      ApprovalRow[]
    >`select * from approvals where tenant_id = ${tenantId} and id = ${approvalId}`;
    return { approval: (await approvalViews(tx, tenantId, [fresh!]))[0]! };
  });
}

async function rejectTask(
  res: Resources,
  tx: import('@steward/db/database').Tx,
  tenantId: string,
  taskId: string,
  actor: Actor,
) {
  await tx`update approvals set status = 'cancelled' where tenant_id = ${tenantId} and task_id = ${taskId} and status = 'pending'`;
  await tx`update steps set status = 'skipped', updated_at = now()
           where tenant_id = ${tenantId} and task_id = ${taskId} and status in ('pending', 'awaiting_approval', 'ready')`;
  await tx`update tasks set status = 'rejected', finished_at = now(), updated_at = now() where tenant_id = ${tenantId} and id = ${taskId}`;
  await res.audit.append(tx, tenantId, {
    ...auditActor(actor),
    action: 'task.rejected',
    targetType: 'task',
    targetId: taskId,
  });
}

/** Replace a step approval's action with edited arguments: a new approval, decided from scratch. */
async function supersede(
  res: Resources,
  tx: import('@steward/db/database').Tx,
  tenantId: string,
  actor: Actor,
  a: ApprovalRow,
  args: Record<string, unknown>,
): Promise<ApprovalView> {
  if (a.scope !== 'step' || !a.step_id) throw invalid('only step approvals can be edited');
  const [step] = await tx<
    StepRow[]
  >`select * from steps where tenant_id = ${tenantId} and id = ${a.step_id} for update`;
  const [task] = await tx<TaskRow[]>`select * from tasks where tenant_id = ${tenantId} and id = ${a.task_id}`;
  const [tenant] = await tx<
    { settings: Record<string, unknown> }[]
  >`select settings from tenants where id = ${tenantId}`;
  const tool = (await toolsForTenant(res, tx, tenantId, tenant?.settings ?? {})).get(step!.tool);
  if (!step || !task || !tool) throw conflict('the step can no longer be edited');
  const checker = TypeCompiler.Compile(tool.args);
  if (!checker.Check(args)) {
    const e = checker.Errors(args).First();
    throw invalid(`body/args${e?.path ?? ''} ${e?.message ?? 'is invalid'} for ${tool.name}`);
  }
  const policy = policyFromSettings(tenant?.settings ?? {});
  const recipients = (tool.recipients?.(args) ?? []).map((r) => r.toLowerCase());
  const known = new Set(
    recipients.length
      ? (
          await tx<
            { value: string }[]
          >`select value from known_recipients where tenant_id = ${tenantId} and value = any(${recipients}::text[])`
        ).map((r) => r.value)
      : [],
  );
  const decision = decideStep(policy, tool, args, {
    plannerRisk: step.risk as never,
    knownRecipients: known,
  });
  const hash = actionHash(step.tool, args);
  const newId = randomUUID();
  const expiresAt = new Date(Date.now() + policy.expiresInMinutes * 60_000);
  await tx`update steps set args = ${tx.json(args as never)}, action_hash = ${hash}, needs_approval = true,
             approval_reasons = ${[...decision.reasons, 'arguments edited before approval']}, updated_at = now()
           where tenant_id = ${tenantId} and id = ${step.id}`;
  await tx`insert into approvals (tenant_id, id, task_id, step_id, scope, action_hash, action, preview, reasons, quorum,
                                  forbid_self, requested_by_type, requested_by_id, expires_at)
           values (${tenantId}, ${newId}, ${a.task_id}, ${step.id}, 'step', ${hash}, ${tx.json({ tool: step.tool, args } as never)},
                   ${tx.json(tool.preview(args) as never)}, ${[...decision.reasons, 'arguments edited before approval']},
                   ${a.quorum}, ${a.forbid_self}, ${a.requested_by_type}, ${a.requested_by_id}, ${expiresAt})`;
  await tx`update approvals set status = 'superseded', superseded_by = ${newId}, decided_at = now()
           where tenant_id = ${tenantId} and id = ${a.id}`;
  await enqueue(
    tx,
    'expire-approval',
    { tenantId, approvalId: newId },
    { runAt: expiresAt, jobKey: `expire:${newId}` },
  );
  await res.audit.append(tx, tenantId, {
    ...auditActor(actor),
    action: 'approval.edited',
    targetType: 'approval',
    targetId: a.id,
    details: {
      taskId: a.task_id,
      stepId: step.id,
      newApprovalId: newId,
      oldHash: a.action_hash,
      newHash: hash,
    },
  });
  const rows = await tx<
    ApprovalRow[]
  >`select * from approvals where tenant_id = ${tenantId} and id = ${newId}`;
  return (await approvalViews(tx, tenantId, rows))[0]!;
}

/** The `expire-approval` job: a pending approval past its time expires, and its task waits for a person. */
export async function expireApproval(res: Resources, tenantId: string, approvalId: string): Promise<void> {
  await res.db.withTenant(tenantId, async (tx) => {
    await lockTaskOfApproval(tx, tenantId, approvalId);
    const [a] = await tx<
      ApprovalRow[]
    >`select * from approvals where tenant_id = ${tenantId} and id = ${approvalId} for update`;
    if (!a || a.status !== 'pending' || a.expires_at > new Date()) return;
    await tx`update approvals set status = 'expired', decided_at = now() where tenant_id = ${tenantId} and id = ${approvalId}`;
    await tx`update tasks set status = 'needs_action', needs_action_reason = 'an approval expired before anyone decided it',
               updated_at = now() where tenant_id = ${tenantId} and id = ${a.task_id} and status = 'pending_approval'`;
    await res.audit.append(tx, tenantId, {
      actorType: 'system',
      actorLabel: 'steward',
      action: 'approval.expired',
      targetType: 'approval',
      targetId: approvalId,
      details: { taskId: a.task_id },
    });
  });
}
