import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

let t: TestApp;
let a: TenantFixture;
let b: TenantFixture;
let base: string;

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'live-a');
  b = await createTenantFixture(t, 'live-b');
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  const addr = t.app.server.address();
  base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
});
afterAll(() => t?.close());

async function ticketFor(token: string): Promise<string> {
  const r = expectStatus(
    await t.app.inject({ method: 'POST', url: '/api/v1/stream-tickets', headers: bearer(token) }),
    200,
  );
  return (r.json() as { ticket: string }).ticket;
}

/** Open the stream and collect its `change` events. */
async function openStream(ticket: string) {
  const controller = new AbortController();
  const response = await fetch(`${base}/api/v1/events/stream?ticket=${encodeURIComponent(ticket)}`, {
    signal: controller.signal,
  });
  const changes: { kind: string; id: string; taskId: string }[] = [];
  let text = '';
  const done = (async () => {
    if (!response.body) return;
    const decoder = new TextDecoder();
    try {
      const reader = response.body.getReader();
      for (;;) {
        const { value, done: ended } = await reader.read();
        if (ended) break;
        text += decoder.decode(value, { stream: true });
        let i;
        while ((i = text.indexOf('\n\n')) >= 0) {
          const frame = text.slice(0, i);
          text = text.slice(i + 2);
          if (frame.startsWith('event: change')) changes.push(JSON.parse(frame.split('data: ')[1]!));
        }
      }
    } catch {
      // aborted
    }
  })();
  return {
    response,
    changes,
    async close() {
      controller.abort();
      await done;
    },
  };
}

async function until(check: () => boolean, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('live stream', () => {
  it('refuses a missing, forged or reused ticket', async () => {
    expect((await fetch(`${base}/api/v1/events/stream`)).status).toBe(400);
    expect((await fetch(`${base}/api/v1/events/stream?ticket=abc.def`)).status).toBe(401);
    const ticket = await ticketFor(a.token);
    const forged = ticket.slice(0, -2) + (ticket.endsWith('AA') ? 'BB' : 'AA');
    expect((await fetch(`${base}/api/v1/events/stream?ticket=${forged}`)).status).toBe(401);
    const first = await openStream(ticket);
    expect(first.response.status).toBe(200);
    expect(first.response.headers.get('content-type')).toContain('text/event-stream');
    await first.close();
    const again = await fetch(`${base}/api/v1/events/stream?ticket=${encodeURIComponent(ticket)}`);
    expect(again.status).toBe(401);
    expect(((await again.json()) as { error: { code: string } }).error.code).toBe('UNAUTHENTICATED');
  });

  it('needs tasks:read to get a ticket', async () => {
    expectStatus(await t.app.inject({ method: 'POST', url: '/api/v1/stream-tickets' }), 401);
  });

  it("carries a tenant's own changes, ids only, and never another tenant's", async () => {
    const streamA = await openStream(await ticketFor(a.token));
    const streamB = await openStream(await ticketFor(b.token));
    try {
      const submit = async (f: TenantFixture, subject: string) =>
        (
          expectStatus(
            await t.app.inject({
              method: 'POST',
              url: '/api/v1/events',
              headers: bearer(f.apiKey),
              payload: { source: 'api', type: 'note', subject },
            }),
            202,
          ).json() as { taskId: string }
        ).taskId;
      const taskA = await submit(a, 'secret of A');
      const taskB = await submit(b, 'secret of B');
      await until(() => streamA.changes.some((c) => c.taskId === taskA));
      await until(() => streamB.changes.some((c) => c.taskId === taskB));
      // Give a stray cross-tenant notification time to arrive before asserting it did not.
      await new Promise((r) => setTimeout(r, 300));
      expect(streamA.changes.every((c) => c.taskId !== taskB)).toBe(true);
      expect(streamB.changes.every((c) => c.taskId !== taskA)).toBe(true);
      expect(streamA.changes.find((c) => c.taskId === taskA)).toEqual({
        kind: 'task',
        id: taskA,
        taskId: taskA,
      });
      expect(JSON.stringify(streamA.changes)).not.toContain('secret');
    } finally {
      await streamA.close();
      await streamB.close();
    }
  });

  it('leaves API paths alone when the dashboard answers unknown GETs', async () => {
    const r = await t.app.inject({ url: '/api/v1/no-such-thing', headers: bearer(a.token) });
    expect(r.statusCode).toBe(404);
    expect((r.json() as { error: { code: string } }).error.code).toBe('NOT_FOUND');
  });
});

describe('my tenants', () => {
  it("lists the user's own tenants only", async () => {
    const r = expectStatus(await t.app.inject({ url: '/api/v1/me/tenants', headers: bearer(a.token) }), 200);
    expect((r.json() as { items: { slug: string }[] }).items.map((x) => x.slug)).toEqual(['live-a']);
    expectStatus(await t.app.inject({ url: '/api/v1/me/tenants', headers: bearer(a.apiKey) }), 403);
  });
});
