/// <reference lib="dom" />
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { generate } from 'otplib';
import {
  addUser,
  createTenantFixture,
  createTestApp,
  expectStatus,
  bearer,
  TEST_PASSWORD,
  waitForTask,
  type TenantFixture,
  type TestApp,
} from '../../server/src/testing/test-app.ts';
import { startWorker, type WorkerHandle } from '../../server/src/worker/worker-runner.ts';
import { startHttpMcp } from '../../server/src/testing/mcp-http.ts';
import { recordUse } from '@steward/core/connections/connection-health';
import { ensureWebBuild, WEB_DIST } from '../build/ensure-build.ts';
import { chromiumAvailable, launchChromium, screenshot, watchConsole } from './testing/browser.ts';

let t: TestApp;
let a: TenantFixture;
let b: TenantFixture;
let worker: WorkerHandle;
let browser: Browser;
let base: string;

const api = (method: 'GET' | 'POST', url: string, token: string, payload?: object) =>
  t.app.inject({ method, url: `/api/v1${url}`, headers: bearer(token), ...(payload ? { payload } : {}) });

let counter = 0;
/** An invoice event for tenant A's playbook: one high-risk step that needs approval. */
async function invoice(f: TenantFixture, subject = `Invoice ${++counter}`): Promise<string> {
  const r = expectStatus(
    await api('POST', '/events', f.apiKey, {
      source: 'email',
      type: 'message',
      externalId: `inv-${f.tenant.slug}-${++counter}`,
      from: 'billing@vendor.test',
      subject,
      body: 'Amount due: 250 EUR',
    }),
    202,
  );
  return (r.json() as { taskId: string }).taskId;
}

async function pendingApprovalOf(f: TenantFixture, taskId: string): Promise<string> {
  const task = await waitForTask(t, f.tenant.id, taskId, ['pending_approval']);
  return task.approvals.find((x) => x.status === 'pending')!.id;
}

async function signIn(page: Page, email: string) {
  await page.goto(base);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(TEST_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('live-status').filter({ hasText: 'Live' }).waitFor();
}

const contexts: BrowserContext[] = [];
async function newPage(opts: Parameters<Browser['newContext']>[0] = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...opts });
  contexts.push(context);
  const page = await context.newPage();
  return { context, page, errors: watchConsole(page) };
}

describe.skipIf(!chromiumAvailable)('web dashboard, end to end in Chromium', () => {
  beforeAll(async () => {
    await ensureWebBuild();
    t = await createTestApp({ env: { STEWARD_STEP_LEASE_SECONDS: '5' } });
    a = await createTenantFixture(t, 'web-a');
    b = await createTenantFixture(t, 'web-b');
    for (const f of [a, b]) {
      expectStatus(
        await api('POST', '/playbooks', f.token, {
          name: 'Invoices',
          when: { subject: { contains: 'invoice' } },
          steps: [{ key: 'pay', tool: 'noop', args: { note: 'pay {{event.subject}}' }, risk: 'high' }],
        }),
        201,
      );
    }
    worker = await startWorker(t.res, {
      appUrl: t.runtime.appUrl,
      concurrency: 2,
      pollIntervalMs: 200,
      log: () => {},
    });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const addr = t.app.server.address();
    base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    browser = await launchChromium();
  }, 180_000);

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    await worker?.stop();
    await t?.close();
  });

  it('serves the built dashboard: hashed assets cached for a year, the shell revalidated', async () => {
    expect(WEB_DIST).toContain('apps/web/dist');
    const index = await fetch(`${base}/tasks/00000000-0000-4000-8000-000000000000`, {
      headers: { accept: 'text/html' },
    });
    expect((await fetch(`${base}/tasks/x`)).status).toBe(404);
    expect(index.status).toBe(200);
    expect(index.headers.get('cache-control')).toBe('no-cache');
    const html = await index.text();
    // The entry script, and the app it imports, preloaded so that both load from the start.
    const entry = /src="(\/assets\/[^"]+\.js)"/.exec(html)![1]!;
    const preloaded = [...html.matchAll(/rel="modulepreload"[^>]*href="(\/assets\/[^"]+\.js)"/g)].map(
      (m) => m[1]!,
    );
    expect(preloaded.some((f) => f.includes('/mount-'))).toBe(true);
    let bytes = 0;
    for (const asset of [entry, ...preloaded]) {
      const js = await fetch(base + asset);
      expect(js.status).toBe(200);
      expect(js.headers.get('cache-control')).toContain('immutable');
      bytes += (await js.arrayBuffer()).byteLength;
    }
    // A production build (a development build of React is several times larger).
    expect(bytes).toBeLessThan(400_000);
    expect((await fetch(`${base}/sw.js`)).headers.get('cache-control')).toBe('no-cache');
    expect((await fetch(`${base}/manifest.webmanifest`)).headers.get('content-type')).toContain(
      'manifest+json',
    );
    expect((await fetch(`${base}/api/v1/nope`)).status).toBe(404);
    expect((await fetch(`${base}/assets/missing.js`)).status).toBe(404);
  });

  it('sign in → a task arrives live → approve it → it reaches done', async () => {
    const { page, errors } = await newPage();
    const loadStarted = Date.now();
    await page.goto(base);
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    console.log(
      `first screen: the sign-in form was usable ${Date.now() - loadStarted} ms after navigation (cold cache)`,
    );
    await screenshot(page, 'sign-in');
    await signIn(page, a.ownerEmail);

    const started = Date.now();
    const taskId = await invoice(a, 'Invoice from ACME');
    await page.locator(`[data-task-id="${taskId}"]`).waitFor();
    const seenAfter = Date.now() - started;
    console.log(`live: the new task showed up ${seenAfter} ms after the event was accepted`);
    await page.getByTestId('pending-count').waitFor();
    await screenshot(page, 'overview');

    await page.getByRole('link', { name: /Approvals/ }).click();
    const card = page.locator('article.approval').filter({ hasText: 'Invoice from ACME' });
    await card.getByText('noop', { exact: true }).waitFor();
    await card.getByText('pay Invoice from ACME', { exact: true }).waitFor();
    await screenshot(page, 'approvals');
    await card.getByPlaceholder('Comment (optional)').fill('paid by card');
    await card.getByRole('button', { name: 'Approve' }).click();
    await card.getByText('Approved.').waitFor();

    await page.goto(`${base}/tasks/${taskId}`);
    await page.locator('[data-task-status="done"]').waitFor({ timeout: 30_000 });
    await page.getByText('approve by owner@web-a.test').first().waitFor();
    await screenshot(page, 'task-detail');
    expect((await waitForTask(t, a.tenant.id, taskId, ['done'])).status).toBe('done');
    expect(errors).toEqual([]);
  });

  it('bulk approval', async () => {
    const ids = [await invoice(a), await invoice(a), await invoice(a)];
    for (const id of ids) await pendingApprovalOf(a, id);
    const { page, errors } = await newPage();
    await signIn(page, a.ownerEmail);
    await page.getByRole('link', { name: /Approvals/ }).click();
    for (const id of ids) await page.locator(`article.approval a[href="/tasks/${id}"]`).waitFor();
    await page.getByLabel('Select all').check();
    await page.getByRole('button', { name: 'Approve selected' }).click();
    const report = page.getByTestId('bulk-report');
    await report.waitFor();
    expect(await report.textContent()).toMatch(/^\d+ approved\.$/);
    for (const id of ids)
      expect((await waitForTask(t, a.tenant.id, id, ['done', 'failed'])).status).toBe('done');
    await page.getByText('Nothing else waits for your approval.').waitFor();
    expect(errors).toEqual([]);
  });

  it('edit before approving: the changed action becomes a new approval', async () => {
    const taskId = await invoice(a, 'Invoice to edit');
    const original = await pendingApprovalOf(a, taskId);
    const { page, errors } = await newPage();
    await signIn(page, a.ownerEmail);
    await page.goto(`${base}/tasks/${taskId}`);
    await page.getByRole('button', { name: 'Edit before approving' }).click();
    await page.getByLabel('Arguments (JSON)').fill(JSON.stringify({ note: 'pay half' }));
    await page.getByRole('button', { name: 'Approve edited' }).click();
    await page.getByText('the changed action is a new approval').waitFor();
    const task = (await api('GET', `/tasks/${taskId}`, a.token)).json() as {
      approvals: { id: string; status: string; action: { args: { note: string } } }[];
    };
    expect(task.approvals.find((x) => x.id === original)!.status).toBe('superseded');
    const replacement = task.approvals.find((x) => x.status === 'pending')!;
    expect(replacement.action.args).toEqual({ note: 'pay half' });
    // The page shows the new approval, live.
    await page.locator(`[data-approval-id="${replacement.id}"]`).waitFor();
    expect(errors).toEqual([]);
  });

  it('works on a 360 px phone', async () => {
    const { page, errors } = await newPage({
      viewport: { width: 360, height: 740 },
      isMobile: true,
      hasTouch: true,
    });
    await signIn(page, a.ownerEmail);
    const taskId = await invoice(a, 'Invoice on the phone');
    await page.getByTestId('list').locator(`[data-task-id="${taskId}"]`).waitFor();
    // Nothing wider than the screen.
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
    await screenshot(page, 'phone-overview');
    await page.getByTestId('list').getByRole('link', { name: 'Invoice on the phone' }).tap();
    await page.locator('[data-task-status="pending_approval"]').waitFor();
    await page.getByRole('button', { name: 'Approve' }).tap();
    await page.locator('[data-task-status="done"]').waitFor({ timeout: 30_000 });
    await screenshot(page, 'phone-task');
    expect(errors).toEqual([]);
  });

  it('offline: the service worker serves the shell, decisions are queued, then synced or shown as conflicts', async () => {
    const synced = await invoice(a, 'Invoice approved offline');
    const contested = await invoice(a, 'Invoice decided elsewhere');
    const contestedApproval = await pendingApprovalOf(a, contested);
    await pendingApprovalOf(a, synced);
    const { context, page, errors } = await newPage();
    await signIn(page, a.ownerEmail);
    await page.getByRole('link', { name: /Approvals/ }).click();
    await page.locator('article.approval').filter({ hasText: 'Invoice decided elsewhere' }).waitFor();
    await page.evaluate(async () => {
      await navigator.serviceWorker.ready;
    });
    // The page is controlled by the worker from its next load on.
    await page.reload();
    await page.getByTestId('live-status').filter({ hasText: 'Live' }).waitFor();
    expect(await page.evaluate(() => !!navigator.serviceWorker.controller)).toBe(true);

    await context.setOffline(true);
    await page.reload(); // served by the service worker
    await page.getByText('You are offline.').waitFor();
    const approveIn = async (subject: string) => {
      const card = page.locator('article.approval').filter({ hasText: subject });
      await card.getByRole('button', { name: 'Approve' }).click();
      await card.getByText('Queued').first().waitFor();
    };
    await approveIn('Invoice approved offline');
    await approveIn('Invoice decided elsewhere');
    await page.getByTestId('queued').filter({ hasText: '2 decision(s) waiting' }).waitFor();
    await screenshot(page, 'offline-queued');

    // Meanwhile someone decides one of them on another device.
    expectStatus(
      await api('POST', `/approvals/${contestedApproval}/decision`, a.token, {
        decision: 'reject',
        comment: 'no',
      }),
      200,
    );

    await context.setOffline(false);
    const outcomes = page.getByTestId('sync-outcomes');
    await outcomes.waitFor({ timeout: 30_000 });
    await outcomes.getByText('Approve Invoice approved offline — noop: sent.').waitFor();
    await outcomes
      .getByText(/^Approve Invoice decided elsewhere — noop: not applied — someone else decided it first/)
      .waitFor();
    await screenshot(page, 'offline-synced');
    expect((await waitForTask(t, a.tenant.id, synced, ['done', 'failed'])).status).toBe('done');
    expect((await waitForTask(t, a.tenant.id, contested, ['rejected'])).status).toBe('rejected');
    expect(errors).toEqual([]);
  });

  it('admin: an API key is shown once, a playbook is edited with its errors explained, the audit log verified and exported', async () => {
    const { page, errors } = await newPage();
    await signIn(page, a.ownerEmail);
    await page.getByRole('link', { name: 'Admin' }).click();
    await page.getByRole('heading', { name: 'Roles and permissions' }).waitFor();
    await page.getByText('No connection.').waitFor();
    await page.getByLabel('Key name').fill('ci robot');
    await page.getByRole('button', { name: 'Create key' }).click();
    const key = await page.getByTestId('new-key').locator('code').textContent();
    expect(key).toMatch(/^stw_/);
    await page.getByRole('cell', { name: 'ci robot' }).waitFor();
    await page.getByRole('button', { name: 'Done' }).click();
    expect(await page.content()).not.toContain(key!);
    // The key works, once created.
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(key!) }), 200);

    await page.getByRole('button', { name: 'Edit Invoices' }).click();
    const editor = page.getByLabel('Playbook (JSON)');
    await editor.fill('{ not json');
    await page.getByRole('button', { name: 'Save playbook' }).click();
    await page.getByText('Not valid JSON').waitFor();
    await editor.fill(JSON.stringify({ name: 'Invoices', steps: [] }));
    await page.getByRole('button', { name: 'Save playbook' }).click();
    const problem = page.getByRole('alert').filter({ hasText: /steps/ });
    await problem.waitFor();
    await screenshot(page, 'admin');
    await editor.fill(JSON.stringify({ name: 'Invoices', description: 'Pay what vendors send' }));
    await page.getByRole('button', { name: 'Save playbook' }).click();
    await page.getByRole('button', { name: 'Edit Invoices' }).waitFor();
    await expect
      .poll(async () => (await api('GET', '/playbooks', a.token)).body)
      .toContain('Pay what vendors send');

    await page.getByRole('link', { name: 'Audit' }).click();
    await page.getByRole('button', { name: 'Verify integrity' }).click();
    await page.getByText(/^Intact: \d+ entries checked\.$/).waitFor();
    await page.getByLabel('Outcome').selectOption('success');
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Export' }).click(),
    ]);
    const exported = JSON.parse(await readFile((await download.path())!, 'utf8')) as { action: string }[];
    expect(exported.map((e) => e.action)).toContain('playbook.updated');
    await screenshot(page, 'audit');
    expect(errors).toEqual([]);
  });

  it('invitations: an admin invites, the link is shown once, the invitee chooses a password and lands in the tenant', async () => {
    const admin = await newPage();
    await signIn(admin.page, a.ownerEmail);
    await admin.page.getByRole('link', { name: 'Admin' }).click();
    await admin.page.getByLabel('Email to invite').fill('Invitee@web.test');
    await admin.page.getByLabel('Invited role').selectOption('approver');
    await admin.page.getByRole('button', { name: 'Invite', exact: true }).click();
    const link = (await admin.page.getByTestId('invite-link').locator('code').textContent())!;
    expect(link).toMatch(/\/#\/invite\/inv_/);
    const pendingList = admin.page.getByRole('table', { name: 'Pending invitations' });
    await pendingList.getByRole('cell', { name: 'invitee@web.test', exact: true }).waitFor();
    await screenshot(admin.page, 'admin-invitations');
    await admin.page.getByRole('button', { name: 'Done' }).click();
    expect(await admin.page.content()).not.toContain(link.split('/invite/')[1]!);

    const invitee = await newPage();
    await invitee.page.goto(link);
    await invitee.page.getByRole('heading', { name: /You are invited/ }).waitFor();
    await screenshot(invitee.page, 'accept-invitation');
    await invitee.page.getByLabel('Your name').fill('Invited Person');
    await invitee.page.getByLabel('Choose a password').fill(TEST_PASSWORD);
    await invitee.page.getByRole('button', { name: 'Create my account' }).click();
    await invitee.page.getByTestId('live-status').filter({ hasText: 'Live' }).waitFor();
    expect(await invitee.page.locator('.user').textContent()).toBe('invitee@web.test');
    expect(new URL(invitee.page.url()).hash).toBe('');
    // The admin's list no longer shows it; a second use of the link is refused.
    await admin.page.reload();
    await admin.page.getByRole('link', { name: 'Admin' }).click();
    await admin.page.getByRole('heading', { name: 'Invitations' }).waitFor();
    await admin.page.getByText('No pending invitation.').waitFor();
    const again = await newPage();
    await again.page.goto(link);
    await again.page.getByLabel('Choose a password').fill(TEST_PASSWORD);
    await again.page.getByRole('button', { name: 'Create my account' }).click();
    await again.page.getByText('This invitation is not valid').waitFor();

    // An existing account signs in on the invitation page, then accepts it signed in.
    await addUser(t, b.tenant.id, 'already@web.test', 'viewer');
    const created = expectStatus(
      await api('POST', '/invitations', a.token, { email: 'already@web.test', role: 'viewer' }),
      201,
    ).json() as { token: string };
    const existing = await newPage();
    await existing.page.goto(`${base}/#/invite/${created.token}`);
    await existing.page.getByLabel('Email').fill('already@web.test');
    await existing.page.getByLabel('Password', { exact: true }).fill(TEST_PASSWORD);
    await existing.page.getByRole('button', { name: 'Sign in to accept' }).click();
    await existing.page.getByRole('button', { name: 'Accept the invitation' }).click();
    await existing.page.getByTestId('live-status').filter({ hasText: 'Live' }).waitFor();
    await expect
      .poll(async () => (await api('GET', '/users?limit=200', a.token)).body)
      .toContain('already@web.test');
    for (const p of [admin, invitee, again, existing]) expect(p.errors).toEqual([]);
  });

  it('MFA: a user with TOTP gets the second step, types the code and lands on the overview with its health panel', async () => {
    await addUser(t, a.tenant.id, 'mfa@web.test', 'approver');
    const session = expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { email: 'mfa@web.test', password: TEST_PASSWORD, tenant: a.tenant.slug },
      }),
      200,
    ).json() as { accessToken: string };
    const { secret } = expectStatus(await api('POST', '/mfa/totp', session.accessToken, {}), 200).json() as {
      secret: string;
    };
    const enrolStep = Math.floor(Date.now() / 30_000);
    const codeAt = (step: number) => generate({ secret, epoch: step * 30 + 1 });
    expectStatus(
      await api('POST', '/mfa/totp/confirm', session.accessToken, { code: await codeAt(enrolStep) }),
      200,
    );
    // A scheduler leads, as the health panel should tell.
    await t.db.owner`
      insert into leases (name, holder, expires_at) values ('scheduler', 'e2e-host:x:1:ab', now() + interval '1 hour')
      on conflict (name) do update set holder = excluded.holder, expires_at = excluded.expires_at, renewed_at = now()`;

    const { page, errors } = await newPage();
    await page.goto(base);
    await page.getByLabel('Email').fill('mfa@web.test');
    await page.getByLabel('Password').fill(TEST_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const code = page.getByLabel('Verification code');
    await code.waitFor();
    await screenshot(page, 'sign-in-mfa');
    await code.fill('000000');
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.getByRole('alert').waitFor();
    // The code that confirmed the enrolment was spent: the next one.
    await code.fill(await codeAt(Math.max(enrolStep + 1, Math.floor(Date.now() / 30_000))));
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.getByTestId('live-status').filter({ hasText: 'Live' }).waitFor();
    await page.getByRole('heading', { name: 'What Steward is doing' }).waitFor();
    expect(await page.locator('.user').textContent()).toBe('mfa@web.test');
    await page
      .getByTestId('health-line')
      .filter({ hasText: /^ ?Scheduler: running, renewed/ })
      .waitFor();
    await page.getByTestId('health-line').filter({ hasText: 'Folder watcher' }).waitFor();
    await page.locator('aside.activity').scrollIntoViewIfNeeded();
    await screenshot(page, 'overview-health');
    expect(errors).toEqual([]);
  });

  it('admin: organisation settings (approval and MFA policy) and a custom role are edited', async () => {
    const { page, errors } = await newPage();
    await signIn(page, a.ownerEmail);
    await page.getByRole('link', { name: 'Admin' }).click();
    await page.getByRole('heading', { name: 'Organisation settings' }).waitFor();
    await page.getByLabel('Approvals needed (quorum)').fill('11');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.getByText('Quorum must be a whole number from 1 to 10').waitFor();
    await page.getByLabel('Approvals needed (quorum)').fill('2');
    await page.getByLabel('Ask for approval from risk').selectOption('medium');
    await page.getByLabel('Two-factor authentication required').selectOption('roles');
    await page.getByLabel('Roles that need two-factor authentication').fill('owner, admin');
    await page.getByLabel('Idle timeout (minutes)').fill('45');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.getByText('Settings saved.').waitFor();
    const tenant = expectStatus(await api('GET', '/tenant', a.token), 200).json() as {
      settings: {
        approvalPolicy: { quorum: number; approveFromRisk: string };
        mfaRequired: unknown;
        sessionIdleMinutes: number;
      };
    };
    expect(tenant.settings.approvalPolicy).toMatchObject({ quorum: 2, approveFromRisk: 'medium' });
    expect(tenant.settings.mfaRequired).toEqual(['owner', 'admin']);
    expect(tenant.settings.sessionIdleMinutes).toBe(45);
    // Back to one approval, so the other tests' flows are unchanged; no MFA for the fixtures.
    await page.getByLabel('Approvals needed (quorum)').fill('1');
    await page.getByLabel('Ask for approval from risk').selectOption('high');
    await page.getByLabel('Two-factor authentication required').selectOption('none');
    await page.getByLabel('Idle timeout (minutes)').fill('');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await expect
      .poll(
        async () => (await api('GET', '/tenant', a.token)).json() as { settings: { mfaRequired: unknown } },
      )
      .toMatchObject({ settings: { mfaRequired: false } });

    await page.getByRole('button', { name: 'New role' }).click();
    await page.getByLabel('Role name').fill('reader');
    await page.getByRole('checkbox', { name: /tasks:read/ }).check();
    await page.getByRole('button', { name: 'Save role' }).click();
    await page.getByText('Role reader saved.').waitFor();
    await page.getByRole('button', { name: 'Edit role reader' }).click();
    await page.getByRole('checkbox', { name: /audit:read/ }).check();
    await screenshot(page, 'admin-roles');
    await page.getByRole('button', { name: 'Save role' }).click();
    await page.getByRole('button', { name: 'Save role' }).waitFor({ state: 'detached' });
    await page.getByText('Role reader saved.').waitFor();
    const roles = expectStatus(await api('GET', '/roles?limit=200', a.token), 200).json() as {
      items: { name: string; permissions: string[] }[];
    };
    expect(roles.items.find((r) => r.name === 'reader')!.permissions.sort()).toEqual([
      'audit:read',
      'tasks:read',
    ]);
    await page.getByRole('button', { name: 'Delete role reader' }).click();
    await page.getByText('Role reader deleted.').waitFor();
    expect(errors).toEqual([]);
  });

  it('admin: connections and MCP servers are edited; their secrets are write-only', async () => {
    expectStatus(
      await api('POST', '/mcp-servers', b.token, {
        name: 'tools-b',
        transport: 'http',
        url: 'https://mcp.example.com/mcp',
        allowedTools: ['lookup'],
      }),
      201,
    );
    const { page, errors } = await newPage();
    await signIn(page, b.ownerEmail);
    await page.getByRole('link', { name: 'Admin' }).click();
    await page.getByRole('button', { name: 'New connection' }).click();
    await page.getByLabel('Connection name').fill('crm');
    await page
      .getByLabel('Settings (JSON, no secret)')
      .fill('{"baseUrl": "https://crm.example.com/", "headerName": "x-api-key"}');
    await page.getByLabel('Set a secret').fill('CRM-SECRET-1');
    await page.getByRole('button', { name: 'Save connection' }).click();
    await page.getByText('crm saved.').waitFor();
    await page.getByText('http · secret stored').waitFor();
    const list = async () =>
      expectStatus(await api('GET', '/connections?limit=200', b.token), 200).json() as {
        items: { id: string; name: string; hasSecret: boolean; config: Record<string, unknown> }[];
      };
    expect((await list()).items.find((c) => c.name === 'crm')).toMatchObject({ hasSecret: true });

    // Editing shows the settings, never the secret; an empty field keeps it, the box removes it.
    await page.getByRole('button', { name: 'Edit crm' }).click();
    expect(await page.getByLabel('Replace the secret (leave empty to keep it)').inputValue()).toBe('');
    expect(await page.content()).not.toContain('CRM-SECRET-1');
    await page.getByLabel('Connection name').fill('crm2');
    await page.getByRole('button', { name: 'Save connection' }).click();
    await page.getByText('crm2 saved.').waitFor();
    expect((await list()).items.find((c) => c.name === 'crm2')).toMatchObject({ hasSecret: true });
    await page.getByRole('button', { name: 'Edit crm2' }).click();
    await page.getByLabel('Remove the stored secret').check();
    await page.getByRole('button', { name: 'Save connection' }).click();
    await page.getByText('crm2 saved.').waitFor();
    expect((await list()).items.find((c) => c.name === 'crm2')).toMatchObject({ hasSecret: false });

    await page.getByRole('button', { name: 'Edit tools-b' }).click();
    await page.getByLabel('Enabled').uncheck();
    await page.getByLabel('Allowed tools (comma-separated)').fill('lookup, search');
    await page.getByLabel('Set a secret').fill('Bearer MCP-SECRET-2');
    await page.getByRole('button', { name: 'Save MCP server' }).click();
    await page.getByText('tools-b saved.').waitFor();
    await page.getByText(/disabled · tools: lookup, search · secret stored/).waitFor();
    await screenshot(page, 'admin-integrations');
    expect(await page.content()).not.toContain('MCP-SECRET-2');
    const servers = expectStatus(await api('GET', '/mcp-servers', b.token), 200);
    expect(servers.body).not.toContain('MCP-SECRET-2');
    expect(servers.json()).toMatchObject({ items: [{ name: 'tools-b', enabled: false, hasSecret: true }] });
    expect(errors).toEqual([]);
  });

  it('admin: an MCP server is created, its tools listed and allowed, disabled and deleted; the overview shows connection health', async () => {
    const mcp = await startHttpMcp();
    try {
      // The test MCP server listens on the loopback: this tenant allows private addresses.
      expectStatus(
        await t.app.inject({
          method: 'PATCH',
          url: '/api/v1/tenant',
          headers: bearer(a.token),
          payload: { settings: { network: { allowPrivate: true } } },
        }),
        200,
      );
      const { page, errors } = await newPage();
      page.on('dialog', (d) => void d.accept());
      await signIn(page, a.ownerEmail);
      await page.getByRole('link', { name: 'Admin' }).click();
      await page.getByRole('button', { name: 'New MCP server' }).click();
      await page.getByLabel('MCP server name').fill('invoices-e2e');
      await page.getByLabel('Endpoint URL').fill(mcp.url);
      await page.getByLabel('Secret header or variable name').fill('x-api-key');
      await page.getByLabel('Set a secret').fill('MCP-E2E-SECRET-3');
      await page.getByRole('button', { name: 'Save MCP server' }).click();
      await page.getByText('invoices-e2e saved.').waitFor();
      await page.getByText(/MCP http .* enabled · no tool allowed · secret stored/).waitFor();

      await page.getByRole('button', { name: 'Tools of invoices-e2e' }).click();
      const tools = page.getByTestId('mcp-tools');
      await tools.getByText('mcp.invoices-e2e.lookup_invoice').waitFor();
      await tools.getByText('mcp.invoices-e2e.pay_invoice').waitFor();
      // The server got the secret header; the page never shows it.
      expect(mcp.headers.some((h) => h['x-api-key'] === 'MCP-E2E-SECRET-3')).toBe(true);
      expect(await page.content()).not.toContain('MCP-E2E-SECRET-3');
      await page.getByLabel('Allow lookup_invoice').check();
      await tools.evaluate((el) => el.scrollIntoView({ block: 'center' }));
      await screenshot(page, 'admin-mcp-tools');
      await page.getByRole('button', { name: 'Save allowed tools' }).click();
      await page.getByText('Allowed tools of invoices-e2e saved.').waitFor();
      await page.getByText(/enabled · tools: lookup_invoice · secret stored/).waitFor();
      const server = async () =>
        (
          expectStatus(
            await t.app.inject({ url: '/api/v1/mcp-servers', headers: bearer(a.token) }),
            200,
          ).json() as { items: { id: string; name: string; enabled: boolean; allowedTools: string[] }[] }
        ).items.find((x) => x.name === 'invoices-e2e');
      expect(await server()).toMatchObject({ enabled: true, allowedTools: ['lookup_invoice'] });

      await page.getByRole('button', { name: 'Edit invoices-e2e' }).click();
      await page.getByLabel('Enabled').uncheck();
      await page.getByRole('button', { name: 'Save MCP server' }).click();
      await page.getByText('invoices-e2e saved.').waitFor();
      expect(await server()).toMatchObject({ enabled: false });
      const mcpId = (await server())!.id;

      // Health on the overview: the listing above worked (ok); a connection never used; one failing.
      const conn = (name: string) =>
        t.app
          .inject({
            method: 'POST',
            url: '/api/v1/connections',
            headers: bearer(a.token),
            payload: {
              kind: 'http',
              name,
              config: { baseUrl: 'https://crm.example.com/' },
              secret: 'CRM-E2E-SECRET',
            },
          })
          .then((r) => expectStatus(r, 201).json() as { id: string });
      await conn('crm-idle');
      const failing = await conn('crm-failing');
      await recordUse(
        (fn) => t.res.db.withTenant(a.tenant.id, fn),
        a.tenant.id,
        {
          table: 'connections',
          id: failing.id,
        },
        { code: 'HTTP_STATUS', message: 'crm.example.com answered 401' },
      );
      await page.getByRole('link', { name: 'Overview' }).click();
      const health = page.getByTestId('connection-health');
      await health.waitFor();
      const line = (name: RegExp) => health.getByTestId('connection-line').filter({ hasText: name });
      await line(/HTTP crm-idle: never used/).waitFor();
      expect(await line(/HTTP crm-idle/).getAttribute('data-state')).toBe('never used');
      await line(/HTTP crm-failing: failing since .* \(never worked\)/).waitFor();
      await line(/HTTP crm-failing/)
        .getByText('HTTP_STATUS: crm.example.com answered 401')
        .waitFor();
      // Disabled now, though its last use (the listing) went through.
      await line(/MCP invoices-e2e: disabled/).waitFor();
      expect(await page.content()).not.toContain('CRM-E2E-SECRET');
      await page.locator('aside.activity').scrollIntoViewIfNeeded();
      await screenshot(page, 'overview-connection-health');
      const apiHealth = expectStatus(
        await t.app.inject({ url: '/api/v1/health', headers: bearer(a.token) }),
        200,
      ).json() as { connections: { id: string; state: string }[] };
      expect(apiHealth.connections.find((c) => c.id === mcpId)!.state).toBe('ok');

      await page.getByRole('link', { name: 'Admin' }).click();
      await page.getByRole('button', { name: 'Delete invoices-e2e' }).click();
      await page.getByText('invoices-e2e deleted.').waitFor();
      expect(await server()).toBeUndefined();
      for (const name of ['crm-idle', 'crm-failing']) {
        await page.getByRole('button', { name: `Delete ${name}` }).click();
        await page.getByText(`${name} deleted.`).waitFor();
      }
      expect(errors).toEqual([]);
    } finally {
      await mcp.close();
    }
  });

  it('a user of two tenants switches between them; sign-out forgets the session', async () => {
    await addUser(t, a.tenant.id, 'both@web.test', 'approver');
    await addUser(t, b.tenant.id, 'both@web.test', 'approver');
    const onlyB = await invoice(b, 'Invoice only B has');
    const onlyA = await invoice(a, 'Invoice only A has');
    const { page, errors } = await newPage();
    await signIn(page, 'both@web.test');
    const switcher = page.getByLabel('Organisation');
    await switcher.waitFor();
    const first = await switcher.inputValue();
    const [mine, other] = first === 'web-a' ? [onlyA, onlyB] : [onlyB, onlyA];
    await page.locator(`[data-task-id="${mine}"]`).waitFor();
    await switcher.selectOption(first === 'web-a' ? 'web-b' : 'web-a');
    await page.locator(`[data-task-id="${other}"]`).waitFor();
    expect(await page.locator(`[data-task-id="${mine}"]`).count()).toBe(0);
    await page.getByTestId('live-status').filter({ hasText: 'Live' }).waitFor();

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    expect(await page.evaluate(() => localStorage.getItem('steward.session'))).toBeNull();
    await page.reload();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    expect(errors).toEqual([]);
  });

  it('a session revoked elsewhere ends gracefully: back to sign-in with a message', async () => {
    await addUser(t, a.tenant.id, 'expiry@web.test', 'approver');
    const taskId = await invoice(a, 'Invoice for the expiring session');
    const { page, errors } = await newPage();
    await signIn(page, 'expiry@web.test');
    await t.res.db.withSystemAccess(
      (tx) => tx`update sessions set revoked_at = now(), revoked_reason = 'e2e'
                 where user_id = (select id from users where email = 'expiry@web.test')`,
    );
    await new Promise((r) => setTimeout(r, 1200)); // access tokens are verified from a 1 s cache
    await page.locator(`[data-task-id="${taskId}"] a`).click();
    await page.getByText('Your session expired. Please sign in again.').waitFor();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    expect(await page.evaluate(() => localStorage.getItem('steward.session'))).toBeNull();
    expect(errors).toEqual([]);
  });

  it("tenant B never sees tenant A's tasks, in the page or on its live stream", async () => {
    const { page, errors } = await newPage();
    await signIn(page, b.ownerEmail);
    // The raw stream as B's browser gets it, next to what the app shows.
    const login = expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { email: b.ownerEmail, password: TEST_PASSWORD },
      }),
      200,
    ).json() as { accessToken: string };
    const ticket = (
      expectStatus(await api('POST', '/stream-tickets', login.accessToken), 200).json() as { ticket: string }
    ).ticket;
    await page.evaluate((tk) => {
      const w = window as unknown as { changes: string[] };
      w.changes = [];
      const es = new EventSource(`/api/v1/events/stream?ticket=${encodeURIComponent(tk)}`);
      es.addEventListener('change', (e) => w.changes.push((e as MessageEvent<string>).data));
    }, ticket);
    await new Promise((r) => setTimeout(r, 300));

    const secret = await invoice(a, 'Invoice SECRET-OF-A');
    const own = await invoice(b, 'Invoice of B');
    await page.locator(`[data-task-id="${own}"]`).waitFor();
    await waitForTask(t, a.tenant.id, secret, ['pending_approval']);
    await waitForTask(t, b.tenant.id, own, ['pending_approval']);
    await new Promise((r) => setTimeout(r, 500));
    const seen = await page.evaluate(() => (window as unknown as { changes: string[] }).changes);
    expect(seen.some((c) => c.includes(own))).toBe(true);
    expect(seen.some((c) => c.includes(secret))).toBe(false);
    expect(await page.content()).not.toContain('SECRET-OF-A');
    await page.goto(`${base}/tasks/${secret}`);
    await page.getByText('does not exist in this organisation').waitFor();
    expect(await page.content()).not.toContain('SECRET-OF-A');
    expect(errors).toEqual([]);
  });
});
