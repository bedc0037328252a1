import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connect, type Sql } from './database.ts';
import { withDatabase } from './embedded-postgres.ts';
import { pipelinedSocket, type SocketTarget } from './pipelined-socket.ts';
import { closedPort } from './testing/closed-port.ts';

type SocketOption = (target: SocketTarget) => Promise<net.Socket>;

let url: string;
beforeAll(() => {
  url = withDatabase(inject('pg').adminUrl, 'postgres');
});

/** A socket option that keeps every socket it hands over, with the writes that reach the system. */
function counted(open: SocketOption) {
  const writes: number[] = [];
  const socket: SocketOption = async (target) => {
    const s = await open(target);
    const i = writes.push(0) - 1;
    // Writable sends one buffered chunk with _write and several with _writev: one system call each.
    for (const method of ['_write', '_writev'] as const) {
      const original = s[method] as (...args: unknown[]) => void;
      s[method] = function (this: net.Socket, ...args: unknown[]) {
        writes[i]!++;
        return original.apply(this, args);
      } as never;
    }
    return s;
  };
  return { socket, writes };
}

/** A plain connected socket: what postgres.js uses without the option. */
const plainSocket: SocketOption = ({ host, port }) =>
  new Promise((resolve, reject) => {
    const s = net.connect({ host: host[0]!, port: port[0]! }, () => resolve(s)).once('error', reject);
  });

/** Writes of one round trip: a statement over 1 kB, then two small ones, on a prepared connection. */
async function roundTripWrites(open: SocketOption): Promise<number> {
  const c = counted(open);
  const sql = postgres(url, { max: 1, onnotice: () => {}, socket: c.socket } as never);
  try {
    const big = 'x'.repeat(4000);
    const pipeline = () =>
      Promise.all([sql`select ${big}::text as big`, sql`select ${2}::int as two`, sql`select 3 as three`]);
    await pipeline(); // prepares the statements: the round trip measured below binds and runs them
    const before = c.writes[0]!;
    const [[a], [b], [d]] = await pipeline();
    expect([a!.big, b!.two, d!.three]).toEqual([big, 2, 3]);
    return c.writes[0]! - before;
  } finally {
    await sql.end();
  }
}

describe('pipelinedSocket', () => {
  it('sends a large statement and the small ones after it in one write', async () => {
    expect(await roundTripWrites(pipelinedSocket())).toBe(1);
    // The control: postgres.js writes the large statement at once and the small ones a turn later.
    expect(await roundTripWrites(plainSocket)).toBe(2);
  });

  it('fails the queries sent to a terminated backend, then connects again', async () => {
    const sql = connect(url, { max: 1 });
    const admin = connect(url, { max: 1 });
    const backend = async () => (await sql<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!.pid;
    try {
      for (let round = 0; round < 5; round++) {
        const pid = await backend();
        await admin`select pg_terminate_backend(${pid})`;
        // Each query is sent as soon as the one before has failed: the second one tends to go out
        // between the socket's error and its close, where postgres.js alone would wait for ever.
        const errors: unknown[] = [];
        let next: number | undefined;
        for (let attempt = 0; next === undefined && attempt < 5; attempt++) {
          try {
            next = await backend();
          } catch (error) {
            errors.push(error);
          }
        }
        expect(errors.length).toBeGreaterThan(0);
        for (const e of errors)
          expect((e as { code?: string }).code).toMatch(/^(57P01|ECONNRESET|EPIPE|CONNECTION_CLOSED)$/);
        expect(next).toBeDefined();
        expect(next).not.toBe(pid);
      }
    } finally {
      await Promise.all([sql.end(), admin.end()]);
    }
  }, 15_000);

  it('fails a refused connection and tries again on the next query', async () => {
    const port = await closedPort();
    const sql = connect(`postgres://nobody@127.0.0.1:${port}/none`, { max: 1 });
    try {
      // With max 1, a connection postgres.js still counted as connecting would leave the second hanging.
      await expect(sql`select 1`).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      await expect(sql`select 1`).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    } finally {
      await sql.end();
    }
  });

  describe('a server that never completes the handshake', () => {
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
      await new Promise((r) => setTimeout(r, 200));
    });
    afterAll(() => {
      for (const f of fillers) f.destroy();
      listener?.kill('SIGKILL');
    });

    it('gives up after connect_timeout with CONNECT_TIMEOUT', async () => {
      const sql: Sql = postgres(`postgres://nobody@127.0.0.1:${port}/none`, {
        max: 1,
        connect_timeout: 1,
        onnotice: () => {},
        socket: pipelinedSocket(),
      } as never);
      const started = Date.now();
      try {
        await expect(sql`select 1`).rejects.toMatchObject({ code: 'CONNECT_TIMEOUT' });
        expect(Date.now() - started).toBeLessThan(10_000);
      } finally {
        await sql.end({ timeout: 1 });
      }
    });
  });
});
