/**
 * The embedded PostgreSQL lifecycle on a data directory of its own (separate from the run's test
 * cluster): start, adopt, stop, and recovery from the postmaster.pid a crashed run leaves behind.
 * When tests run as root, the server runs as the `postgres` user (PostgreSQL refuses root).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres, withDatabase, type EmbeddedPostgres } from './embedded-postgres.ts';

let dataDir: string;
let pgdata: string;
/** Every handle that started a server, so afterAll can stop whatever a failed test left running. */
const started: EmbeddedPostgres[] = [];

async function start(): Promise<EmbeddedPostgres> {
  const pg = await startEmbeddedPostgres({ dataDir, port: 0 });
  if (pg.startedHere) started.push(pg);
  return pg;
}

async function query<T extends Record<string, unknown>>(url: string, text: string): Promise<T[]> {
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  try {
    return (await sql.unsafe(text)) as unknown as T[];
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** Whether a process runs: a zombie (exited, not yet reaped by its parent) does not. */
function alive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/** PID of the postmaster serving our data directory, from its lock file. */
async function postmasterPid(): Promise<number> {
  return Number((await readFile(path.join(pgdata, 'postmaster.pid'), 'utf8')).split('\n')[0]);
}

/** Processes whose parent is `pid` (a postmaster's backends and auxiliary processes). */
async function children(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === pid) out.push(Number(entry));
  }
  return out;
}

async function waitUntil(what: string, done: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The postmaster serving our data directory and its processes (backends, checkpointer, ...). */
async function serverProcesses(): Promise<{ pid: number; all: number[] }> {
  const pid = await postmasterPid();
  return { pid, all: [pid, ...(await children(pid))] };
}

/**
 * No server runs for the data directory once stop() returns: the lock file is gone and the port
 * refuses connections at once; the processes are gone once they finish exiting.
 */
async function expectStopped(server: { pid: number; all: number[] }, url: string): Promise<void> {
  expect(existsSync(path.join(pgdata, 'postmaster.pid'))).toBe(false);
  await expect(query(url, 'select 1')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  await waitUntil('the server processes have exited', () => server.all.every((p) => !alive(p)));
}

/** A PID that certainly belongs to no process: a child that has already exited. */
function deadPid(): number {
  const child = spawnSync('true');
  const pid = child.pid!;
  expect(alive(pid)).toBe(false);
  return pid;
}

async function writeStalePidFile(pid: number, port: number): Promise<void> {
  // The layout PostgreSQL writes: pid, data directory, start time, port, socket dir, listen address, shmem key, status.
  const lines = [
    String(pid),
    pgdata,
    String(Math.floor(Date.now() / 1000) - 60),
    String(port),
    '',
    '127.0.0.1',
    '  1234567    0',
    'ready   ',
    '',
  ];
  await writeFile(path.join(pgdata, 'postmaster.pid'), lines.join('\n'), { mode: 0o600 });
}

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'steward-embedded-test-'));
  pgdata = path.join(dataDir, 'postgres');
});

afterAll(async () => {
  for (const pg of started) await pg.stop();
  await rm(dataDir, { recursive: true, force: true });
});

describe('embedded PostgreSQL', () => {
  it('two concurrent starts on a new data directory run one server, and both can connect', async () => {
    const [a, b] = await Promise.all([start(), start()]);
    expect([a.startedHere, b.startedHere].sort()).toEqual([false, true]);
    expect(a.port).toBe(b.port);
    expect(a.url).toBe(b.url);
    for (const pg of [a, b]) {
      const [row] = await query<{ db: string; superuser: string }>(
        pg.url,
        `select current_database() as db, current_setting('is_superuser') as superuser`,
      );
      expect(row).toEqual({ db: 'steward', superuser: 'on' });
    }
    // The password lives in the data directory, readable by its owner only.
    const passwordFile = path.join(dataDir, 'postgres.password');
    expect(a.url).toContain(encodeURIComponent((await readFile(passwordFile, 'utf8')).trim()));
    expect((await stat(passwordFile)).mode & 0o777).toBe(0o600);

    const owner = a.startedHere ? a : b;
    const adopter = a.startedHere ? b : a;
    const server = await serverProcesses();
    expect(server.all.length).toBeGreaterThan(1);
    await adopter.stop(); // only the process that started the server stops it
    expect(alive(server.pid)).toBe(true);
    await expect(query(owner.url, 'select 1')).resolves.toHaveLength(1);
    await owner.stop();
    await expectStopped(server, owner.url);
  });

  it('a later start adopts the running server instead of starting a second one, and keeps the data', async () => {
    const first = await start();
    expect(first.startedHere).toBe(true);
    await query(first.url, 'create table if not exists kept (v text); insert into kept values (1)');
    const server = await serverProcesses();

    const second = await start();
    expect(second.startedHere).toBe(false);
    expect(second.port).toBe(first.port);
    expect(await postmasterPid()).toBe(server.pid);
    const rows = await query<{ v: string }>(second.url, 'select v from kept');
    expect(rows).toEqual([{ v: '1' }]);
    // Another database on the same cluster (the tests clone databases this way).
    const [db] = await query<{ db: string }>(
      withDatabase(second.url, 'postgres'),
      'select current_database() as db',
    );
    expect(db).toEqual({ db: 'postgres' });

    await second.stop();
    expect(alive(server.pid)).toBe(true);
    await first.stop();
    await first.stop(); // a second stop is harmless
    await expectStopped(server, first.url);
  });

  it('recovers from a stale postmaster.pid whose process is gone', async () => {
    await writeStalePidFile(deadPid(), 5999);
    const pg = await start();
    expect(pg.startedHere).toBe(true);
    expect(pg.port).not.toBe(5999);
    await expect(query(pg.url, 'select v from kept')).resolves.toEqual([{ v: '1' }]);
    const server = await serverProcesses();
    await pg.stop();
    await expectStopped(server, pg.url);
  });

  it('recovers from a postmaster.pid whose PID now belongs to another program', async () => {
    await writeStalePidFile(process.pid, 5998);
    const pg = await start();
    expect(pg.startedHere).toBe(true);
    await expect(query(pg.url, 'select count(*)::int as n from kept')).resolves.toEqual([{ n: 1 }]);
    const server = await serverProcesses();
    expect(server.pid).not.toBe(process.pid);
    await pg.stop();
    await expectStopped(server, pg.url);
  });

  it('restarts after the server was killed (kill -9 of the postmaster), with committed data intact', async () => {
    const crashed = await start();
    await query(crashed.url, `insert into kept values ('before the crash')`);
    const pid = await postmasterPid();
    const workers = await children(pid);
    expect(workers.length).toBeGreaterThan(0);
    process.kill(pid, 'SIGKILL');
    // The lock file stays behind, as after a power cut; the backends exit once they notice.
    await waitUntil(
      'the killed server and its processes are gone',
      () => !alive(pid) && workers.every((w) => !alive(w)),
    );
    expect(existsSync(path.join(pgdata, 'postmaster.pid'))).toBe(true);
    started.splice(started.indexOf(crashed), 1); // its stop() would act on the data directory's next server

    const pg = await start();
    expect(pg.startedHere).toBe(true);
    const rows = await query<{ v: string }>(pg.url, 'select v from kept order by v');
    expect(rows.map((r) => r.v)).toEqual(['1', 'before the crash']);
    const server = await serverProcesses();
    expect(server.pid).not.toBe(pid);
    await pg.stop();
    await expectStopped(server, pg.url);
  });
});
