import { Type } from '@sinclair/typebox';
import { ToolError, type Tool } from '../tool.ts';

export interface NotifyArgs {
  to: string;
  title: string;
  body?: string;
}

/** An in-app notification for a member (by e-mail) or for everyone holding a role. */
export const notifyTool: Tool<NotifyArgs> = {
  name: 'notify.user',
  description: 'Notify a member of the tenant (by e-mail address) or every member with a role (role:<name>)',
  risk: 'low',
  retryable: true,
  args: Type.Object(
    {
      to: Type.String({ minLength: 1, maxLength: 320 }),
      title: Type.String({ minLength: 1, maxLength: 300 }),
      body: Type.Optional(Type.String({ maxLength: 10_000 })),
    },
    { additionalProperties: false },
  ),
  preview: (a) => [{ kind: 'notification', summary: `notify ${a.to}: ${a.title}`, target: a.to }],
  async execute(ctx, a) {
    return ctx.withTenant(async (tx) => {
      let userId: string | null = null;
      let role: string | null = null;
      if (a.to.startsWith('role:')) {
        role = a.to.slice(5);
        const [r] = await tx`select 1 from roles where tenant_id = ${ctx.tenantId} and name = ${role}`;
        if (!r) throw new ToolError('UNKNOWN_ROLE', `no role "${role}" in this tenant`);
      } else {
        const [u] = await tx<{ user_id: string }[]>`
          select m.user_id from memberships m join users u on u.id = m.user_id
          where m.tenant_id = ${ctx.tenantId} and u.email = ${a.to.toLowerCase()}`;
        if (!u) throw new ToolError('UNKNOWN_MEMBER', `${a.to} is not a member of this tenant`);
        userId = u.user_id;
      }
      const [row] = await tx<{ id: string }[]>`
        insert into notifications (tenant_id, user_id, role, title, body, task_id, idempotency_key)
        values (${ctx.tenantId}, ${userId}, ${role}, ${a.title}, ${a.body ?? ''}, ${ctx.taskId}, ${ctx.idempotencyKey})
        on conflict (tenant_id, idempotency_key) where idempotency_key is not null do nothing
        returning id`;
      return { notified: a.to, duplicate: !row };
    });
  },
};
