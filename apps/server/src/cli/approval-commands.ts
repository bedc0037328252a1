import { Option, type Command } from 'commander';
import { decideApproval, listApprovals } from '@steward/core/approvals/approval-service';
import { AppError, forbidden, invalid } from '@steward/core/errors/app-error';
import { rolePermissions } from '@steward/core/identity/permissions';
import { normaliseEmail } from '@steward/core/identity/user-service';
import type { Actor, Resources } from '@steward/core/resources';
import type { ApprovalView } from '@steward/core/tasks/task-service';
import {
  limitOption,
  pageText,
  table,
  tenantOf,
  tenantOption,
  uuidArg,
  when,
  type CliContext,
} from './cli-support.ts';

export const APPROVAL_STATUSES = ['pending', 'approved', 'rejected', 'expired', 'superseded', 'cancelled'];

/**
 * The member a decision from the command line is taken as: an active member of the tenant whose
 * role holds approvals:decide. The audit log records that user as the actor.
 */
export async function deciderOf(
  res: Resources,
  tenant: { id: string; slug: string },
  email: string,
): Promise<Actor & { id: string }> {
  const address = normaliseEmail(email);
  const [m] = await res.db.withTenant(
    tenant.id,
    (tx) => tx<
      {
        id: string;
        email: string;
        user_status: string;
        status: string;
        name: string;
        builtin: boolean;
        permissions: string[];
      }[]
    >`
      select u.id, u.email, u.status as user_status, m.status, r.name, r.builtin, r.permissions
      from memberships m
        join users u on u.id = m.user_id
        join roles r on r.tenant_id = m.tenant_id and r.id = m.role_id
      where m.tenant_id = ${tenant.id} and u.email = ${address}`,
  );
  if (!m) throw new AppError('NOT_FOUND', `${address} is not a member of tenant "${tenant.slug}"`);
  if (m.status !== 'active' || m.user_status !== 'active') {
    throw forbidden(`${address} is not an active member of tenant "${tenant.slug}"`);
  }
  if (!rolePermissions(m).includes('approvals:decide')) {
    throw forbidden(`${address} may not decide approvals (role ${m.name} lacks approvals:decide)`);
  }
  return { type: 'user', id: m.id, label: `${m.email} (cli)` };
}

function actionText(a: ApprovalView): string {
  if (a.scope === 'plan') {
    const steps = (a.action as { steps?: { tool: string }[] }).steps ?? [];
    return `plan: ${steps.map((s) => s.tool).join(', ')}`;
  }
  const { tool, args } = a.action as { tool?: string; args?: unknown };
  return `${tool ?? '?'} ${JSON.stringify(args ?? {})}`;
}

/** `steward approval list|decide`. */
export function addApprovalCommands(program: Command, ctx: CliContext): void {
  const approval = program.command('approval').description('approvals');

  tenantOption(approval.command('list'))
    .description('approvals, newest first, each with the exact action it authorises')
    .addOption(new Option('--status <status>', 'only approvals in this status').choices(APPROVAL_STATUSES))
    .option('--task <id>', 'only the approvals of this task')
    .option('--limit <n>', 'how many (1-200)', limitOption, 50)
    .option('--cursor <cursor>', 'the next page (printed after a full page)')
    .action(
      async (
        o: { tenant: string; status?: string; task?: string; limit: number; cursor?: string },
        cmd: Command,
      ) => {
        if (o.task !== undefined) uuidArg(o.task, '--task');
        await ctx.withRuntime(cmd, async (rt) => {
          const t = await tenantOf(rt, o.tenant);
          const page = await listApprovals(rt.res, t.id, {
            limit: o.limit,
            cursor: o.cursor,
            status: o.status,
            taskId: o.task,
          });
          ctx.print(
            cmd,
            page,
            pageText(
              table(
                [
                  { header: 'ID' },
                  { header: 'STATUS' },
                  { header: 'VOTES' },
                  { header: 'TASK' },
                  { header: 'EXPIRES' },
                  { header: 'ACTION', max: 60 },
                  { header: 'WHY', max: 60 },
                ],
                page.items.map((a) => [
                  a.id,
                  a.status,
                  `${a.approvals}/${a.quorum}`,
                  a.taskId,
                  when(a.expiresAt),
                  actionText(a),
                  a.reasons.join('; '),
                ]),
                'no approvals',
              ),
              page.nextCursor,
            ),
          );
        });
      },
    );

  tenantOption(approval.command('decide'))
    .description('approve or reject as a member of the tenant (single use; audited as that member)')
    .argument('<id>', 'the approval id')
    .requiredOption('--as <email>', 'the member deciding: their role must hold approvals:decide')
    .addOption(
      new Option('--decision <decision>', 'approve or reject')
        .choices(['approve', 'reject'])
        .makeOptionMandatory(),
    )
    .option('--comment <text>')
    .action(
      async (
        id: string,
        o: { tenant: string; as: string; decision: 'approve' | 'reject'; comment?: string },
        cmd: Command,
      ) => {
        uuidArg(id, 'the approval');
        if (o.comment !== undefined && o.comment.length > 2000) {
          throw invalid('--comment must be at most 2000 characters');
        }
        await ctx.withRuntime(cmd, async (rt) => {
          const t = await tenantOf(rt, o.tenant);
          const actor = await deciderOf(rt.res, t, o.as);
          const result = await decideApproval(rt.res, t.id, actor, id, {
            decision: o.decision,
            comment: o.comment,
          });
          const a = result.approval;
          ctx.print(
            cmd,
            result,
            a.status === 'pending'
              ? `approval ${a.id}: ${o.decision} recorded, ${a.approvals}/${a.quorum} approvals so far`
              : `approval ${a.id} ${a.status} by ${actor.label}`,
          );
        });
      },
    );
}
