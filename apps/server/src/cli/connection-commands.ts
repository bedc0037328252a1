import { Option, type Command } from 'commander';
import {
  CONNECTION_KINDS,
  listConnections,
  type ConnectionKind,
  type ConnectionView,
} from '@steward/core/connections/connection-service';
import {
  limitOption,
  pageText,
  table,
  tenantOf,
  tenantOption,
  when,
  type CliContext,
} from './cli-support.ts';

/** Where a connection points, from its non-secret settings. */
function target(c: ConnectionView): string {
  const cfg = c.config;
  if (typeof cfg.baseUrl === 'string') return cfg.baseUrl;
  const host = typeof cfg.host === 'string' ? cfg.host : '?';
  const user = typeof cfg.username === 'string' ? `${cfg.username}@` : '';
  return `${user}${host}${cfg.port !== undefined ? `:${String(cfg.port)}` : ''}`;
}

/** `steward connection list`: the same views as the API, which never hold a secret (only hasSecret). */
export function addConnectionCommands(program: Command, ctx: CliContext): void {
  const connection = program.command('connection').description('connections (secrets are never shown)');
  tenantOption(connection.command('list'))
    .description('connections, by name; secrets are never printed')
    .addOption(new Option('--kind <kind>', 'only this kind').choices(CONNECTION_KINDS))
    .option('--limit <n>', 'how many (1-200)', limitOption, 50)
    .option('--cursor <cursor>', 'the next page (printed after a full page)')
    .action(
      async (o: { tenant: string; kind?: ConnectionKind; limit: number; cursor?: string }, cmd: Command) =>
        ctx.withRuntime(cmd, async (rt) => {
          const t = await tenantOf(rt, o.tenant);
          const page = await listConnections(rt.res, t.id, o);
          ctx.print(
            cmd,
            page,
            pageText(
              table(
                [
                  { header: 'ID' },
                  { header: 'KIND' },
                  { header: 'NAME', max: 40 },
                  { header: 'DEFAULT' },
                  { header: 'SECRET' },
                  { header: 'UPDATED' },
                  { header: 'TARGET', max: 70 },
                ],
                page.items.map((c) => [
                  c.id,
                  c.kind,
                  c.name,
                  c.isDefault ? 'yes' : 'no',
                  c.hasSecret ? 'stored' : 'none',
                  when(c.updatedAt),
                  target(c),
                ]),
                'no connections',
              ),
              page.nextCursor,
            ),
          );
        }),
    );
}
