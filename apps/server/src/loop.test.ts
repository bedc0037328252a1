import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from './testing/test-app.ts';
import { startWorker, type WorkerHandle } from './worker/worker-runner.ts';

let t: TestApp;
let a: TenantFixture;
let worker: WorkerHandle;

beforeAll(async () => {
  t = await createTestApp({ env: { STEWARD_STEP_LEASE_SECONDS: '5' } });
  a = await createTenantFixture(t, 'loop');
  worker = await startWorker(t.res, {
    appUrl: t.runtime.appUrl,
    concurrency: 4,
    pollIntervalMs: 200,
    log: (l, m) => process.env.SHOW_LOGS && console.log(l, m),
  });
});
afterAll(async () => {
  await worker?.stop();
  await t?.close();
});

const api = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown, token = a.token) =>
  t.app.inject({
    method,
    url: `/api/v1${url}`,
    headers: bearer(token),
    ...(payload === undefined ? {} : { payload: payload as object }),
  });

async function waitFor(taskId: string, statuses: string[], ms = 20_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const task = expectStatus(await api('GET', `/tasks/${taskId}`), 200).json();
    if (statuses.includes(task.status)) return task;
    if (Date.now() > deadline) throw new Error(`task stayed ${task.status}: ${JSON.stringify(task)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the loop', () => {
  it('event -> plan -> approval -> execution -> done, audited', async () => {
    expectStatus(
      await api('POST', '/playbooks', {
        name: 'Invoices',
        when: { subject: { contains: 'invoice' } },
        steps: [
          {
            key: 'file',
            tool: 'vault.write_note',
            args: { title: 'Invoice {{event.externalId}}', body: '{{event.body}}', folder: 'Invoices' },
          },
          {
            key: 'tell',
            tool: 'notify.user',
            args: { to: a.ownerEmail, title: 'Invoice of {{extracted.amount}}' },
            dependsOn: ['file'],
          },
          {
            key: 'pay',
            tool: 'noop',
            args: { note: 'pay {{extracted.amount}}' },
            risk: 'high',
            dependsOn: ['file'],
          },
        ],
      }),
      201,
    );
    const intake = expectStatus(
      await api(
        'POST',
        '/events',
        {
          source: 'email',
          type: 'message',
          externalId: 'm-1',
          from: 'billing@vendor.test',
          subject: 'Your invoice',
          body: 'Amount due: $250.00',
        },
        a.apiKey,
      ),
      202,
    ).json();
    expect(intake.duplicate).toBe(false);
    const again = expectStatus(
      await api(
        'POST',
        '/events',
        { source: 'email', type: 'message', externalId: 'm-1', subject: 'Your invoice' },
        a.apiKey,
      ),
      202,
    ).json();
    expect(again).toMatchObject({ taskId: intake.taskId, duplicate: true });

    const waiting = await waitFor(intake.taskId, ['pending_approval']);
    const pay = waiting.steps.find((s: { key: string }) => s.key === 'pay');
    expect(pay.needsApproval).toBe(true);
    expect(pay.approvalReasons.join(' ')).toContain('risk high');
    const approval = waiting.approvals.find((x: { stepId: string }) => x.stepId === pay.id);
    expect(approval.action).toEqual({ tool: 'noop', args: { note: 'pay 250' } });

    const decided = expectStatus(
      await api('POST', `/approvals/${approval.id}/decision`, { decision: 'approve', comment: 'ok' }),
      200,
    ).json();
    expect(decided.approval.status).toBe('approved');
    expectStatus(await api('POST', `/approvals/${approval.id}/decision`, { decision: 'approve' }), 409);

    const done = await waitFor(intake.taskId, ['done', 'failed']);
    expect(done.status).toBe('done');
    expect(done.steps.map((s: { status: string }) => s.status)).toEqual([
      'succeeded',
      'succeeded',
      'succeeded',
    ]);
    const note = path.join(t.config.dataDir, 'tenants/loop/vault/Notes/Invoices/Invoice m-1.md');
    expect(existsSync(note)).toBe(true);
    expect(await readFile(note, 'utf8')).toContain('Amount due: $250.00');

    const audit = expectStatus(await api('GET', '/audit?limit=200'), 200).json();
    const actions = audit.items
      .filter(
        (e: { targetId: string; details: { taskId?: string } }) =>
          e.targetId === intake.taskId || e.details.taskId === intake.taskId,
      )
      .map((e: { action: string }) => e.action);
    expect(actions).toEqual(
      expect.arrayContaining([
        'task.created',
        'task.planned',
        'task.pending_approval',
        'approval.approved',
        'step.started',
        'step.succeeded',
        'task.done',
      ]),
    );
  });

  it('a value the database cannot store is a 400, not a 500', async () => {
    const r = expectStatus(
      await api('POST', '/events', { source: 'api', type: 'note', subject: 'nul \u0000 here' }),
      400,
    );
    expect(r.json().error.code).toBe('VALIDATION_FAILED');
  });

  it('a burst of events is taken in together: one bad event fails alone, a repeated id gives one task', async () => {
    const ext = `burst-${Date.now()}`;
    const replies = await Promise.all([
      ...Array.from({ length: 12 }, (_, i) =>
        api('POST', '/events', {
          source: 'api',
          type: 'note',
          subject: `burst ${i}`,
          externalId: `${ext}-${i}`,
        }),
      ),
      api('POST', '/events', { source: 'api', type: 'note', subject: 'nul \u0000 here' }),
      api('POST', '/events', { source: 'api', type: 'note', subject: 'again', externalId: `${ext}-0` }),
    ]);
    const good = replies.slice(0, 12).map((r) => expectStatus(r, 202).json());
    expect(new Set(good.map((g) => g.taskId)).size).toBe(12);
    expect(good.every((g) => g.duplicate === false)).toBe(true);
    expect(expectStatus(replies[12]!, 400).json().error.code).toBe('VALIDATION_FAILED');
    const again = expectStatus(replies[13]!, 202).json();
    expect(again.taskId).toBe(good[0].taskId);
    expect(again.duplicate).toBe(true);
    for (const g of good) {
      const task = expectStatus(await api('GET', `/tasks/${g.taskId}`), 200).json();
      expect(task.id).toBe(g.taskId);
    }
    // Every new task has its own audit entry.
    const [row] = await t.db.owner<{ n: number }[]>`
      select count(*)::int as n from audit_log where action = 'task.created' and target_id = any(${good.map((g) => g.taskId)}::text[])`;
    expect(row?.n).toBe(12);
  });

  it('an event no playbook matches waits for a person', async () => {
    const intake = expectStatus(
      await api('POST', '/events', { source: 'api', type: 'note', subject: 'hello there' }),
      202,
    ).json();
    const task = await waitFor(intake.taskId, ['needs_action'], 5000);
    await new Promise((r) => setTimeout(r, 500));
    const after = expectStatus(await api('GET', `/tasks/${intake.taskId}`), 200).json();
    expect(after.status).toBe('needs_action');
    expect(after.needsActionReason ?? task.needsActionReason).toContain('no playbook matched');
  });
});
afterAll(() => {
  if (process.env.SHOW_LOGS)
    console.log(
      t
        .logs()
        .split('\n')
        .filter((l) => l.includes('"level":50'))
        .join('\n'),
    );
});
