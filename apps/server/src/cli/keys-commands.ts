import type { Command } from 'commander';
import { keyStatus, retireOldKeyVersions, rotateKeys } from '@steward/core/keys/key-rotation';
import { keyProvidersFor } from '@steward/core/keys/key-providers';
import { CLI_ACTOR, type CliContext } from './cli-support.ts';

/** `steward keys status|rotate`: the key provider and master-key rotation. */
export function addKeysCommands(program: Command, ctx: CliContext): void {
  const keys = program.command('keys').description('key provider and master-key rotation');

  keys
    .command('status')
    .description('the current key version and how many tenant data keys are wrapped with each version')
    .action(async (_o, cmd: Command) =>
      ctx.withRuntime(cmd, async (rt) => {
        const s = await keyStatus(rt.res, rt.res.keys ?? keyProvidersFor(rt.res.master));
        ctx.print(
          cmd,
          s,
          [
            `provider ${s.current.provider}, key ${s.current.keyId}, version ${s.current.keyVersion}`,
            `${s.tenants} tenants, ${s.stale} data keys not yet under the current version`,
            ...Object.entries(s.byVersion).map(([k, n]) => `  ${k}: ${n}`),
          ].join('\n'),
        );
      }),
    );

  keys
    .command('rotate')
    .description(
      'create a new key version and re-wrap every tenant data key with it (online; rerun to finish an interrupted rotation)',
    )
    .action(async (_o, cmd: Command) =>
      ctx.withRuntime(cmd, async (rt) => {
        const report = await rotateKeys(rt.res, rt.res.keys ?? keyProvidersFor(rt.res.master), CLI_ACTOR);
        ctx.print(
          cmd,
          report,
          [
            `${report.resumed ? 'finished an interrupted rotation to' : 'rotated to'} ${report.provider} key ${report.keyId} version ${report.keyVersion}`,
            `${report.rewrapped} tenant data keys re-wrapped, ${report.failed.length} failed`,
            ...report.failed.map((f) => `  ${f.tenantId}: ${f.error}`),
          ].join('\n'),
        );
        if (report.failed.length) process.exitCode = 1;
      }),
    );

  keys
    .command('retire')
    .description(
      'after a complete rotation, make older key versions unusable in the provider (old backups of wrapped keys stop unwrapping)',
    )
    .action(async (_o, cmd: Command) =>
      ctx.withRuntime(cmd, async (rt) => {
        const r = await retireOldKeyVersions(
          rt.res,
          rt.res.keys ?? keyProvidersFor(rt.res.master),
          CLI_ACTOR,
        );
        ctx.print(
          cmd,
          r,
          'retired' in r
            ? `${r.provider}: retired versions ${r.retired.join(', ') || '(none)'}`
            : `${r.provider}: cannot retire here: ${r.unsupported}`,
        );
        if (!('retired' in r)) process.exitCode = 1;
      }),
    );
}
