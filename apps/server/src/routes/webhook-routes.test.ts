import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitEvent } from '@steward/core/tasks/task-service';
import { signWebhook, webhookSecret } from '@steward/core/watchers/webhook-service';
import {
  addUser,
  bearer,
  createTenantFixture,
  createTestApp,
  createWebhook,
  expectStatus,
  loginAs,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

let t: TestApp;
let a: TenantFixture;
let b: TenantFixture;
let hook: { id: string; path: string; secret: string; name: string };
let hookB: { id: string; path: string; secret: string };

const now = () => Math.floor(Date.now() / 1000);

const createHook = (fx: TenantFixture, name: string) => createWebhook(t, fx.token, name);

function deliver(
  path: string,
  body: string,
  headers: Record<string, string> = {},
  contentType = 'application/json',
) {
  return t.app.inject({
    method: 'POST',
    url: path,
    headers: { 'content-type': contentType, ...headers },
    payload: body,
  });
}

const signed = (secret: string, body: string, at = now()) => ({
  'x-steward-signature': signWebhook(secret, at, body),
});

const eventOf = async (eventId: string) => {
  const [e] = await t.db.owner<
    {
      tenant_id: string;
      source: string;
      type: string;
      external_id: string | null;
      sender: string;
      subject: string;
      body: string;
      data: Record<string, unknown>;
    }[]
  >`select tenant_id, source, type, external_id, sender, subject, body, data from events where id = ${eventId}`;
  return e;
};

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'hooks-a');
  b = await createTenantFixture(t, 'hooks-b');
  hook = await createHook(a, 'billing');
  hookB = await createHook(b, 'billing');
});
afterAll(() => t?.close());

describe('webhook management', () => {
  it('creates a hook with a secret shown once, lists it without the secret, refuses a duplicate name', async () => {
    expect(hook.path).toBe(`/hooks/hooks-a/${hook.id}`);
    expect(hook.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(hook.secret).toBe(webhookSecret(t.res, a.tenant.id, hook.id));
    expect(hookB.secret).not.toBe(hook.secret);
    const list = expectStatus(
      await t.app.inject({ url: '/api/v1/webhooks', headers: bearer(a.apiKey) }),
      200,
    );
    expect(list.json().items).toEqual([
      expect.objectContaining({ id: hook.id, name: 'billing', path: hook.path }),
    ]);
    expect(list.body).not.toContain(hook.secret);
    expect(list.body).not.toContain(hookB.id);
    const [row] = await t.db.owner`select * from webhooks where id = ${hook.id}`;
    expect(JSON.stringify(row)).not.toContain(hook.secret.slice(6));
    expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/webhooks',
        headers: bearer(a.token),
        payload: { name: 'billing' },
      }),
      409,
    );
    expect(t.logs()).not.toContain(hook.secret);
  });

  it('needs connections:manage to create and connections:read to list', async () => {
    await addUser(t, a.tenant.id, 'viewer@hooks-a.test', 'viewer');
    const viewer = await loginAs(t, 'viewer@hooks-a.test', 'hooks-a');
    expectStatus(await t.app.inject({ url: '/api/v1/webhooks', headers: bearer(viewer.accessToken) }), 403);
    expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/webhooks',
        headers: bearer(viewer.accessToken),
        payload: { name: 'nope' },
      }),
      403,
    );
  });
});

describe('inbound deliveries', () => {
  it('with the secret as a bearer token: 202, an event and a task, deduplicated by id', async () => {
    const body = JSON.stringify({
      id: 'evt_1',
      type: 'invoice.created',
      subject: 'Invoice 7',
      body: 'Pay 40 EUR',
      from: 'billing@vendor.test',
      data: { amount: 40, currency: 'EUR' },
    });
    const r = expectStatus(await deliver(hook.path, body, bearer(hook.secret)), 202);
    const intake = r.json() as { eventId: string; taskId: string; duplicate: boolean };
    expect(intake.duplicate).toBe(false);
    expect(await eventOf(intake.eventId)).toMatchObject({
      tenant_id: a.tenant.id,
      source: 'webhook',
      type: 'invoice.created',
      external_id: `${hook.id}:evt_1`,
      sender: 'billing@vendor.test',
      subject: 'Invoice 7',
      body: 'Pay 40 EUR',
      data: { amount: 40, currency: 'EUR', webhook: { id: hook.id, name: 'billing' } },
    });
    const again = expectStatus(await deliver(hook.path, body, bearer(hook.secret)), 202).json();
    expect(again).toEqual({ ...intake, duplicate: true });
    const [task] = await t.db.owner`select source, title from tasks where id = ${intake.taskId}`;
    expect(task).toEqual({ source: 'webhook', title: 'Invoice 7' });
  });

  it('takes the dedupe key from X-Steward-Event-Id or Idempotency-Key when the body has no id', async () => {
    const body = JSON.stringify({ text: 'ping', anything: [1, 2] });
    const first = expectStatus(
      await deliver(hook.path, body, { ...bearer(hook.secret), 'x-steward-event-id': 'delivery-9' }),
      202,
    ).json();
    const second = expectStatus(
      await deliver(hook.path, body, { ...bearer(hook.secret), 'idempotency-key': 'delivery-9' }),
      202,
    ).json();
    expect(second).toEqual({ ...first, duplicate: true });
    const e = await eventOf(first.eventId);
    expect(e).toMatchObject({
      type: 'webhook',
      sender: 'webhook:billing',
      body: 'ping',
      external_id: `${hook.id}:delivery-9`,
    });
    expect(e!.data).toMatchObject({ text: 'ping', anything: [1, 2] });
    // Without any id, each delivery is its own event.
    const x = expectStatus(await deliver(hook.path, body, bearer(hook.secret)), 202).json();
    const y = expectStatus(await deliver(hook.path, body, bearer(hook.secret)), 202).json();
    expect(x.taskId).not.toBe(y.taskId);
  });

  it('with an HMAC signature: accepted once; a replay, an expired or future timestamp and a wrong signature are 401', async () => {
    const body = JSON.stringify({ id: 'sig-1', type: 'order.paid', subject: 'Order 5 paid' });
    const headers = signed(hook.secret, body);
    const r = expectStatus(await deliver(hook.path, body, headers), 202).json();
    expect(r.duplicate).toBe(false);
    expect((await eventOf(r.eventId))!.type).toBe('order.paid');

    const replay = expectStatus(await deliver(hook.path, body, headers), 401);
    expect(replay.json().error.message).toMatch(/already used/);

    const old = expectStatus(await deliver(hook.path, body, signed(hook.secret, body, now() - 301)), 401);
    expect(old.json().error.message).toMatch(/window/);
    expectStatus(await deliver(hook.path, body, signed(hook.secret, body, now() + 400)), 401);

    // Tampered body, other hook's secret, garbage header.
    const tampered = body.replace('Order 5', 'Order 6');
    expect(expectStatus(await deliver(hook.path, tampered, headers), 401).json().error.message).toMatch(
      /does not match/,
    );
    expectStatus(await deliver(hook.path, body, signed(hookB.secret, body)), 401);
    expectStatus(await deliver(hook.path, body, { 'x-steward-signature': 'v1=abc' }), 401);
    expectStatus(
      await deliver(hook.path, body, { 'x-steward-signature': `t=${now()},v1=${'0'.repeat(64)}` }),
      401,
    );

    // A fresh signature of the same body (a legitimate retry) is accepted, as a duplicate.
    const retry = expectStatus(
      await deliver(hook.path, body, signed(hook.secret, body, now() + 1)),
      202,
    ).json();
    expect(retry).toEqual({ ...r, duplicate: true });
    // Several v1 values (key rotation): any one that matches will do.
    const at = now() + 2;
    const good = signWebhook(hook.secret, at, body).split('v1=')[1];
    expectStatus(
      await deliver(hook.path, body, { 'x-steward-signature': `t=${at},v1=${'1'.repeat(64)},v1=${good}` }),
      202,
    );
  });

  it('takes a signed delivery sent several times at once exactly once; the others are replays', async () => {
    // Without an id, so only the signature tells the copies apart: the intake claims it in the
    // transaction that stores the event, and copies in one batch or in the next are refused.
    const body = JSON.stringify({ type: 'order.paid', subject: 'sent five times' });
    const headers = signed(hook.secret, body);
    const answers = await Promise.all(Array.from({ length: 5 }, () => deliver(hook.path, body, headers)));
    expect(answers.map((r) => r.statusCode).sort()).toEqual([202, 401, 401, 401, 401]);
    for (const r of answers.filter((x) => x.statusCode === 401))
      expect(r.json().error.message).toMatch(/already used/);
    const [row] = await t.db.owner<{ n: number }[]>`
      select count(*)::int as n from events where subject = 'sent five times'`;
    expect(row!.n).toBe(1);
  });

  it('claims a signature once when its copies are taken in one intake batch', async () => {
    // The first event keeps the tenant's intake busy; the five copies queue behind it and are taken
    // together, in one statement.
    const actor = { type: 'system' as const, id: hook.id, label: 'webhook billing' };
    const claim = { webhookId: hook.id, signature: `t=${now()},v1=${'c'.repeat(64)}` };
    const event = { source: 'webhook', type: 'ping', subject: 'one batch, five copies' };
    const first = submitEvent(t.res, a.tenant.id, actor, { ...event, subject: 'ahead of the batch' });
    const copies = Array.from({ length: 5 }, () => submitEvent(t.res, a.tenant.id, actor, event, claim));
    await first;
    const settled = await Promise.allSettled(copies);
    expect(settled.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of settled.filter((x): x is PromiseRejectedResult => x.status === 'rejected'))
      expect(r.reason).toMatchObject({
        code: 'UNAUTHENTICATED',
        message: expect.stringMatching(/already used/),
      });
    const [row] = await t.db.owner<{ n: number }[]>`
      select count(*)::int as n from events where subject = 'one batch, five copies'`;
    expect(row!.n).toBe(1);
  });

  it('refuses a wrong secret, another hook’s secret, an API key and no credentials with 401', async () => {
    const body = JSON.stringify({ id: 'x' });
    for (const headers of [
      bearer('whsec_wrong'),
      bearer(hookB.secret),
      bearer(a.apiKey),
      bearer(a.token),
      { authorization: hook.secret },
      {},
    ]) {
      const r = expectStatus(await deliver(hook.path, body, headers), 401);
      expect(r.json().error.code).toBe('UNAUTHENTICATED');
    }
    const [count] = await t.db.owner<{ n: string }[]>`
      select count(*) as n from events where external_id = ${`${hook.id}:x`}`;
    expect(Number(count!.n)).toBe(0);
  });

  it('answers an unknown tenant, an unknown hook, a hook of another tenant and a malformed id with the same 404', async () => {
    const body = JSON.stringify({ id: 'nf' });
    const auth = bearer(hook.secret);
    const bodies = [];
    for (const path of [
      `/hooks/no-such-tenant/${hook.id}`,
      `/hooks/hooks-a/9b2f4e61-0c3a-4d5e-8f70-112233445566`,
      `/hooks/hooks-a/${hookB.id}`,
      `/hooks/hooks-b/${hook.id}`,
      `/hooks/hooks-a/not-a-uuid`,
      `/hooks/_platform/${hook.id}`,
    ]) {
      const r = expectStatus(await deliver(path, body, auth), 404);
      const { code, message } = r.json().error;
      bodies.push({ code, message });
    }
    expect(new Set(bodies.map((x) => JSON.stringify(x))).size).toBe(1);
  });

  it('answers bad bodies with 4xx after authentication, never 500', async () => {
    const auth = bearer(hook.secret);
    expectStatus(await deliver(hook.path, '{not json', auth), 400);
    expectStatus(await deliver(hook.path, '[1,2]', auth), 400);
    expectStatus(await deliver(hook.path, '"text"', auth), 400);
    expectStatus(await deliver(hook.path, JSON.stringify({ type: 42 }), auth), 400);
    expectStatus(await deliver(hook.path, JSON.stringify({ type: 'x'.repeat(101) }), auth), 400);
    expectStatus(await deliver(hook.path, JSON.stringify({ id: { nested: true } }), auth), 400);
    expectStatus(await deliver(hook.path, JSON.stringify({ subject: 'nul \u0000 inside' }), auth), 400);
    expectStatus(await deliver(hook.path, 'a=1', auth, 'application/x-www-form-urlencoded'), 415);
    expectStatus(await deliver(hook.path, 'x'.repeat(2_000_000), auth), 413);
    // Unauthenticated garbage is refused before the body is even looked at.
    expectStatus(await deliver(hook.path, '{not json'), 401);
    // A burst of bad requests of every kind: 4xx only.
    const burst = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        deliver(
          i % 3 === 0
            ? hook.path
            : i % 3 === 1
              ? `/hooks/hooks-a/${'f'.repeat(i)}`
              : `/hooks/zz-${i}/${hook.id}`,
          i % 2 ? '{' : JSON.stringify({ id: i }),
          i % 4 ? { 'x-steward-signature': `t=${now()},v1=${'a'.repeat(64)}` } : bearer('nope'),
        ),
      ),
    );
    for (const r of burst) {
      expect(r.statusCode).toBeGreaterThanOrEqual(400);
      expect(r.statusCode).toBeLessThan(500);
    }
    expect(t.logs()).not.toContain(hook.secret);
    expect(t.logs()).not.toContain('unhandled error');
  });

  it('a deleted hook answers 404 and its deletion is audited', async () => {
    const temp = await createHook(a, 'temporary');
    expectStatus(await deliver(temp.path, '{}', bearer(temp.secret)), 202);
    expectStatus(
      await t.app.inject({ method: 'DELETE', url: `/api/v1/webhooks/${temp.id}`, headers: bearer(a.token) }),
      204,
    );
    expectStatus(await deliver(temp.path, '{}', bearer(temp.secret)), 404);
    expectStatus(
      await t.app.inject({ method: 'DELETE', url: `/api/v1/webhooks/${temp.id}`, headers: bearer(a.token) }),
      404,
    );
    const audit = expectStatus(
      await t.app.inject({ url: '/api/v1/audit?action=webhook.deleted', headers: bearer(a.token) }),
      200,
    ).json();
    expect(audit.items).toContainEqual(expect.objectContaining({ targetId: temp.id }));
  });
});

describe('secret rotation', () => {
  const rotate = (id: string, payload: object, fx = a) =>
    t.app.inject({
      method: 'POST',
      url: `/api/v1/webhooks/${id}/rotate-secret`,
      headers: bearer(fx.token),
      payload,
    });

  it('gives a new secret; the old one keeps working for the grace period only', async () => {
    const h = await createHook(a, 'rotating');
    const body = (id: string) => JSON.stringify({ id });
    const r = expectStatus(await rotate(h.id, { graceSeconds: 3600 }), 200);
    expect(r.headers['cache-control']).toBe('no-store');
    const rotated = r.json() as { secret: string; previousValidUntil: string };
    expect(rotated.secret).not.toBe(h.secret);
    expect(rotated.secret).toBe(webhookSecret(t.res, a.tenant.id, h.id, 2));
    expect(Date.parse(rotated.previousValidUntil)).toBeGreaterThan(Date.now() + 3500_000);
    // Both work during the grace period, as bearer and as signature.
    expectStatus(await deliver(h.path, body('r1'), bearer(h.secret)), 202);
    expectStatus(await deliver(h.path, body('r2'), bearer(rotated.secret)), 202);
    expectStatus(await deliver(h.path, body('r3'), signed(h.secret, body('r3'))), 202);
    expectStatus(await deliver(h.path, body('r4'), signed(rotated.secret, body('r4'))), 202);

    // A rotation without grace: only the newest secret works; the two before it are refused.
    const again = expectStatus(await rotate(h.id, { graceSeconds: 0 }), 200).json() as {
      secret: string;
      previousValidUntil: null;
    };
    expect(again.previousValidUntil).toBeNull();
    expectStatus(await deliver(h.path, body('r5'), bearer(again.secret)), 202);
    for (const old of [h.secret, rotated.secret]) {
      expectStatus(await deliver(h.path, body('r6'), bearer(old)), 401);
      expectStatus(await deliver(h.path, body('r7'), signed(old, body('r7'))), 401);
    }
    const [entry] = await t.db.owner<{ details: { version: number; graceSeconds: number } }[]>`
      select details from audit_log where action = 'webhook.secret_rotated' and target_id = ${h.id}
      order by seq desc limit 1`;
    expect(entry!.details).toMatchObject({ version: 3, graceSeconds: 0 });
  });

  it('refuses a grace period out of range, and another tenant’s hook is 404', async () => {
    const h = await createHook(a, 'rotating-bad');
    expectStatus(await rotate(h.id, { graceSeconds: -1 }), 400);
    expectStatus(await rotate(h.id, { graceSeconds: 8 * 24 * 3600 }), 400);
    expectStatus(await rotate(h.id, {}, b), 404);
    // The hook's secret is unchanged by the refused calls.
    expectStatus(await deliver(h.path, JSON.stringify({ id: 'still' }), bearer(h.secret)), 202);
  });
});
