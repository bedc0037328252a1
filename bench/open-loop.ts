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
 */
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';

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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function openLoop(o: OpenLoopOptions): Promise<OpenLoopResult> {
  const pool = new Pool(o.origin, {
    connections: o.connections,
    pipelining: 1,
    headersTimeout: o.timeoutMs ?? 10_000,
    bodyTimeout: o.timeoutMs ?? 10_000,
  });
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

  // dispatch with callbacks, not request(): no body stream per response, so the generator takes
  // less of the CPU it shares with the server and the database.
  const send = (n: number) => {
    const due = start + n * interval;
    let status = 0;
    inFlight++;
    const settle = (error?: Error) => {
      inFlight--;
      if (error) errors++;
      else {
        lastAnswer = performance.now();
        latencies[answered++] = lastAnswer - due;
        if (status >= 200 && status < 300) ok++;
        else non2xx++;
      }
      if (inFlight === 0 && drained) drained();
    };
    pool.dispatch(
      { path: o.path, method: 'POST', headers: o.headers, body: o.body(n) },
      {
        onConnect() {},
        onError: (error: Error) => settle(error),
        onHeaders: (statusCode: number) => {
          status = statusCode;
          return true;
        },
        onData: () => true,
        onComplete: () => settle(),
      },
    );
  };

  let next = 0;
  while (next < total) {
    const due = Math.min(total, Math.floor((performance.now() - start) / interval) + 1);
    for (; next < due; next++) send(next);
    await sleep(1);
  }
  if (inFlight) await new Promise<void>((resolve) => (drained = resolve));
  await pool.close();

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
