import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConnection } from '@steward/core/connections/connection-service';
import { SYSTEM_ACTOR } from '@steward/core/resources';
import { submitEvent } from '@steward/core/tasks/task-service';
import { cliFor, errorOf, jsonOf, type CliResult } from '../testing/cli-runner.ts';
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
import { startWorker, type WorkerHandle } from '../worker/worker-runner.ts';

// Playbook, connection and dead-letter commands through the real CLI (one process per call).

const SECRET = 'smtp-password-that-must-never-print';

let t: TestApp;
let a: TenantFixture;
let worker: WorkerHandle;
let cli: (...args: string[]) => Promise<CliResult>;

const waitFor = (taskId: string, statuses: string[], ms = 30_000) =>
  waitForTask(t, a.tenant.id, taskId, statuses, ms);

const file = (name: string) => path.join(t.config.dataDir, name);

beforeAll(async () => {
  t = await createTestApp();
  cli = cliFor(t);
  a = await createTenantFixture(t, 'cli-pb');
  await createConnection(t.res, a.tenant.id, SYSTEM_ACTOR, {
    kind: 'smtp',
    name: 'Mail',
    config: { host: 'smtp.example.test', port: 587, from: 'steward@example.test', username: 'steward' },
    secret: SECRET,
    isDefault: true,
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

describe('steward playbook, connection and dead-letter commands', () => {
  it('create -> list -> show -> a dead letter -> retry -> delete; secrets never print', async () => {
    await writeFile(
      file('greeter.json'),
      JSON.stringify({
        name: 'Greeter',
        description: 'tell a colleague',
        when: { subject: { contains: 'hello' } },
        steps: [
          { key: 'tell', tool: 'notify.user', args: { to: 'late@cli-pb.test', title: '{{event.subject}}' } },
        ],
      }),
    );
    await writeFile(
      file('unknown-tool.json'),
      JSON.stringify({ name: 'Bad', when: {}, steps: [{ key: 'x', tool: 'wire.money', args: {} }] }),
    );
    await writeFile(
      file('wrong-shape.json'),
      JSON.stringify({ name: 'Bad', when: { colour: 'red' }, steps: [] }),
    );
    await writeFile(file('not-json.json'), '{"name": ');

    const [created, unknownTool, wrongShape, notJson, missing, connections, connectionsHuman] =
      await Promise.all([
        cli('--json', 'playbook', 'create', '--tenant', 'cli-pb', '--file', file('greeter.json')),
        cli('--json', 'playbook', 'create', '--tenant', 'cli-pb', '--file', file('unknown-tool.json')),
        cli('--json', 'playbook', 'create', '--tenant', 'cli-pb', '--file', file('wrong-shape.json')),
        cli('--json', 'playbook', 'create', '--tenant', 'cli-pb', '--file', file('not-json.json')),
        cli('playbook', 'create', '--tenant', 'cli-pb', '--file', file('absent.json')),
        cli('--json', 'connection', 'list', '--tenant', 'cli-pb'),
        cli('connection', 'list', '--tenant', 'cli-pb'),
      ]);
    const playbook = jsonOf<{ id: string; name: string; steps: unknown[] }>(created);
    expect(playbook).toMatchObject({ name: 'Greeter', steps: [{ key: 'tell', tool: 'notify.user' }] });
    expect(errorOf(unknownTool)).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(errorOf(unknownTool).message).toContain('tool "wire.money" is not available to this tenant');
    expect(errorOf(wrongShape).message).toContain('wrong-shape.json/when');
    expect(errorOf(wrongShape).message).toContain('wrong-shape.json/steps');
    expect(errorOf(notJson).message).toContain('not-json.json is not valid JSON');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('--file: cannot read');

    // The same views as GET /api/v1/connections: hasSecret, never the secret.
    const viaApi = expectStatus(
      await t.app.inject({ url: '/api/v1/connections', headers: bearer(a.token) }),
      200,
    ).json();
    expect(jsonOf(connections)).toEqual(viaApi);
    expect(viaApi.items[0]).toMatchObject({ name: 'Mail', hasSecret: true });
    expect(connectionsHuman.stdout).toMatch(/smtp\s+Mail\s+yes\s+stored/);
    expect(connectionsHuman.stdout).toContain('steward@smtp.example.test:587');
    for (const r of [connections, connectionsHuman]) expect(r.stdout + r.stderr).not.toContain(SECRET);

    // The playbook plans a notification for someone who is not a member yet: the step dies.
    const intake = await submitEvent(t.res, a.tenant.id, SYSTEM_ACTOR, {
      source: 'api',
      type: 'message',
      subject: 'hello there',
    });
    const failed = await waitFor(intake.taskId, ['failed', 'done']);
    expect(failed.status).toBe('failed');
    const stepId = failed.steps[0]!.id;

    const [list, show, showHuman, deadJson, deadHuman, retryBad] = await Promise.all([
      cli('--json', 'playbook', 'list', '--tenant', 'cli-pb'),
      cli('--json', 'playbook', 'show', '--tenant', 'cli-pb', playbook.id),
      cli('playbook', 'show', '--tenant', 'cli-pb', 'Greeter'),
      cli('--json', 'dead-letter', 'list', '--tenant', 'cli-pb'),
      cli('dead-letter', 'list', '--tenant', 'cli-pb'),
      cli('--json', 'dead-letter', 'retry', '--tenant', 'cli-pb', intake.taskId),
    ]);
    expect(jsonOf<{ items: { id: string }[] }>(list).items.map((p) => p.id)).toEqual([playbook.id]);
    expect(jsonOf(show)).toEqual(playbook);
    expect(showHuman.stdout).toContain(playbook.id);
    expect(showHuman.stdout).toMatch(/^tell\s+notify\.user/m);
    const dead = jsonOf<{ items: { id: string; taskId: string; error: { code: string } }[] }>(deadJson);
    expect(dead.items).toEqual([
      expect.objectContaining({
        id: stepId,
        taskId: intake.taskId,
        error: expect.objectContaining({ code: 'UNKNOWN_MEMBER' }),
      }),
    ]);
    expect(deadHuman.stdout).toContain(stepId);
    expect(deadHuman.stdout).toContain('late@cli-pb.test is not a member');
    expect(errorOf(retryBad).code).toBe('NOT_FOUND'); // a task id is not a step id

    // Fix the cause, then retry the dead step from the command line.
    await addUser(t, a.tenant.id, 'late@cli-pb.test', 'member');
    const retried = jsonOf<{ id: string; status: string }>(
      await cli('--json', 'dead-letter', 'retry', '--tenant', 'cli-pb', stepId),
    );
    expect(retried.id).toBe(intake.taskId);
    expect(['executing', 'done']).toContain(retried.status); // the worker may already have run it
    expect((await waitFor(intake.taskId, ['done', 'failed'])).status).toBe('done');

    const [deleted, retryAgain] = await Promise.all([
      cli('--json', 'playbook', 'delete', '--tenant', 'cli-pb', 'Greeter'),
      cli('dead-letter', 'retry', '--tenant', 'cli-pb', stepId),
    ]);
    expect(jsonOf(deleted)).toEqual({ deleted: true, id: playbook.id, name: 'Greeter' });
    expect(retryAgain.code).toBe(1);
    expect(retryAgain.stderr).toContain('the step is succeeded, not a dead letter');
    const gone = await cli('--json', 'playbook', 'show', '--tenant', 'cli-pb', playbook.id);
    expect(errorOf(gone)).toEqual({ code: 'NOT_FOUND', message: 'playbook not found' });
  }, 180_000);
});
