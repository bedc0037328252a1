import { createServer, type RequestListener, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { openLoop, parseResponse, type OpenLoopOptions } from './open-loop.ts';

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r) ?? r(undefined));
  server = undefined;
});

async function serve(handler: RequestListener): Promise<string> {
  server = createServer(handler);
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Empty POSTs to `/` of `origin`. */
const emptyPosts = (
  origin: string,
  o: Pick<OpenLoopOptions, 'rate' | 'seconds' | 'connections' | 'timeoutMs'>,
) => openLoop({ origin, path: '/', headers: {}, body: () => '', ...o });

/** Reads the request body, then answers with `answer`. */
const withBody =
  (answer: (body: string, res: Parameters<RequestListener>[1]) => void): RequestListener =>
  (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => answer(body, res));
  };

describe('parseResponse', () => {
  const b = (s: string) => Buffer.from(s, 'latin1');

  it('waits for the whole head and body', () => {
    expect(parseResponse(b('HTTP/1.1 202 Accepted\r\ncontent-length: 4\r\n'))).toBeUndefined();
    expect(parseResponse(b('HTTP/1.1 202 Accepted\r\ncontent-length: 4\r\n\r\n{}'))).toBeUndefined();
    const whole = 'HTTP/1.1 202 Accepted\r\nContent-Length: 4\r\n\r\n{"a"';
    expect(parseResponse(b(whole + 'HTTP/1.1'))).toEqual({ length: whole.length, status: 202, close: false });
  });

  it('reads chunked bodies, bodiless statuses and Connection: close', () => {
    const chunked =
      'HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n';
    expect(parseResponse(b(chunked.slice(0, -2)))).toBeUndefined();
    expect(parseResponse(b(chunked))).toEqual({ length: chunked.length, status: 500, close: true });
    const empty = 'HTTP/1.1 204 No Content\r\n\r\n';
    expect(parseResponse(b(empty))).toEqual({ length: empty.length, status: 204, close: false });
  });

  it('refuses what it cannot frame', () => {
    expect(() => parseResponse(b('HTTP/1.1 200 OK\r\n\r\nbody until close'))).toThrow(/neither/);
    expect(() => parseResponse(b('SSH-2.0-OpenSSH\r\n\r\n'))).toThrow(/not an HTTP/);
  });
});

describe('openLoop', () => {
  it('sends every request once, on schedule, and counts the answers by status', async () => {
    const bodies: string[] = [];
    let n = 0;
    const origin = await serve(
      withBody((body, res) => {
        bodies.push(body);
        const i = n++;
        if (i % 7 === 0) {
          res.writeHead(503, { 'content-type': 'application/json' }); // chunked: no length given
          res.write('{"error":');
          res.end('"busy"}');
        } else if (i % 10 === 0) {
          res.writeHead(202, { connection: 'close', 'content-length': 2 }).end('{}');
        } else {
          res.writeHead(202, { 'content-type': 'application/json', 'content-length': 2 }).end('{}');
        }
      }),
    );
    const started = Date.now();
    const r = await openLoop({
      origin,
      path: '/api/v1/events',
      headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
      body: (i) => JSON.stringify({ i, text: 'é' }),
      rate: 2_000,
      seconds: 0.5,
      connections: 8,
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
    expect(r.sent).toBe(1_000);
    expect(r.errors).toBe(0);
    expect(r.ok + r.non2xx).toBe(1_000);
    expect(r.non2xx).toBe(Math.ceil(1_000 / 7));
    const seen = bodies.map((x) => (JSON.parse(x) as { i: number; text: string }).i).sort((a, b) => a - b);
    expect(seen).toEqual([...Array(1_000).keys()]);
    expect(JSON.parse(bodies[0]!)).toMatchObject({ text: 'é' });
    expect(r.p50).toBeGreaterThanOrEqual(0);
    expect(r.max).toBeGreaterThanOrEqual(r.p99);
  });

  it('counts a stall of the server against every request due during it', async () => {
    let stalled = false;
    const origin = await serve(
      withBody((_body, res) => {
        const answer = () => res.writeHead(202, { 'content-length': 0 }).end();
        if (!stalled) {
          stalled = true;
          setTimeout(answer, 300);
        } else answer();
      }),
    );
    // One connection: the requests due while the first waits queue behind it in the client.
    const r = await emptyPosts(origin, { rate: 100, seconds: 0.5, connections: 1 });
    expect(r.ok).toBe(50);
    expect(r.max).toBeGreaterThanOrEqual(300);
    expect(r.p90).toBeGreaterThan(100);
  });

  it('ends with errors, not a hang, when the server refuses or never answers', async () => {
    const closed = createTcpServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const refused = await emptyPosts(`http://127.0.0.1:${port}`, { rate: 100, seconds: 0.1, connections: 2 });
    expect(refused).toMatchObject({ sent: 10, errors: 10, ok: 0 });

    const origin = await serve(() => {}); // takes requests, never answers
    const silent = await emptyPosts(origin, { rate: 20, seconds: 0.1, connections: 2, timeoutMs: 300 });
    expect(silent).toMatchObject({ sent: 2, errors: 2, ok: 0 });
  });
});
