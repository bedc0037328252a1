import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { connect, createDatabase, type Database, type Sql } from './database.ts';
import { withDatabase } from './embedded-postgres.ts';
import { closedPort } from './testing/closed-port.ts';

/**
 * What Steward's pools do when PostgreSQL drops a connection (a restart, pg_terminate_backend, a
 * failover): the statements on it fail, nothing waits for ever, and the pool connects again.
 * postgres.js 3 crashed the process or wedged the pool in several of these (porsager/postgres
 * #1195, #1199, #1208), which is why Steward runs on postgres.js 4.
 */

let url: string;
let admin: Sql;
beforeAll(() => {
  url = withDatabase(inject('pg').adminUrl, 'postgres');
  admin = connect(url, { max: 1 });
});
afterAll(() => admin.end());

const terminate = (pid: number) => admin`select pg_terminate_backend(${pid})`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The SQLSTATE or driver code a lost connection fails a statement with. */
const LOST = /^(57P01|ECONNRESET|EPIPE|CONNECTION_CLOSED)$/;

describe('connect(): a terminated backend', () => {
  it('fails the queries sent to it, then connects again', async () => {
    const sql = connect(url, { max: 1 });
    const backend = async () => (await sql<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!.pid;
    try {
      for (let round = 0; round < 5; round++) {
        const pid = await backend();
        await terminate(pid);
        // Each query is sent as soon as the one before has failed, some of them between the
        // socket's error and its close.
        const errors: unknown[] = [];
        let next: number | undefined;
        for (let attempt = 0; next === undefined && attempt < 5; attempt++) {
          try {
            next = await backend();
          } catch (error) {
            errors.push(error);
          }
        }
        for (const e of errors) expect((e as { code?: string }).code).toMatch(LOST);
        expect(next).toBeDefined();
        expect(next).not.toBe(pid);
      }
    } finally {
      await sql.end();
    }
  }, 15_000);

  it('fails a refused connection and tries again on the next query', async () => {
    const port = await closedPort();
    const sql = connect(`postgres://nobody@127.0.0.1:${port}/none`, { max: 1 });
    try {
      await expect(sql`select 1`).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      await expect(sql`select 1`).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    } finally {
      await sql.end();
    }
  });
});

describe('createDatabase(): a transaction whose backend is terminated', () => {
  let db: Database;
  afterEach(() => db?.close());

  const backendOf = (tx: Parameters<Parameters<Database['withSystemAccess']>[0]>[0]) =>
    tx<{ pid: number }[]>`select pg_backend_pid() as pid`.then((r) => r[0]!.pid);

  it('fails, and the next transactions on the same pool of one run', async () => {
    db = createDatabase({ url, max: 1 });
    for (let round = 0; round < 3; round++) {
      let pid = 0;
      const lost = db.withSystemAccess(async (tx) => {
        pid = await backendOf(tx);
        await terminate(pid);
        await sleep(50);
        // A statement on the dead connection, then the ROLLBACK: under postgres.js 3 the ROLLBACK
        // was written to a socket it had already dropped, an uncaught TypeError (#1199, #1208).
        await tx`select 1`;
      });
      await expect(lost).rejects.toMatchObject({ code: expect.stringMatching(LOST) });
      expect(await db.withSystemAccess(backendOf)).not.toBe(pid);
    }
  });

  it('hands a transaction waiting for the connection a new one (#1195)', async () => {
    db = createDatabase({ url, max: 1 });
    let pid = 0;
    let holding!: () => void;
    const held = new Promise<void>((resolve) => (holding = resolve));
    const first = db.withSystemAccess(async (tx) => {
      pid = await backendOf(tx);
      holding();
      await tx`select pg_sleep(5)`;
    });
    await held;
    const second = db.withSystemAccess(backendOf); // waits: the pool's one connection is taken
    await sleep(50);
    // Watched before the termination: it fails while terminate() is awaited.
    const firstFails = expect(first).rejects.toMatchObject({ code: expect.stringMatching(LOST) });
    await terminate(pid);
    await firstFails;
    // Under postgres.js 3 the waiting reserve() was handed to the dead connection's reconnect and
    // dropped: it never settled.
    expect(await second).not.toBe(pid);
  });
});

describe('connect(): a server that never completes the handshake', () => {
  let listener: ChildProcess;
  let port: number;
  const fillers: net.Socket[] = [];
  beforeAll(async () => {
    // Listens with a backlog of 0 and never accepts: once one connection waits in the queue, the
    // kernel drops further SYNs and their connects hang.
    listener = spawn(
      process.execPath,
      [
        '-e',
        `const s = require('node:net').createServer();
         s.listen({ host: '127.0.0.1', port: 0, backlog: 0 }, () => {
           console.log(s.address().port);
           Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
         });`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    port = Number(
      await new Promise<string>((resolve) => listener.stdout!.once('data', (d) => resolve(String(d)))),
    );
    for (let i = 0; i < 2; i++) fillers.push(net.connect(port, '127.0.0.1').on('error', () => {}));
    await sleep(200);
  });
  afterAll(() => {
    for (const f of fillers) f.destroy();
    listener?.kill('SIGKILL');
  });

  it('gives up on a transaction after the queue timeout, with QUEUE_TIMEOUT', async () => {
    const sql = connect(`postgres://nobody@127.0.0.1:${port}/none`, { max: 1, queueTimeout: 1 });
    const started = Date.now();
    try {
      await expect(sql.reserve()).rejects.toMatchObject({ code: 'QUEUE_TIMEOUT' });
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await sql.end({ timeout: 1 });
    }
  });
});
