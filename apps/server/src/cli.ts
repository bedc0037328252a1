import { Command, InvalidArgumentError } from 'commander';
import { AppError } from '@steward/core/errors/app-error';
import { verifyTenantAudit } from '@steward/core/audit/audit-service';
import { createApiKey } from '@steward/core/identity/api-key-service';
import { addMember, createPlatformAdmin } from '@steward/core/identity/user-service';
import type { Actor } from '@steward/core/resources';
import {
  createTenant,
  getTenantBySlug,
  listTenants,
  type Tenant,
} from '@steward/core/tenants/tenant-service';
import { connect } from '@steward/db/database';
import { migrate } from '@steward/db/migrate';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { ensureTenantFolders } from './demo.ts';
import { openRuntime, ownerDatabase, type Runtime } from './runtime.ts';
import { addApprovalCommands } from './cli/approval-commands.ts';
import { addConnectionCommands } from './cli/connection-commands.ts';
import { addDeadLetterCommands } from './cli/dead-letter-commands.ts';
import { addEventCommands } from './cli/event-commands.ts';
import { addPlaybookCommands } from './cli/playbook-commands.ts';
import { addTaskCommands } from './cli/task-commands.ts';
import { addMfaCommands } from './cli/mfa-commands.ts';
import { addKeysCommands } from './cli/keys-commands.ts';
import { addBackupCommands } from './cli/backup-commands.ts';

const CLI_ACTOR: Actor = { type: 'system', label: 'steward cli' };

/** The server (HTTP, workers, watchers) loads only for the commands that run it: one-shot commands start faster. */
const runServer = async (...args: Parameters<(typeof import('./server-process.ts'))['runServer']>) =>
  (await import('./server-process.ts')).runServer(...args);

interface GlobalOptions {
  json?: boolean;
  dataDir?: string;
  port?: number;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port from 0 to 65535');
  return n;
}

const program = new Command('steward')
  .description('Steward: a self-hostable, multi-tenant AI employee')
  .option('--json', 'machine-readable output on stdout')
  .option('--data-dir <dir>', 'data directory (STEWARD_DATA_DIR, default ./.steward)')
  .showHelpAfterError();

function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals() as GlobalOptions;
}

function config(cmd: Command): Config {
  const o = globals(cmd);
  return loadConfig(process.env, {
    ...(o.port !== undefined ? { port: o.port } : {}),
    ...(o.dataDir ? { dataDir: o.dataDir } : {}),
  });
}

function print(cmd: Command, json: unknown, human: string): void {
  process.stdout.write((globals(cmd).json ? JSON.stringify(json) : human) + '\n');
}

/** Run a one-shot command against the database (working alongside a running `steward start`). */
async function withRuntime<T>(cmd: Command, fn: (rt: Runtime) => Promise<T>): Promise<T> {
  const rt = await openRuntime(config(cmd), { pageCache: false });
  try {
    return await fn(rt);
  } finally {
    await rt.close();
  }
}

const serverOptions = (c: Command) =>
  c.option('--port <n>', 'HTTP port (PORT, default 8080)', port).option('--data-dir <dir>', 'data directory');

serverOptions(
  program.command('start').description('all roles in one process (embedded PostgreSQL unless DATABASE_URL)'),
).action(async (_o, cmd: Command) => runServer(config(cmd), 'all'));
serverOptions(program.command('serve').description('only the API')).action(async (_o, cmd: Command) =>
  runServer(config(cmd), 'api'),
);
program
  .command('work')
  .description('only workers, watchers and the scheduler')
  .option('--data-dir <dir>', 'data directory')
  .action(async (_o, cmd: Command) => runServer(config(cmd), 'worker'));

program
  .command('migrate')
  .description('apply database migrations (safe to run concurrently)')
  .action(async (_o, cmd: Command) => {
    const cfg = config(cmd);
    const { url, embedded } = await ownerDatabase(cfg, () => {});
    const owner = connect(url, { max: 1 });
    try {
      const result = await migrate(owner);
      print(
        cmd,
        result,
        result.applied.length
          ? `applied: ${result.applied.join(', ')}`
          : `up to date (version ${result.current})`,
      );
    } finally {
      await owner.end();
      await embedded?.stop();
    }
  });

program
  .command('admin')
  .description('platform administrators')
  .command('create')
  .description('create a platform administrator (may create tenants)')
  .requiredOption('--email <email>')
  .requiredOption('--password <password>')
  .action(async (o: { email: string; password: string }, cmd: Command) =>
    withRuntime(cmd, async ({ res }) => {
      const admin = await createPlatformAdmin(res, CLI_ACTOR, o);
      print(cmd, admin, `platform administrator ${o.email} (${admin.id})`);
    }),
  );

const tenant = program.command('tenant').description('tenants');
tenant
  .command('create')
  .description('create a tenant and its owner')
  .requiredOption('--slug <slug>')
  .requiredOption('--name <name>')
  .requiredOption('--owner-email <email>')
  .option('--owner-password <password>', 'required when the owner has no account yet')
  .action(
    async (o: { slug: string; name: string; ownerEmail: string; ownerPassword?: string }, cmd: Command) =>
      withRuntime(cmd, async ({ res }) => {
        const t = await createTenant(res, CLI_ACTOR, o);
        await ensureTenantFolders(res.dataDir, t.slug);
        print(cmd, { id: t.id, slug: t.slug }, `tenant ${t.slug} (${t.id})`);
      }),
  );
tenant
  .command('list')
  .description('list tenants')
  .action(async (_o, cmd: Command) =>
    withRuntime(cmd, async ({ res }) => {
      const all: Tenant[] = [];
      let cursor: string | undefined;
      do {
        const page = await listTenants(res, { limit: 200, cursor });
        all.push(...page.items);
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      print(
        cmd,
        all.map((t) => ({ id: t.id, slug: t.slug, name: t.name, status: t.status, createdAt: t.createdAt })),
        all.length
          ? all.map((t) => `${t.slug.padEnd(24)} ${t.id}  ${t.status.padEnd(9)} ${t.name}`).join('\n')
          : 'no tenants',
      );
    }),
  );

program
  .command('user')
  .description('users')
  .command('create')
  .description('create a user in a tenant (or a membership for an existing user)')
  .requiredOption('--tenant <slug>')
  .requiredOption('--email <email>')
  .option('--password <password>', 'required when the user has no account yet')
  .option('--name <name>')
  .requiredOption('--role <role>', 'owner, admin, approver, member, viewer, auditor or a custom role')
  .action(
    async (
      o: { tenant: string; email: string; password?: string; name?: string; role: string },
      cmd: Command,
    ) =>
      withRuntime(cmd, async ({ res }) => {
        const t = await getTenantBySlug(res, o.tenant);
        const m = await addMember(res, t.id, CLI_ACTOR, o);
        print(
          cmd,
          { id: m.id, email: m.email, role: m.role, tenant: t.slug },
          `${m.email} is ${m.role} of ${t.slug} (${m.id})`,
        );
      }),
  );

program
  .command('apikey')
  .description('API keys')
  .command('create')
  .description('create an API key; it is printed once')
  .requiredOption('--tenant <slug>')
  .requiredOption('--name <name>')
  .requiredOption('--role <role>')
  .action(async (o: { tenant: string; name: string; role: string }, cmd: Command) =>
    withRuntime(cmd, async ({ res }) => {
      const t = await getTenantBySlug(res, o.tenant);
      const { apiKey, key } = await createApiKey(res, t.id, CLI_ACTOR, o);
      print(
        cmd,
        { id: apiKey.id, key },
        `${key}\n(API key ${apiKey.id}, role ${apiKey.role}; it is not shown again)`,
      );
    }),
  );

program
  .command('audit')
  .description('audit log')
  .command('verify')
  .description('exit 0 when the audit log is intact, 1 with the first broken entry when not')
  .option('--tenant <slug>', 'only this tenant (default: every tenant and the platform chain)')
  .action(async (o: { tenant?: string }, cmd: Command) =>
    withRuntime(cmd, async ({ res }) => {
      const targets: { slug: string; id: string }[] = [];
      if (o.tenant) targets.push(await getTenantBySlug(res, o.tenant));
      else {
        targets.push({ slug: '_platform', id: '00000000-0000-0000-0000-000000000000' });
        let cursor: string | undefined;
        do {
          const page = await listTenants(res, { limit: 200, cursor });
          targets.push(...page.items);
          cursor = page.nextCursor ?? undefined;
        } while (cursor);
      }
      const results = [];
      for (const t of targets) results.push({ tenant: t.slug, ...(await verifyTenantAudit(res, t.id)) });
      const ok = results.every((r) => r.ok);
      print(
        cmd,
        { ok, tenants: results },
        results
          .map((r) =>
            r.ok
              ? `ok      ${r.tenant}: ${r.checked} entries`
              : `BROKEN  ${r.tenant}: first broken entry ${r.firstBrokenSeq} (${r.reason})`,
          )
          .join('\n'),
      );
      if (!ok) process.exitCode = 1;
    }),
  );

// The loop's command groups (apps/server/src/cli/), sharing this entry's runtime and output.
for (const addCommands of [
  addEventCommands,
  addTaskCommands,
  addApprovalCommands,
  addPlaybookCommands,
  addConnectionCommands,
  addDeadLetterCommands,
  addMfaCommands,
  addKeysCommands,
  addBackupCommands,
]) {
  addCommands(program, { withRuntime, print, config });
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  const json = process.argv.includes('--json');
  let code = 'INTERNAL';
  let message: string;
  if (error instanceof ConfigError) {
    code = 'CONFIG_INVALID';
    message = error.message;
  } else if (error instanceof AppError) {
    code = error.code;
    message = error.message;
  } else {
    message = (error as Error).message ?? String(error);
  }
  if (json) process.stdout.write(JSON.stringify({ error: { code, message } }) + '\n');
  process.stderr.write(`steward: ${message}\n`);
  process.exit(1);
}
