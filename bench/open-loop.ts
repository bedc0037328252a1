/**
 * An open-loop load generator: requests are sent on a fixed schedule (evenly spaced at `rate` per
 * second) whether or not earlier ones have been answered, and each latency is measured from the
 * moment its request was due, so a stall of the server counts in full for every request it delays
 * (no coordinated omission).
 *
 * autocannon's `overallRate` is not this: each connection sends back to back until it has used its
 * share of the second, then waits for the next second, so the server sees a burst at the start of
 * every second; and it records latencies with an expected interval of 1 ms whatever the rate, which
 * counts a slow response once per millisecond it took.
 *
 * It speaks HTTP/1.1 over plain keep-alive sockets itself (one request at a time per connection,
 * answers with Content-Length or chunked bodies): it shares two cores with the server and the
 * database, and with undici's Pool the bench process took ~130 µs of CPU per request at 1,500/s
 * against ~85 µs now (bench/RESULTS.md, session 11).
 */
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

export interface OpenLoopOptions {
  /** e.g. http://127.0.0.1:3000 */
  origin: string;
  path: string;
  headers: Record<string, string>;
  /** The body of the n-th request (from 0). */
  body: (n: number) => string;
  /** Requests per second. */
  rate: number;
  seconds: number;
  /** Keep-alive connections at most (requests beyond them wait in the client, and that counts). */
  connections: number;
  /** Per-request timeout (ms). */
  timeoutMs?: number;
}

export interface OpenLoopResult {
  sent: number;
  /** Answered with 2xx. */
  ok: number;
  non2xx: number;
  errors: number;
  /** Answers per second, from the first due time to the last answer. */
  requestsPerSec: number;
  /** Latency percentiles of every answered request (ms, from its due time). */
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

interface Pending {
  n: number;
  due: number;
}

/** One keep-alive connection carrying one request at a time. */
interface Connection {
  socket: Socket;
  ready: boolean;
  current: (Pending & { sentAt: number }) | undefined;
  received: Buffer;
}

const HEADER_END = Buffer.from('\r\n\r\n');
const CHUNKED_END = Buffer.from('\r\n0\r\n\r\n');

/**
 * The length of the first complete response in `b` and its status, or undefined while it is
 * incomplete; `close` when the server said it will close the connection.
 */
export function parseResponse(b: Buffer): { length: number; status: number; close: boolean } | undefined {
  const headEnd = b.indexOf(HEADER_END);
  if (headEnd < 0) return undefined;
  const head = b.toString('latin1', 0, headEnd);
  const status = Number(head.slice(9, 12));
  if (!/^HTTP\/1\.[01] \d{3}/.test(head)) throw new Error(`not an HTTP/1.1 response: ${head.slice(0, 40)}`);
  const lower = head.toLowerCase();
  const close = /\r\nconnection: *close/.test(lower);
  const bodyStart = headEnd + HEADER_END.length;
  const cl = /\r\ncontent-length: *(\d+)/.exec(lower);
  if (cl) {
    const length = bodyStart + Number(cl[1]);
    return b.length >= length ? { length, status, close } : undefined;
  }
  if (/\r\ntransfer-encoding: *chunked/.test(lower)) {
    const end = b.indexOf(CHUNKED_END, bodyStart - 2);
    return end < 0 ? undefined : { length: end + CHUNKED_END.length, status, close };
  }
  // 204/304 and the like carry no body.
  if (status === 204 || status === 304 || (status >= 100 && status < 200))
    return { length: bodyStart, status, close };
  throw new Error(`response ${status} has neither Content-Length nor chunked encoding`);
}

export async function openLoop(o: OpenLoopOptions): Promise<OpenLoopResult> {
  const url = new URL(o.origin);
  if (url.protocol !== 'http:') throw new Error(`openLoop speaks plain http only, not ${url.protocol}`);
  const port = Number(url.port || 80);
  const timeoutMs = o.timeoutMs ?? 10_000;
  const head =
    `POST ${o.path} HTTP/1.1\r\nhost: ${url.host}\r\n` +
    Object.entries(o.headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');

  const total = Math.round(o.rate * o.seconds);
  const latencies = new Float64Array(total);
  let answered = 0;
  let ok = 0;
  let non2xx = 0;
  let errors = 0;
  let lastAnswer = 0;
  let inFlight = 0;
  let drained: (() => void) | undefined;
  const interval = 1000 / o.rate;
  const start = performance.now();
  const idle: Connection[] = [];
  const queue: Pending[] = [];
  const open = new Set<Connection>();

  const settle = (status: number | undefined, due: number) => {
    inFlight--;
    if (status === undefined) errors++;
    else {
      lastAnswer = performance.now();
      latencies[answered++] = lastAnswer - due;
      if (status >= 200 && status < 300) ok++;
      else non2xx++;
    }
    if (inFlight === 0 && drained) drained();
  };

  const write = (c: Connection, p: Pending) => {
    const body = o.body(p.n);
    c.current = { ...p, sentAt: performance.now() };
    c.socket.write(`${head}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  };

  /** A connection is free: give it the oldest waiting request, or keep it for the next one. */
  const free = (c: Connection) => {
    const next = queue.shift();
    if (next) write(c, next);
    else idle.push(c);
  };

  const drop = (c: Connection) => {
    if (!open.delete(c)) return;
    const i = idle.indexOf(c);
    if (i >= 0) idle.splice(i, 1);
    c.socket.destroy();
    if (c.current) settle(undefined, c.current.due);
    c.current = undefined;
    // A connection that never opened fails the oldest waiting request (so a server that refuses
    // connections ends the run instead of being dialled forever); whoever waits then gets a new one.
    if (!c.ready) {
      const failed = queue.shift();
      if (failed) settle(undefined, failed.due);
    }
    if (queue.length) dial();
  };

  const dial = () => {
    const socket = connect({ host: url.hostname, port, noDelay: true });
    const c: Connection = { socket, ready: false, current: undefined, received: Buffer.alloc(0) };
    open.add(c);
    socket.on('connect', () => {
      c.ready = true;
      free(c);
    });
    socket.on('data', (chunk: Buffer) => {
      c.received = c.received.length ? Buffer.concat([c.received, chunk]) : chunk;
      let r: ReturnType<typeof parseResponse>;
      try {
        r = parseResponse(c.received);
      } catch {
        return drop(c);
      }
      if (!r) return;
      const p = c.current;
      c.current = undefined;
      c.received = c.received.subarray(r.length);
      if (p) settle(r.status, p.due);
      if (r.close || c.received.length) drop(c);
      else free(c);
    });
    socket.on('error', () => drop(c));
    socket.on('close', () => drop(c));
  };

  const send = (n: number) => {
    inFlight++;
    const p = { n, due: start + n * interval };
    const c = idle.pop();
    if (c) write(c, p);
    else {
      queue.push(p);
      if (open.size < o.connections) dial();
    }
  };

  const timeouts = setInterval(() => {
    const now = performance.now();
    for (const c of open) if (c.current && now - c.current.sentAt > timeoutMs) drop(c);
  }, 250);

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  let next = 0;
  while (next < total) {
    const due = Math.min(total, Math.floor((performance.now() - start) / interval) + 1);
    for (; next < due; next++) send(next);
    await sleep(1);
  }
  if (inFlight) await new Promise<void>((resolve) => (drained = resolve));
  clearInterval(timeouts);
  for (const c of open) c.socket.destroy();

  const sorted = latencies.subarray(0, answered).sort();
  const at = (q: number) =>
    answered ? Math.round(sorted[Math.min(answered - 1, Math.ceil(q * answered) - 1)]! * 10) / 10 : NaN;
  return {
    sent: total,
    ok,
    non2xx,
    errors,
    requestsPerSec: answered ? Math.round((answered * 1000) / (lastAnswer - start)) : 0,
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    max: answered ? Math.round(sorted[answered - 1]! * 10) / 10 : NaN,
  };
}
