import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inboxPath } from '@steward/core/watchers/folder-watcher';
import { FOLDER_LEASE, SCHEDULER_LEASE } from '@steward/core/watchers/watchers';
import {
  createTenantFixture,
  createTestApp,
  TEST_MASTER_KEY,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

// Two real `steward work` processes on one database and one data directory: only the holder of
// the 'watch:folder' lease watches the inboxes, a dropped file becomes exactly one task, and when
// the leader is killed with SIGKILL the other process takes over (at once here, since it sees the
// dead holder ran on the same machine; on another machine, once the 3-second lease expires).

const ROOT = path.resolve(import.meta.dirname, '../../../..');
const BIN = path.join(ROOT, 'bin/steward.js');

let t: TestApp;
let a: TenantFixture;
const children: Worker[] = [];

interface Worker {
  child: ChildProcess;
  output: () => string;
  exited: Promise<void>;
}

function startWorkerProcess(): Worker {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: t.db.ownerUrl,
    STEWARD_DATA_DIR: t.config.dataDir,
    STEWARD_MASTER_KEY: TEST_MASTER_KEY,
    STEWARD_LEASE_SECONDS: '3',
    STEWARD_DB_POOL_MAX: '4',
    STEWARD_WORKER_CONCURRENCY: '2',
    LOG_LEVEL: 'info',
  };
  delete env.DATABASE_APP_URL;
  const child = spawn(process.execPath, [BIN, 'work'], { env, cwd: ROOT });
  let out = '';
  child.stdout!.on('data', (d) => (out += String(d)));
  child.stderr!.on('data', (d) => (out += String(d)));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const w = { child, output: () => out, exited };
  children.push(w);
  return w;
}

async function until<T>(what: string, check: () => Promise<T | undefined | false>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) {
      throw new Error(
        `${what}: not within ${ms} ms\n${children.map((c, i) => `--- worker ${i}\n${c.output()}`).join('\n')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

const holderPid = async (lease: string) => {
  const [row] = await t.db.owner<{ holder: string }[]>`
    select holder from leases where name = ${lease} and expires_at > now()`;
  return row ? Number(row.holder.split(':').at(-2)) : undefined;
};

const folderEvents = () =>
  t.db.owner<{ task_id: string; external_id: string }[]>`
    select task_id, external_id from events where tenant_id = ${a.tenant.id} and source = 'folder'`;

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'leader');
});
afterAll(async () => {
  for (const c of children) {
    if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGTERM');
  }
  await Promise.all(children.map((c) => Promise.race([c.exited, new Promise((r) => setTimeout(r, 10_000))])));
  await t?.close();
});

describe('leader election between two processes', () => {
  it('one file is one task, taken by the leader only; killing the leader hands over to the other', async () => {
    const one = startWorkerProcess();
    const two = startWorkerProcess();
    await until(
      'both workers running',
      async () => {
        if (one.child.exitCode !== null || two.child.exitCode !== null)
          throw new Error(`a worker exited:\n${one.output()}\n${two.output()}`);
        return (
          one.output().includes('Steward worker running') && two.output().includes('Steward worker running')
        );
      },
      40_000,
    );
    const pids = [one.child.pid, two.child.pid];
    const leaderPid = await until('a folder leader', () => holderPid(FOLDER_LEASE), 10_000);
    expect(pids).toContain(leaderPid);
    const schedulerPid = await until('a scheduler leader', () => holderPid(SCHEDULER_LEASE), 10_000);
    expect(pids).toContain(schedulerPid);
    const leader = leaderPid === one.child.pid ? one : two;
    const follower = leader === one ? two : one;

    const inbox = inboxPath(t.config.dataDir, 'leader');
    // The leader creates missing inboxes on its first pass; do not race it.
    await mkdir(inbox, { recursive: true });
    await writeFile(path.join(inbox, 'first.md'), '# First file\n');
    await until('the first task', async () => (await folderEvents()).length === 1, 15_000);
    // Leave time for a second (wrong) intake, then check there was none.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await folderEvents()).toHaveLength(1);
    const [task] = await t.db.owner`select count(*)::int as n from tasks where tenant_id = ${a.tenant.id}`;
    expect(task).toEqual({ n: 1 });
    expect(leader.output()).toContain(`took the lease ${FOLDER_LEASE}`);
    expect(follower.output()).not.toContain(`took the lease ${FOLDER_LEASE}`);
    expect(leader.output()).toContain('first.md');
    expect(follower.output()).not.toContain('first.md');

    // Kill the leader without a chance to release its lease; the follower takes over after expiry.
    leader.child.kill('SIGKILL');
    await leader.exited;
    await writeFile(path.join(inbox, 'second.md'), '# Second file\n');
    await until(
      'the follower takes over',
      async () => (await holderPid(FOLDER_LEASE)) === follower.child.pid,
      20_000,
    );
    await until('the second task', async () => (await folderEvents()).length === 2, 15_000);
    // The intake is logged after its transaction commits: wait for the line.
    await until('the follower logs the intake', async () => follower.output().includes('second.md'), 5000);
    // Each lease is taken over on its own beat: wait for the scheduler's too.
    await until(
      'the follower takes the scheduler over',
      async () => (await holderPid(SCHEDULER_LEASE)) === follower.child.pid,
      20_000,
    );

    // A graceful stop releases the leases at once.
    follower.child.kill('SIGTERM');
    await follower.exited;
    expect(await holderPid(FOLDER_LEASE)).toBeUndefined();
    expect(await holderPid(SCHEDULER_LEASE)).toBeUndefined();
  }, 90_000);
});
