import type { Command } from 'commander';
import { notFound } from '@steward/core/errors/app-error';
import { resetUserMfa } from '@steward/core/identity/mfa/mfa-service';
import { revokeMemberSessions } from '@steward/core/identity/user-sessions';
import { normaliseEmail } from '@steward/core/identity/user-service';
import type { Runtime } from '../runtime.ts';
import { CLI_ACTOR, tenantOf, tenantOption, type CliContext } from './cli-support.ts';

async function memberId(rt: Runtime, tenantId: string, email: string): Promise<string> {
  const address = normaliseEmail(email);
  const [row] = await rt.res.db.withTenant(
    tenantId,
    (tx) => tx<{ id: string }[]>`
      select u.id from users u join memberships m on m.user_id = u.id and m.tenant_id = ${tenantId}
      where u.email = ${address}`,
  );
  if (!row) throw notFound(`member ${address}`);
  return row.id;
}

/**
 * `steward mfa reset` and `steward session revoke`: recovery from the host when no administrator
 * can sign in (the only owner lost their device and backup codes). Audited as the CLI.
 */
export function addMfaCommands(program: Command, ctx: CliContext): void {
  tenantOption(program.command('mfa').description('multi-factor authentication').command('reset'))
    .description("remove a member's TOTP, backup codes and passkeys, and revoke all their sessions")
    .requiredOption('--email <email>')
    .action(async (o: { tenant: string; email: string }, cmd: Command) =>
      ctx.withRuntime(cmd, async (rt) => {
        const t = await tenantOf(rt, o.tenant);
        const id = await memberId(rt, t.id, o.email);
        await resetUserMfa(rt.res, t.id, CLI_ACTOR, id);
        ctx.print(cmd, { userId: id, reset: true }, `MFA of ${o.email} in ${t.slug} reset; sessions revoked`);
      }),
    );

  tenantOption(program.command('session').description('sign-in sessions').command('revoke'))
    .description("revoke all of a member's sessions in the tenant")
    .requiredOption('--email <email>')
    .action(async (o: { tenant: string; email: string }, cmd: Command) =>
      ctx.withRuntime(cmd, async (rt) => {
        const t = await tenantOf(rt, o.tenant);
        const id = await memberId(rt, t.id, o.email);
        const revoked = await revokeMemberSessions(rt.res, t.id, CLI_ACTOR, id);
        ctx.print(cmd, { userId: id, revoked }, `${revoked} session(s) of ${o.email} in ${t.slug} revoked`);
      }),
    );
}
