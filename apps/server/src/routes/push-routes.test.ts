import { createECDH, randomBytes } from 'node:crypto';
import webpush from 'web-push';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPushNotifier, type PushSender, type PushTarget } from '@steward/core/push/push-notifier';
import { vapidKeys } from '@steward/core/push/vapid';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  waitForTask,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';
import { startWorker, type WorkerHandle } from '../worker/worker-runner.ts';

let t: TestApp;
let a: TenantFixture;
let b: TenantFixture;
let worker: WorkerHandle;

const api = (method: 'GET' | 'POST' | 'DELETE', url: string, token: string, payload?: object) =>
  t.app.inject({ method, url: `/api/v1${url}`, headers: bearer(token), ...(payload ? { payload } : {}) });

/** A browser's PushSubscription: a real P-256 key and auth secret, at an endpoint nobody contacts. */
function browserSubscription(name: string) {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  return {
    endpoint: `https://push.invalid/${name}`,
    keys: { p256dh: ecdh.getPublicKey().toString('base64url'), auth: randomBytes(16).toString('base64url') },
  };
}

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'push-a');
  b = await createTenantFixture(t, 'push-b');
  expectStatus(
    await api('POST', '/playbooks', a.token, {
      name: 'Pay',
      when: { subject: { contains: 'invoice' } },
      steps: [{ key: 'pay', tool: 'noop', args: { note: 'pay' }, risk: 'high' }],
    }),
    201,
  );
  worker = await startWorker(t.res, {
    appUrl: t.runtime.appUrl,
    concurrency: 2,
    pollIntervalMs: 200,
    log: () => {},
  });
});
afterAll(async () => {
  await worker?.stop();
  await t?.close();
});

describe('web push', () => {
  it('gives the installation VAPID public key, stable and derived from the master key', async () => {
    const r = expectStatus(await api('GET', '/push/vapid-key', a.token), 200).json() as { publicKey: string };
    expect(r.publicKey).toBe(vapidKeys(t.res.master).publicKey);
    expect(Buffer.from(r.publicKey, 'base64url')).toHaveLength(65);
    expectStatus(await api('GET', '/push/vapid-key', a.apiKey), 403);
  });

  it('validates subscriptions and refuses API keys', async () => {
    const sub = browserSubscription('x');
    expectStatus(
      await api('POST', '/push/subscriptions', a.token, { ...sub, endpoint: 'http://plain.invalid/x' }),
      400,
    );
    expectStatus(await api('POST', '/push/subscriptions', a.token, { endpoint: sub.endpoint }), 400);
    expectStatus(await api('POST', '/push/subscriptions', a.apiKey, sub), 403);
  });

  it("sends one encrypted notification per new approval to the tenant's browsers only, and drops gone ones", async () => {
    const subA = browserSubscription('a');
    const goneA = browserSubscription('gone');
    const subB = browserSubscription('b');
    expectStatus(await api('POST', '/push/subscriptions', a.token, subA), 201);
    expectStatus(await api('POST', '/push/subscriptions', a.token, goneA), 201);
    expectStatus(await api('POST', '/push/subscriptions', b.token, subB), 201);

    const keys = vapidKeys(t.res.master);
    const sent: { target: PushTarget; payload: string; headers: Record<string, unknown> }[] = [];
    // Builds the real request (RFC 8291 encryption, VAPID JWT) and records it instead of posting it.
    const sender: PushSender = async (target, payload) => {
      if (target.endpoint === goneA.endpoint) throw Object.assign(new Error('gone'), { statusCode: 410 });
      const details = webpush.generateRequestDetails(target, payload, {
        vapidDetails: {
          subject: 'mailto:admin@localhost',
          publicKey: keys.publicKey,
          privateKey: keys.privateKey,
        },
      });
      sent.push({ target, payload, headers: details.headers });
    };
    // Two server processes: still one notification each.
    const stop1 = await startPushNotifier(t.res, sender);
    const stop2 = await startPushNotifier(t.res, sender);
    try {
      const intake = expectStatus(
        await api('POST', '/events', a.apiKey, { source: 'api', type: 'x', subject: 'An invoice to pay' }),
        202,
      ).json() as { taskId: string };
      const task = await waitForTask(t, a.tenant.id, intake.taskId, ['pending_approval']);
      const approvalId = task.approvals[0]!.id;
      const deadline = Date.now() + 5000;
      while (!sent.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 300));
      expect(sent).toHaveLength(1);
      expect(sent[0]!.target.endpoint).toBe(subA.endpoint);
      expect(JSON.parse(sent[0]!.payload)).toEqual({
        title: 'Approval needed',
        body: 'An invoice to pay: noop',
        url: `/tasks/${intake.taskId}`,
        approvalId,
      });
      expect(sent[0]!.headers['Content-Encoding']).toBe('aes128gcm');
      expect(String(sent[0]!.headers.Authorization)).toMatch(/^vapid t=.+, k=/);
      // The gone subscription was deleted; unsubscribing it now finds nothing.
      expectStatus(await api('DELETE', '/push/subscriptions', a.token, { endpoint: goneA.endpoint }), 404);
      expectStatus(await api('DELETE', '/push/subscriptions', a.token, { endpoint: subA.endpoint }), 204);
      expectStatus(await api('DELETE', '/push/subscriptions', a.token, { endpoint: subB.endpoint }), 404);
    } finally {
      stop1();
      stop2();
    }
  });
});
