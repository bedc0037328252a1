import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A receiving test server for connector calls (node:http on 127.0.0.1, random port). It records every
 * request (its `Idempotency-Key` and body) and applies a side effect for it:
 * - `honour`: once per idempotency key, as a well-behaved API does (a repeated key gets the first
 *   answer again, and no new effect);
 * - `ignore`: for every request, whatever its key (the negative control: a receiver without
 *   idempotency shows what a repeated call does).
 * The effect is applied as soon as the request has arrived, before the (deliberately slow) answer,
 * like a server that commits and then replies: a caller killed while waiting has already had its
 * effect.
 */
export type ReceiverMode = 'honour' | 'ignore';

export interface ReceivedRequest {
  key: string | undefined;
  body: string;
  /** A request whose key had already been seen. */
  repeat: boolean;
}

export interface Receiver {
  url: string;
  mode: ReceiverMode;
  requests: ReceivedRequest[];
  /** Applied side effects per idempotency key (requests without a key count under ''). */
  effects: Map<string, { count: number; body: string }>;
  /** Requests that have arrived and are not answered yet (their caller is mid-call). */
  inFlight(): number;
  /** The callers' (remote) TCP ports of those requests. */
  inFlightPorts(): Set<number>;
  /** Requests carrying a key that had been seen before. */
  repeats(): number;
  /** Effects beyond the first for a key: duplicated side effects. */
  duplicatedEffects(): number;
  close(): Promise<void>;
}

export async function startReceiver(opts: {
  mode: ReceiverMode;
  /** Answer delay for each request, in ms. */
  delayMs: () => number;
}): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  const effects = new Map<string, { count: number; body: string }>();
  const seenKeys = new Set<string>();
  const open = new Map<IncomingMessage, number>();

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const header = req.headers['idempotency-key'];
      const key = Array.isArray(header) ? header[0] : header;
      const body = Buffer.concat(chunks).toString('utf8');
      const seen = key !== undefined && seenKeys.has(key);
      if (key !== undefined) seenKeys.add(key);
      requests.push({ key, body, repeat: seen });
      const slot = key ?? '';
      const effect = effects.get(slot);
      if (opts.mode === 'ignore' || !effect) {
        effects.set(slot, { count: (effect?.count ?? 0) + 1, body: effect?.body ?? body });
      }
      open.set(req, req.socket.remotePort ?? 0);
      const done = () => void open.delete(req);
      // The caller may die while waiting: its socket closes and this request is no longer in flight.
      res.on('close', done);
      setTimeout(() => {
        if (!open.has(req)) return;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: true, key: key ?? null, repeat: seen }), done);
      }, opts.delayMs());
    });
  };

  const server = http.createServer(handle);
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    mode: opts.mode,
    requests,
    effects,
    inFlight: () => open.size,
    inFlightPorts: () => new Set(open.values()),
    repeats: () => requests.filter((r) => r.repeat).length,
    duplicatedEffects: () => [...effects.values()].reduce((n, e) => n + e.count - 1, 0),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
