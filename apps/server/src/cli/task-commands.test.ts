import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPlaybook } from '@steward/core/planner/playbook-service';
import { SYSTEM_ACTOR } from '@steward/core/resources';

import {
  addUser,
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
  waitForTask,
} from '../testing/test-app.ts';
import { cliFor, errorOf, jsonOf as json, type CliResult } from '../testing/cli-runner.ts';
import { startWorker, type WorkerHandle } from '../worker/worker-runner.ts';

// The real CLI (bin/steward.js, one process per call) against this file's test database, with an
// in-process worker doing the planning and execution, as `steward work` would.

let t: TestApp;
let a: TenantFixture;
let worker: WorkerHandle;

let cli: (...args: string[]) => Promise<CliResult>;

const waitFor = (taskId: string, statuses: string[], ms = 30_000) =>
  waitForTask(t, a.tenant.id, taskId, statuses, ms);

beforeAll(async () => {
  t = await createTestApp();
  cli = cliFor(t);
  a = await createTenantFixture(t, 'cli');
  await addUser(t, a.tenant.id, 'approver@cli.test', 'approver');
  await addUser(t, a.tenant.id, 'viewer@cli.test', 'viewer');
  await createPlaybook(t.res, a.tenant.id, SYSTEM_ACTOR, {
    name: 'Invoices',
    when: { subject: { contains: 'invoice' } },
    steps: [
      {
        key: 'file',
        tool: 'vault.write_note',
        args: { title: 'Invoice {{event.externalId}}', body: '{{event.body}}' },
      },
      {
        key: 'pay',
        tool: 'noop',
        args: { note: 'pay {{extracted.amount}}' },
        risk: 'high',
        dependsOn: ['file'],
      },
    ],
  });
  worker = await startWorker(t.res, {
    appUrl: t.runtime.appUrl,
    concurrency: 4,
    pollIntervalMs: 200,
    log: () => {},
  });
});

afterAll(async () => {
  await worker?.stop();
  await t?.close();
});

describe('steward event, task and approval commands', () => {
  it('submit -> list -> show -> decide as a member -> cancel, and bad input exits 1', async () => {
    const bodyFile = path.join(t.config.dataDir, 'invoice.txt');
    await writeFile(bodyFile, 'Please pay the invoice: $250.00 by Friday.');
    const [submitted, second, badEvent, badFile, badId, badStatus, badDecision] = await Promise.all([
      cli(
        '--json',
        'event',
        'submit',
        '--tenant',
        'cli',
        '--source',
        'cli',
        '--type',
        'message',
        '--external-id',
        'inv-1',
        '--from',
        'billing@vendor.test',
        '--subject',
        'Invoice 1',
        '--body-file',
        bodyFile,
        '--data',
        '{"po":"PO-7"}',
      ),
      cli(
        '--json',
        'event',
        'submit',
        '--tenant',
        'cli',
        '--source',
        'cli',
        '--type',
        'message',
        '--subject',
        'Invoice 2',
        '--body',
        'Amount $80',
      ),
      cli(
        '--json',
        'event',
        'submit',
        '--tenant',
        'cli',
        '--source',
        'Not A Source',
        '--type',
        'x',
        '--data',
        '[1, 2]',
      ),
      cli(
        'event',
        'submit',
        '--tenant',
        'cli',
        '--source',
        'cli',
        '--type',
        'x',
        '--body-file',
        path.join(t.config.dataDir, 'missing.txt'),
      ),
      cli('--json', 'task', 'show', '--tenant', 'cli', 'not-an-id'),
      cli('task', 'list', '--tenant', 'cli', '--status', 'finished', '--limit', '0'),
      cli(
        'approval',
        'decide',
        '--tenant',
        'cli',
        '00000000-0000-4000-8000-000000000000',
        '--as',
        'approver@cli.test',
        '--decision',
        'maybe',
      ),
    ]);

    const intake = json<{ eventId: string; taskId: string; duplicate: boolean }>(submitted);
    expect(intake.duplicate).toBe(false);
    const other = json<{ taskId: string }>(second);

    expect(badEvent.code).toBe(1);
    const err = errorOf(badEvent);
    expect(err.code).toBe('VALIDATION_FAILED');
    expect(err.message).toContain('--source');
    expect(err.message).toContain('--data: expected object');
    expect(badFile.code).toBe(1);
    expect(badFile.stderr).toContain('--body-file: cannot read');
    expect(badId.code).toBe(1);
    expect(badId.stderr).toContain('the task must be an id (a uuid)');
    expect(badStatus.code).toBe(1);
    expect(badStatus.stderr).toMatch(/--status|--limit/);
    expect(badDecision.code).toBe(1);
    expect(badDecision.stderr).toContain("argument 'maybe' is invalid");

    const waiting = await waitFor(intake.taskId, ['pending_approval']);
    expect(waiting.event).toMatchObject({ from: 'billing@vendor.test', data: { po: 'PO-7' } });
    expect(waiting.event?.body).toContain('$250.00');
    const approvalId = waiting.approvals[0]!.id;
    await waitFor(other.taskId, ['pending_approval']);

    const [dup, list, show, human, approvals, asViewer, asStranger] = await Promise.all([
      cli(
        '--json',
        'event',
        'submit',
        '--tenant',
        'cli',
        '--source',
        'cli',
        '--type',
        'message',
        '--external-id',
        'inv-1',
        '--subject',
        'Invoice 1 again',
      ),
      cli('--json', 'task', 'list', '--tenant', 'cli', '--status', 'pending_approval', '--limit', '1'),
      cli('--json', 'task', 'show', '--tenant', 'cli', intake.taskId),
      cli('task', 'show', '--tenant', 'cli', intake.taskId),
      cli('--json', 'approval', 'list', '--tenant', 'cli', '--status', 'pending'),
      cli(
        'approval',
        'decide',
        '--tenant',
        'cli',
        approvalId,
        '--as',
        'viewer@cli.test',
        '--decision',
        'approve',
      ),
      cli(
        '--json',
        'approval',
        'decide',
        '--tenant',
        'cli',
        approvalId,
        '--as',
        'nobody@cli.test',
        '--decision',
        'approve',
      ),
    ]);

    expect(json(dup)).toMatchObject({ taskId: intake.taskId, eventId: intake.eventId, duplicate: true });
    const page = json<{ items: { id: string; status: string }[]; nextCursor: string | null }>(list);
    expect(page.items).toHaveLength(1);
    expect(page.items[0]!.status).toBe('pending_approval');
    expect(page.nextCursor).not.toBeNull(); // two tasks wait; the page holds one
    // The same object as GET /api/v1/tasks/:id.
    const viaApi = expectStatus(
      await t.app.inject({ url: `/api/v1/tasks/${intake.taskId}`, headers: bearer(a.token) }),
      200,
    ).json();
    expect(json(show)).toEqual(viaApi);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('pending_approval');
    expect(human.stdout).toMatch(/^pay\s+noop\s+awaiting_approval\s+high/m);
    const pending = json<{ items: { id: string; taskId: string; action: unknown }[] }>(approvals);
    expect(pending.items.map((x) => x.taskId).sort()).toEqual([intake.taskId, other.taskId].sort());
    expect(pending.items.find((x) => x.id === approvalId)!.action).toEqual({
      tool: 'noop',
      args: { note: 'pay 250' },
    });
    expect(asViewer.code).toBe(1);
    expect(asViewer.stderr).toContain(
      'viewer@cli.test may not decide approvals (role viewer lacks approvals:decide)',
    );
    expect(asStranger.code).toBe(1);
    expect(errorOf(asStranger).code).toBe('NOT_FOUND');

    const [decided, cancelled] = await Promise.all([
      cli(
        '--json',
        'approval',
        'decide',
        '--tenant',
        'cli',
        approvalId,
        '--as',
        'Approver@cli.test',
        '--decision',
        'approve',
        '--comment',
        'looks right',
      ),
      cli('--json', 'task', 'cancel', '--tenant', 'cli', other.taskId),
    ]);
    const result = json<{
      approval: { status: string; decisions: { actorLabel: string; comment: string }[] };
    }>(decided);
    expect(result.approval.status).toBe('approved');
    expect(result.approval.decisions).toEqual([
      expect.objectContaining({ actorLabel: 'approver@cli.test (cli)', comment: 'looks right' }),
    ]);
    expect(json(cancelled)).toMatchObject({ id: other.taskId, status: 'cancelled' });
    expect((await waitFor(intake.taskId, ['done', 'failed'])).status).toBe('done');

    // Audited as the member who decided, not as the CLI.
    const approverId = (
      await t.db.owner<{ id: string }[]>`select id from users where email = 'approver@cli.test'`
    )[0]!.id;
    const audit = expectStatus(
      await t.app.inject({ url: '/api/v1/audit?limit=200', headers: bearer(a.token) }),
      200,
    ).json() as { items: { action: string; actorType: string; actorId: string; targetId: string }[] };
    expect(
      audit.items.find((e) => e.action === 'approval.approved' && e.targetId === approvalId),
    ).toMatchObject({ actorType: 'user', actorId: approverId });
    expect(
      audit.items.find((e) => e.action === 'task.cancelled' && e.targetId === other.taskId),
    ).toMatchObject({
      actorType: 'system',
    });

    // Single use, and a cancelled task stays cancelled.
    const [again, cancelAgain] = await Promise.all([
      cli(
        'approval',
        'decide',
        '--tenant',
        'cli',
        approvalId,
        '--as',
        'approver@cli.test',
        '--decision',
        'reject',
      ),
      cli('task', 'cancel', '--tenant', 'cli', other.taskId),
    ]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('the approval was already approved');
    expect(cancelAgain.code).toBe(1);
    expect(cancelAgain.stderr).toContain('the task is already cancelled');
  }, 180_000);
});
