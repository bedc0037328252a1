import type { LightMyRequestResponse } from 'fastify';
import { verifyChain } from '@steward/core/audit/verify-chain';
import { signWebhook } from '@steward/core/watchers/webhook-service';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  createWebhook,
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
 * Then the app pool's connections are terminated every 25 ms while waves of events come in (a
 * restart or failover under load): every request is answered 202 or 503, the process stays up, and
 * the events answered 503 and sent again are stored once each, with their task, audit entry and
 * planning job; a signed webhook delivery answered 503 is taken when sent again with the same
 * signature, and refused as a replay once taken.
 *
 * A request that never gets an answer fails the test within ANSWER_WITHIN_MS instead of stalling it.
 */

const APP_POOL = 'steward-app';
const SOURCE = 'outage';
/** A request is answered in well under a second (or 503 after waiting 5 s for a connection, database.ts). */
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
    hook = await createWebhook(t, a.token, 'outage');
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
    // Logged once per request, at warn, with the code and nothing of the message: PostgreSQL's
    // (53300), or QUEUE_TIMEOUT while postgres.js was still trying (for connect_timeout, 10 s).
    const logged = logLines().slice(loggedBefore);
    const warned = logged.filter((l) => l.msg === 'database unavailable');
    expect(warned).toHaveLength(5);
    for (const l of warned)
      expect([l.level, l.code, l.err]).toEqual([
        40,
        expect.stringMatching(/^(53300|QUEUE_TIMEOUT)$/),
        undefined,
      ]);
    expect(logged.filter((l) => l.level >= 50)).toEqual([]);
    expect(JSON.stringify(logged)).not.toMatch(/too many connections/);
    // Nothing of the refused requests was stored.
    const [stored] = await t.db.owner<{ n: number }[]>`
      select count(*)::int as n from events where tenant_id = ${a.tenant.id}`;
    expect(stored!.n).toBe(0);
  });

  it('answers as usual once connections are accepted again', async () => {
    // postgres.js fails requests at once until its next attempt to connect (1-2 s after the last
    // one, database.ts): one sent again after Retry-After, as a client should, is taken.
    let first = await one(post('refused-1'), 'event');
    for (let resent = 0; first.statusCode === 503 && resent < 2; resent++) {
      expectUnavailable(first, 'event');
      await sleep(Number(first.headers['retry-after']) * 1000);
      first = await one(post('refused-1'), `event sent again (${resent + 1})`);
    }
    expect(expectStatus(first, 202).json()).toMatchObject({ duplicate: false });
    expect(expectStatus(await one(deliver(), 'webhook'), 202).json()).toMatchObject({ duplicate: false });
    expectStatus(await one(t.app.inject({ method: 'GET', url: '/readyz' }), 'readyz'), 200);
    expect((await one(scim(), 'SCIM')).statusCode).toBe(401);
  });
});

describe('PostgreSQL terminating the app’s connections under load', () => {
  withApp('terminated');
  const WAVES = 10;
  const PER_WAVE = 50;

  /** Terminates every backend of the app pool every 25 ms until stopped; resolves with the count. */
  function terminateRepeatedly() {
    let stopped = false;
    let terminated = 0;
    const done = (async () => {
      while (!stopped) {
        const [row] = await t.db.owner<{ n: number }[]>`
          select count(*) filter (where pg_terminate_backend(pid))::int as n
          from pg_stat_activity where datname = current_database() and application_name = ${APP_POOL}`;
        terminated += row!.n;
        await sleep(25);
      }
      return terminated;
    })();
    return () => ((stopped = true), done);
  }

  it('answers every event 202 or 503, and each one sent again until taken is stored once', async () => {
    const hook = await createWebhook(t, a.token, 'load');
    // Every fifth event is a signed webhook delivery, sent again with the same signature: a
    // signature is used only once its event is taken.
    const sends = Array.from({ length: WAVES * PER_WAVE }, (_, i) => {
      const id = `load-${i}`;
      if (i % 5) return { id, send: () => post(id) };
      const body = JSON.stringify({ id, type: 'ping', subject: `load ${i}` });
      const at = Math.floor(Date.now() / 1000);
      const headers = {
        'content-type': 'application/json',
        'x-steward-signature': signWebhook(hook.secret, at, body),
      };
      return {
        id,
        body,
        send: () => t.app.inject({ method: 'POST', url: hook.path, headers, payload: body }),
      };
    });
    const taskOf = new Map<string, string>();
    let unavailable: typeof sends = [];
    const take = (r: LightMyRequestResponse, s: (typeof sends)[number]) =>
      taskOf.set(s.id, (expectStatus(r, 202).json() as { taskId: string }).taskId);
    let terminated: number;
    const stop = terminateRepeatedly();
    try {
      for (let w = 0; w < WAVES; w++) {
        const wave = sends.slice(w * PER_WAVE, (w + 1) * PER_WAVE);
        const answers = await answered(
          wave.map((s) => s.send()),
          `wave ${w + 1}`,
        );
        answers.forEach((r, i) => {
          if (r.statusCode !== 503) return void take(r, wave[i]!);
          expectUnavailable(r, wave[i]!.id);
          unavailable.push(wave[i]!);
        });
      }
    } finally {
      terminated = await stop();
    }
    // The test terminated connections in use, and some requests met them.
    expect(terminated).toBeGreaterThan(WAVES);
    expect(unavailable.length).toBeGreaterThan(0);

    // Sent again after Retry-After, as a client should: each is taken, once.
    for (let round = 0; unavailable.length && round < 5; round++) {
      await sleep(2000);
      const answers = await answered(
        unavailable.map((s) => s.send()),
        `resent (${round + 1})`,
      );
      const still: typeof sends = [];
      answers.forEach((r, k) =>
        r.statusCode === 503 ? still.push(unavailable[k]!) : take(r, unavailable[k]!),
      );
      unavailable = still;
    }
    expect(unavailable.map((s) => s.id)).toEqual([]);
    // Sent once more, every event is a duplicate of what was stored, and a signature is a replay.
    const again = await answered(
      sends.map((s) => s.send()),
      'all sent again',
    );
    again.forEach((r, i) => {
      const s = sends[i]!;
      if (s.body) expect(expectStatus(r, 401).json().error.message).toMatch(/already used/);
      else expect(expectStatus(r, 202).json()).toMatchObject({ duplicate: true, taskId: taskOf.get(s.id) });
    });

    // One event, task, audit entry and planning job per externalId; the audit chain intact.
    const tenantId = a.tenant.id;
    const [stored] = await t.db.owner<{ events: number; keys: number; tasks: number }[]>`
      select count(*)::int as events, count(distinct e.external_id)::int as keys, count(t.id)::int as tasks
      from events e left join tasks t on t.id = e.task_id
      where e.tenant_id = ${tenantId}`;
    expect(stored).toEqual({ events: sends.length, keys: sends.length, tasks: sends.length });
    const [audited] = await t.db.owner<{ entries: number; tasks: number }[]>`
      select count(*)::int as entries, count(distinct target_id)::int as tasks
      from audit_log where tenant_id = ${tenantId} and action = 'task.created'`;
    expect(audited).toEqual({ entries: sends.length, tasks: sends.length });
    const [planned] = await t.db.owner<{ entries: number; tasks: number }[]>`
      select count(*)::int as entries, count(distinct id)::int as tasks from (
        select jsonb_array_elements_text(j.payload::jsonb -> 'taskIds') as id
        from graphile_worker._private_jobs j join graphile_worker._private_tasks k on k.id = j.task_id
        where k.identifier = 'plan-tasks' and j.payload::jsonb ->> 'tenantId' = ${tenantId}) x`;
    expect(planned).toEqual({ entries: sends.length, tasks: sends.length });
    const chain = await t.res.db.withTenant(tenantId, (tx) => verifyChain(tx, t.res.master, tenantId));
    expect(chain).toMatchObject({ ok: true });
    expect(logLines().filter((l) => l.level >= 50)).toEqual([]);
  }, 120_000);
});
