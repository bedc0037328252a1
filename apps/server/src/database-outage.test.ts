import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from './testing/test-app.ts';

/**
 * The API while the database refuses connections: it answers 503 UNAVAILABLE with Retry-After
 * (never 500, never a crash), writes nothing, and answers normally once the database is back.
 *
 * The app pool's idle connections are closed and PostgreSQL refuses this database's new
 * connections (CONNECTION LIMIT 0: 53300 too_many_connections for the runtime role; the test's own
 * owner connection is a superuser's, and other test files have other databases). The API, an
 * inbound webhook and SCIM must answer 503; then connections are allowed again.
 *
 * A request that never gets an answer fails the test within ANSWER_WITHIN_MS instead of stalling it.
 */

const APP_POOL = 'steward-app';
const SOURCE = 'outage';
/** A request is answered in well under a second (or 503 after database.ts waited 5 s for a connection). */
const ANSWER_WITHIN_MS = 10_000;

let t: TestApp;
let a: TenantFixture;

/** Answers by status so far (named in a failure: how far the run got). */
const statuses: Record<number, number> = {};

/** A fresh app and tenant for the enclosing describe: one case's broken pool cannot spoil the next. */
function withApp(slug: string) {
  beforeAll(async () => {
    t = await createTestApp();
    a = await createTenantFixture(t, slug);
    for (const status of Object.keys(statuses)) delete statuses[Number(status)];
  });
  afterAll(async () => {
    // A transaction left hanging on a dead connection can hold the close too: fail, but soon
    // (the run's teardown drops the database anyway).
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('closing the app took over 15 s')), 15_000);
    });
    try {
      await Promise.race([t?.close(), late]);
    } finally {
      clearTimeout(timer);
    }
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const post = async (externalId: string) => {
  const r = await t.app.inject({
    method: 'POST',
    url: '/api/v1/events',
    headers: bearer(a.token),
    payload: { source: SOURCE, type: 'message', externalId, subject: `outage ${externalId}`, body: 'hello' },
  });
  statuses[r.statusCode] = (statuses[r.statusCode] ?? 0) + 1;
  return r;
};

/**
 * The answers, or a failure naming how many never came: a request whose transaction hangs (a query
 * on a dead connection that postgres.js never settles) must fail the test, not stall it.
 */
async function answered(requests: Promise<LightMyRequestResponse>[], what: string) {
  let settled = 0;
  for (const r of requests)
    void r.then(
      () => settled++,
      () => settled++,
    );
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `${what}: ${requests.length - settled} of ${requests.length} requests never answered ` +
              `(answers so far by status: ${JSON.stringify(statuses)})`,
          ),
        ),
      ANSWER_WITHIN_MS,
    );
  });
  try {
    return await Promise.race([Promise.all(requests), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

const one = async (request: Promise<LightMyRequestResponse>, what: string) =>
  (await answered([request], what))[0]!;

/** A 503 UNAVAILABLE with Retry-After, in the API's error shape. */
function expectUnavailable(r: LightMyRequestResponse, what: string) {
  const where = `${what}: ${r.statusCode} ${r.body}`;
  expect(r.statusCode, where).toBe(503);
  const body = r.json() as { error: { code: string; message: string; requestId: string } };
  expect(body.error.code, where).toBe('UNAVAILABLE');
  expect(body.error.message, where).toBe('the database is unavailable; try again shortly');
  expect(r.headers['retry-after'], where).toBe('2');
}

/** The app's log lines, parsed. */
const logLines = () =>
  t
    .logs()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { level: number; msg: string; code?: string; err?: unknown });

/** PostgreSQL refuses (0) or accepts (-1) new connections of the runtime role to this database. */
const connectionLimit = (n: 0 | -1) =>
  t.db.owner.unsafe(`alter database "${t.db.name}" connection limit ${n}`);

/**
 * Close the app pool's connections while none is in use, so that the next request must open one.
 * Only idle backends are terminated (nothing is in flight): no transaction loses its connection.
 */
async function closeIdleConnections() {
  const deadline = Date.now() + 5000;
  for (;;) {
    const [row] = await t.db.owner<{ left: number }[]>`
      select count(*) filter (where state <> 'idle' or not pg_terminate_backend(pid))::int as left
      from pg_stat_activity where datname = current_database() and application_name = ${APP_POOL}`;
    if (row!.left === 0) break;
    if (Date.now() > deadline) throw new Error('the app pool kept a connection busy');
    await sleep(50);
  }
  await sleep(100); // postgres.js sees the sockets close
}

describe('the database refusing connections', () => {
  withApp('refused');
  let hook: { path: string; secret: string };
  const deliver = () =>
    t.app.inject({
      method: 'POST',
      url: hook.path,
      headers: { authorization: `Bearer ${hook.secret}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ type: 'ping', id: 'refused-1', subject: 'while refused' }),
    });
  const scim = () =>
    t.app.inject({
      method: 'GET',
      url: '/scim/v2/Users',
      headers: { authorization: `Bearer scim_${'a'.repeat(12)}_${'b'.repeat(40)}` },
    });

  it('the API, the inbound webhooks and SCIM answer 503 UNAVAILABLE with Retry-After', async () => {
    hook = expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/webhooks',
        headers: bearer(a.token),
        payload: { name: 'outage' },
      }),
      201,
    ).json() as { path: string; secret: string };
    await sleep(200); // the audit checkpoint the webhook's creation set off
    const loggedBefore = logLines().length;

    await connectionLimit(0);
    try {
      await closeIdleConnections();
      expectUnavailable(await one(post('refused-1'), 'event'), 'event');
      expectUnavailable(await one(post('refused-1'), 'event again'), 'event again');
      const tasks = t.app.inject({ method: 'GET', url: '/api/v1/tasks', headers: bearer(a.token) });
      expectUnavailable(await one(tasks, 'task list'), 'task list');
      expectUnavailable(await one(deliver(), 'webhook delivery'), 'webhook delivery');
      const refusedScim = await one(scim(), 'SCIM');
      expect(refusedScim.statusCode, refusedScim.body).toBe(503);
      expect(refusedScim.headers['retry-after']).toBe('2');
      expect(refusedScim.json()).toMatchObject({
        status: '503',
        detail: 'the database is unavailable; try again shortly',
      });
      const ready = await one(t.app.inject({ method: 'GET', url: '/readyz' }), 'readyz');
      expect(ready.statusCode).toBe(503);
    } finally {
      await connectionLimit(-1);
    }
    // Logged once per request, at warn, with PostgreSQL's code (53300) and nothing of its message.
    const logged = logLines().slice(loggedBefore);
    const warned = logged.filter((l) => l.msg === 'database unavailable');
    expect(warned).toHaveLength(5);
    expect(warned.every((l) => l.level === 40 && l.code === '53300' && l.err === undefined)).toBe(true);
    expect(logged.filter((l) => l.level >= 50)).toEqual([]);
    expect(JSON.stringify(logged)).not.toMatch(/too many connections/);
    // Nothing of the refused requests was stored.
    const [stored] = await t.db.owner<{ n: number }[]>`
      select count(*)::int as n from events where tenant_id = ${a.tenant.id}`;
    expect(stored!.n).toBe(0);
  });

  it('answers as usual once connections are accepted again', async () => {
    // The first request may still get a 503: a transaction that waited for a connection while
    // they were refused can find its wait dropped by postgres.js (#1195); database.ts gives up on
    // it after 5 s. Sent again, as Retry-After says, it is taken.
    let first = await one(post('refused-1'), 'event');
    if (first.statusCode === 503) {
      expectUnavailable(first, 'event');
      first = await one(post('refused-1'), 'event sent again');
    }
    expect(expectStatus(first, 202).json()).toMatchObject({ duplicate: false });
    expect(expectStatus(await one(deliver(), 'webhook'), 202).json()).toMatchObject({ duplicate: false });
    expectStatus(await one(t.app.inject({ method: 'GET', url: '/readyz' }), 'readyz'), 200);
    expect((await one(scim(), 'SCIM')).statusCode).toBe(401);
  });
});
