import { Type } from '@sinclair/typebox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { actionHash } from '@steward/core/approvals/action-hash';
import { expireApproval } from '@steward/core/approvals/approval-service';
import { reapStep, runStep } from '@steward/core/executor/run-step';
import { ToolError, type Tool } from '@steward/core/tools/tool';
import {
  addUser,
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  loginAs,
  type TenantFixture,
  type TestApp,
} from './testing/test-app.ts';
import { startWorker, type WorkerHandle } from './worker/worker-runner.ts';

/**
 * The approval policy and the durable executor against the real database and an in-process
 * worker: approvals are bound to the exact action, single use, need a quorum of distinct people,
 * refuse self-approval, expire and can be edited; cancel, dead letters, compensation and the reaper.
 */

interface Call {
  tenant: string;
  tool: string;
  args: Record<string, unknown>;
  key: string;
}

/** Every call the test tools received, in order. */
const calls: Call[] = [];
const callsOf = (slug: string, tool?: string) =>
  calls.filter((c) => c.tenant === slug && (!tool || c.tool === tool));
/** Tasks whose test.wait call started, and those whose call saw the abort. */
const waiting: string[] = [];
const aborted: string[] = [];

const NoteArgs = Type.Object({ note: Type.String({ maxLength: 100 }) }, { additionalProperties: false });
type Note = { note: string };

function recorder(name: string, risk: Tool['risk'], extra: Partial<Tool<Note>> = {}): Tool<Note> {
  return {
    name,
    description: `records its calls (${risk})`,
    risk,
    retryable: true,
    args: NoteArgs,
    preview: (a) => [{ kind: 'test', summary: `${name} ${a.note}` }],
    async execute(ctx, args) {
      calls.push({ tenant: ctx.tenantSlug, tool: name, args, key: ctx.idempotencyKey });
      return { recorded: args.note };
    },
    ...extra,
  };
}

const attemptsByKey = new Map<string, number>();
const TEST_TOOLS: Tool<Note>[] = [
  recorder('test.record', 'low'),
  recorder('test.medium', 'medium'),
  recorder('test.undo', 'low'),
  recorder('test.fail', 'low', {
    async execute() {
      throw new ToolError('BROKEN', 'this always fails', { retryable: false });
    },
  }),
  // Fails once (retryably) per step, then works: retried automatically with the same key.
  recorder('test.flaky', 'low', {
    async execute(ctx, args) {
      const n = (attemptsByKey.get(ctx.idempotencyKey) ?? 0) + 1;
      attemptsByKey.set(ctx.idempotencyKey, n);
      calls.push({ tenant: ctx.tenantSlug, tool: 'test.flaky', args, key: ctx.idempotencyKey });
      if (n === 1) throw new ToolError('TEMPORARY', 'try again', { retryable: true });
      return { attempt: n };
    },
  }),
  // Must never run twice on its own (a payment): even a retryable error is final.
  recorder('test.once', 'low', {
    retryable: false,
    async execute(ctx, args) {
      calls.push({ tenant: ctx.tenantSlug, tool: 'test.once', args, key: ctx.idempotencyKey });
      throw new ToolError('TIMEOUT', 'the bank did not answer', { retryable: true });
    },
  }),
  // Runs until cancelled.
  recorder('test.wait', 'low', {
    retryable: false,
    execute: (ctx) =>
      new Promise((_resolve, reject) => {
        waiting.push(ctx.taskId);
        const safety = setTimeout(() => reject(new Error('never cancelled')), 20_000);
        const stop = () => {
          clearTimeout(safety);
          aborted.push(ctx.taskId);
          reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
        };
        if (ctx.signal.aborted) stop();
        else ctx.signal.addEventListener('abort', stop, { once: true });
      }),
  }),
];

let t: TestApp;
let worker: WorkerHandle;
let seq = 0;

beforeAll(async () => {
  t = await createTestApp();
  for (const tool of TEST_TOOLS) t.res.tools.register(tool);
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

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';
const api = (token: string, method: Method, url: string, payload?: unknown) =>
  t.app.inject({
    method,
    url: `/api/v1${url}`,
    headers: bearer(token),
    ...(payload === undefined ? {} : { payload: payload as object }),
  });

interface StepJson {
  id: string;
  key: string;
  kind: string;
  tool: string;
  args: Record<string, unknown>;
  risk: string;
  needsApproval: boolean;
  approvalReasons: string[];
  status: string;
  attempts: number;
  error: { code: string } | null;
}
interface ApprovalJson {
  id: string;
  stepId: string | null;
  scope: string;
  status: string;
  action: { tool?: string; args?: Record<string, unknown>; steps?: { key: string; hash: string }[] };
  actionHash: string;
  preview: { summary: string }[];
  quorum: number;
  approvals: number;
  expiresAt: string;
}
interface TaskJson {
  id: string;
  status: string;
  needsActionReason: string | null;
  steps: StepJson[];
  approvals: ApprovalJson[];
}

const fixtures = new Map<string, TenantFixture>();
/** A tenant made by an earlier test of the same describe block. */
const fxBySlug = (slug: string) => fixtures.get(slug)!;

/** A tenant with its owner, an admin API key, and optionally an approval policy. */
async function tenant(slug: string, approvalPolicy?: Record<string, unknown>): Promise<TenantFixture> {
  const fx = await createTenantFixture(t, slug);
  if (approvalPolicy) {
    expectStatus(await api(fx.token, 'PATCH', '/tenant', { settings: { approvalPolicy } }), 200);
  }
  fixtures.set(slug, fx);
  return fx;
}

async function playbook(fx: TenantFixture, match: string, steps: unknown[], extra: object = {}) {
  return expectStatus(
    await api(fx.token, 'POST', '/playbooks', {
      name: `pb ${match}`,
      when: { subject: { contains: match } },
      steps,
      ...extra,
    }),
    201,
  ).json() as { id: string };
}

/** An event from the admin API key (so no person is the requester). */
async function event(fx: TenantFixture, subject: string): Promise<string> {
  return expectStatus(
    await api(fx.apiKey, 'POST', '/events', {
      source: 'api',
      type: 'note',
      externalId: `e${++seq}`,
      subject,
    }),
    202,
  ).json().taskId;
}

const getTask = async (fx: TenantFixture, id: string) =>
  expectStatus(await api(fx.token, 'GET', `/tasks/${id}`), 200).json() as TaskJson;

async function waitUntil(
  fx: TenantFixture,
  id: string,
  ok: (task: TaskJson) => boolean,
  what: string,
): Promise<TaskJson> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const task = await getTask(fx, id);
    if (ok(task)) return task;
    if (Date.now() > deadline) throw new Error(`waited for ${what}: ${JSON.stringify(task)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const waitFor = (fx: TenantFixture, id: string, ...statuses: string[]) =>
  waitUntil(fx, id, (task) => statuses.includes(task.status), statuses.join('|'));

const decide = (token: string, approvalId: string, body: object) =>
  api(token, 'POST', `/approvals/${approvalId}/decision`, body);

const stepOf = (task: TaskJson, key: string) => task.steps.find((s) => s.key === key)!;
const approvalOf = (task: TaskJson, step: StepJson) =>
  task.approvals.find((a) => a.stepId === step.id && a.status === 'pending')!;

/** A second person in the tenant who may decide approvals. */
async function approver(fx: TenantFixture, name: string) {
  const email = `${name}@${fx.tenant.slug}.test`;
  const user = await addUser(t, fx.tenant.id, email, 'approver');
  return { id: user.id, token: (await loginAs(t, email, fx.tenant.slug)).accessToken };
}

/** Let the worker act on anything queued (for assertions that nothing happens). */
const settle = () => new Promise((r) => setTimeout(r, 400));

describe('an approval is bound to the exact action', () => {
  it('arguments changed after planning: approving them still runs nothing (ACTION_CHANGED)', async () => {
    const fx = await tenant('ap-hash');
    await playbook(fx, 'bind', [
      { key: 'pay', tool: 'test.record', args: { note: 'original' }, risk: 'high' },
    ]);
    const taskId = await event(fx, 'bind me');
    const waitingTask = await waitFor(fx, taskId, 'pending_approval');
    const pay = stepOf(waitingTask, 'pay');
    const approval = approvalOf(waitingTask, pay);
    expect(approval.actionHash).toBe(actionHash('test.record', { note: 'original' }));
    expect(approval.action).toEqual({ tool: 'test.record', args: { note: 'original' } });

    // Someone with database access rewrites the arguments; the step's hash stays the planned one.
    await t.db.owner`update steps set args = ${t.db.owner.json({ note: 'evil' })} where id = ${pay.id}`;
    expectStatus(await decide(fx.token, approval.id, { decision: 'approve' }), 200);
    const failed = await waitFor(fx, taskId, 'failed');
    expect(stepOf(failed, 'pay')).toMatchObject({ status: 'dead', error: { code: 'ACTION_CHANGED' } });
    expect(callsOf('ap-hash')).toEqual([]);
  });

  it('arguments and hash both changed: the approval no longer covers the step, which waits', async () => {
    const fx = fxBySlug('ap-hash');
    const taskId = await event(fx, 'bind again');
    const waitingTask = await waitFor(fx, taskId, 'pending_approval');
    const pay = stepOf(waitingTask, 'pay');
    const approval = approvalOf(waitingTask, pay);
    await t.db.owner`update steps set args = ${t.db.owner.json({ note: 'evil' })},
                       action_hash = ${actionHash('test.record', { note: 'evil' })} where id = ${pay.id}`;
    const decided = expectStatus(await decide(fx.token, approval.id, { decision: 'approve' }), 200).json();
    expect(decided.approval.status).toBe('approved');
    await settle();
    const after = await getTask(fx, taskId);
    expect(after.status).toBe('pending_approval');
    expect(stepOf(after, 'pay').status).toBe('awaiting_approval');
    // Even a run-step job for it (forced) refuses to execute without a matching approval.
    await t.db.owner`update steps set status = 'ready' where id = ${pay.id}`;
    await runStep(t.res, fx.tenant.id, pay.id);
    expect(stepOf(await getTask(fx, taskId), 'pay').status).toBe('awaiting_approval');
    expect(callsOf('ap-hash')).toEqual([]);
  });
});

describe('approvals are single use', () => {
  it('a second decision is refused, API keys cannot decide, and X’s approval never authorises Y', async () => {
    const fx = await tenant('ap-once');
    // Two steps with the very same tool and arguments: the same action hash.
    await playbook(fx, 'twice', [
      { key: 'x', tool: 'test.record', args: { note: 'same' }, risk: 'high' },
      { key: 'y', tool: 'test.record', args: { note: 'same' }, risk: 'high' },
    ]);
    const taskId = await event(fx, 'twice please');
    const waitingTask = await waitFor(fx, taskId, 'pending_approval');
    const x = stepOf(waitingTask, 'x');
    const y = stepOf(waitingTask, 'y');
    const ax = approvalOf(waitingTask, x);
    const ay = approvalOf(waitingTask, y);
    expect(ax.actionHash).toBe(ay.actionHash);

    expectStatus(await decide(fx.apiKey, ax.id, { decision: 'approve' }), 403);
    expectStatus(await decide(fx.token, ax.id, { decision: 'approve' }), 200);
    const again = expectStatus(await decide(fx.token, ax.id, { decision: 'approve' }), 409).json();
    expect(again.error.message).toContain('already approved');
    expectStatus(await decide(fx.token, ax.id, { decision: 'reject' }), 409);

    const afterX = await waitUntil(
      fx,
      taskId,
      (task) => stepOf(task, 'x').status === 'succeeded',
      'x to succeed',
    );
    expect(afterX.status).toBe('pending_approval');
    expect(stepOf(afterX, 'y').status).toBe('awaiting_approval');
    const [used] = await t.db.owner<
      { used_at: Date | null }[]
    >`select used_at from approvals where id = ${ax.id}`;
    expect(used!.used_at).toBeInstanceOf(Date);

    // Force y to run: the executor finds no approval for y (x's is x's own, and used).
    await t.db.owner`update steps set status = 'ready' where id = ${y.id}`;
    await runStep(t.res, fx.tenant.id, y.id);
    expect(stepOf(await getTask(fx, taskId), 'y').status).toBe('awaiting_approval');
    expect(callsOf('ap-once')).toHaveLength(1);

    expectStatus(await decide(fx.token, ay.id, { decision: 'approve' }), 200);
    await waitFor(fx, taskId, 'done');
    expect(callsOf('ap-once').map((c) => c.key)).toEqual([`stw-${x.id}`, `stw-${y.id}`]);
  });
});

describe('quorum', () => {
  it('needs that many distinct approvers; the same person twice is refused', async () => {
    const fx = await tenant('ap-quorum', { quorum: 2 });
    await playbook(fx, 'big', [{ key: 'pay', tool: 'test.record', args: { note: 'q' }, risk: 'high' }]);
    const second = await approver(fx, 'second');
    const taskId = await event(fx, 'big spend');
    const task = await waitFor(fx, taskId, 'pending_approval');
    const approval = approvalOf(task, stepOf(task, 'pay'));
    expect(approval.quorum).toBe(2);

    const first = expectStatus(await decide(fx.token, approval.id, { decision: 'approve' }), 200).json();
    expect(first.approval).toMatchObject({ status: 'pending', approvals: 1 });
    expectStatus(await decide(fx.token, approval.id, { decision: 'approve' }), 409);
    await settle();
    expect((await getTask(fx, taskId)).status).toBe('pending_approval');
    expect(callsOf('ap-quorum')).toEqual([]);

    const last = expectStatus(await decide(second.token, approval.id, { decision: 'approve' }), 200).json();
    expect(last.approval).toMatchObject({ status: 'approved', approvals: 2 });
    await waitFor(fx, taskId, 'done');
    expect(callsOf('ap-quorum')).toHaveLength(1);
  });
});

describe('self-approval', () => {
  it('whoever created the task cannot approve it; someone else can', async () => {
    const fx = await tenant('ap-self');
    expectStatus(
      await api(fx.token, 'POST', '/playbooks', {
        name: 'by hand',
        when: { source: ['manual'], subject: { contains: 'self-check' } },
        steps: [{ key: 'pay', tool: 'test.record', args: { note: '{{event.subject}}' }, risk: 'high' }],
      }),
      201,
    );
    const other = await approver(fx, 'other');
    const { taskId } = expectStatus(
      await api(fx.token, 'POST', '/tasks', { title: 'self-check payment' }),
      202,
    ).json();
    const task = await waitFor(fx, taskId, 'pending_approval');
    const approval = approvalOf(task, stepOf(task, 'pay'));
    const refused = expectStatus(await decide(fx.token, approval.id, { decision: 'approve' }), 403).json();
    expect(refused.error.message).toContain('someone else');
    expect((await getTask(fx, taskId)).approvals[0]!.status).toBe('pending');
    expectStatus(await decide(other.token, approval.id, { decision: 'approve' }), 200);
    await waitFor(fx, taskId, 'done');
    expect(callsOf('ap-self').map((c) => c.args)).toEqual([{ note: 'self-check payment' }]);
  });
});

describe('expiry', () => {
  it('an expired approval cannot be decided, and expiring it sends the task back to a person', async () => {
    const fx = await tenant('ap-expire', { expiresInMinutes: 1 });
    await playbook(fx, 'late', [{ key: 'pay', tool: 'test.record', args: { note: 'late' }, risk: 'high' }]);
    const taskId = await event(fx, 'late approval');
    const task = await waitFor(fx, taskId, 'pending_approval');
    const approval = approvalOf(task, stepOf(task, 'pay'));
    const expiresIn = Date.parse(approval.expiresAt) - Date.now();
    expect(expiresIn).toBeGreaterThan(0);
    expect(expiresIn).toBeLessThanOrEqual(60_000);

    await t.db.owner`update approvals set expires_at = now() - interval '1 second' where id = ${approval.id}`;
    const late = expectStatus(await decide(fx.token, approval.id, { decision: 'approve' }), 409).json();
    expect(late.error.message).toContain('expired');

    await expireApproval(t.res, fx.tenant.id, approval.id);
    const after = await getTask(fx, taskId);
    expect(after.status).toBe('needs_action');
    expect(after.needsActionReason).toContain('expired');
    expect(after.approvals[0]!.status).toBe('expired');
    expectStatus(await decide(fx.token, approval.id, { decision: 'approve' }), 409);
    await settle();
    expect(stepOf(await getTask(fx, taskId), 'pay').status).toBe('awaiting_approval');
    expect(callsOf('ap-expire')).toEqual([]);
  });
});

describe('editing before approving', () => {
  it('supersedes the approval with one for the edited action, which runs with the new arguments only', async () => {
    const fx = await tenant('ap-edit');
    await playbook(fx, 'edit', [{ key: 'pay', tool: 'test.record', args: { note: 'old' }, risk: 'high' }]);
    const taskId = await event(fx, 'edit me');
    const task = await waitFor(fx, taskId, 'pending_approval');
    const pay = stepOf(task, 'pay');
    const old = approvalOf(task, pay);

    expectStatus(await decide(fx.token, old.id, { decision: 'approve', args: { note: 5 } }), 400);
    expectStatus(await decide(fx.token, old.id, { decision: 'approve', args: { note: 'x', extra: 1 } }), 400);
    expectStatus(await decide(fx.token, old.id, { decision: 'reject', args: { note: 'new' } }), 400);

    const edited = expectStatus(
      await decide(fx.token, old.id, { decision: 'approve', args: { note: 'new' } }),
      200,
    ).json();
    expect(edited.approval.status).toBe('superseded');
    expect(edited.replacedBy).toMatchObject({
      status: 'pending',
      stepId: pay.id,
      action: { tool: 'test.record', args: { note: 'new' } },
      actionHash: actionHash('test.record', { note: 'new' }),
    });
    expect(edited.replacedBy.actionHash).not.toBe(old.actionHash);
    // The edit itself approved nothing.
    await settle();
    const between = await getTask(fx, taskId);
    expect(between.status).toBe('pending_approval');
    expect(stepOf(between, 'pay').args).toEqual({ note: 'new' });
    expectStatus(await decide(fx.token, old.id, { decision: 'approve' }), 409);

    expectStatus(await decide(fx.token, edited.replacedBy.id, { decision: 'approve' }), 200);
    await waitFor(fx, taskId, 'done');
    expect(callsOf('ap-edit').map((c) => c.args)).toEqual([{ note: 'new' }]);
  });

  it('the new approval does not cover the old arguments', async () => {
    const fx = fxBySlug('ap-edit');
    const taskId = await event(fx, 'edit me again');
    const task = await waitFor(fx, taskId, 'pending_approval');
    const pay = stepOf(task, 'pay');
    const edited = expectStatus(
      await decide(fx.token, approvalOf(task, pay).id, { decision: 'approve', args: { note: 'new' } }),
      200,
    ).json();
    // Put the old action back under the step, then approve the edited one.
    await t.db.owner`update steps set args = ${t.db.owner.json({ note: 'old' })},
                       action_hash = ${actionHash('test.record', { note: 'old' })} where id = ${pay.id}`;
    expectStatus(await decide(fx.token, edited.replacedBy.id, { decision: 'approve' }), 200);
    await settle();
    expect(stepOf(await getTask(fx, taskId), 'pay').status).toBe('awaiting_approval');
    expect(callsOf('ap-edit')).toHaveLength(1);
  });
});

describe('risk labels', () => {
  it("a playbook's label raises a tool's risk but never lowers it", async () => {
    const fx = await tenant('ap-risk');
    await playbook(fx, 'labels', [
      { key: 'lowered', tool: 'test.medium', args: { note: 'm' }, risk: 'low' },
      { key: 'raised', tool: 'test.record', args: { note: 'r' }, risk: 'critical' },
      { key: 'plain', tool: 'test.record', args: { note: 'p' } },
    ]);
    const taskId = await event(fx, 'labels');
    const task = await waitUntil(
      fx,
      taskId,
      (x) => x.status === 'pending_approval' && stepOf(x, 'plain').status === 'succeeded',
      'the plain step to run',
    );
    expect(stepOf(task, 'lowered')).toMatchObject({
      risk: 'medium',
      needsApproval: true,
      status: 'awaiting_approval',
    });
    expect(stepOf(task, 'lowered').approvalReasons.join(' ')).toContain('risk medium');
    expect(stepOf(task, 'raised')).toMatchObject({ risk: 'critical', needsApproval: true });
    expect(stepOf(task, 'plain')).toMatchObject({ risk: 'low', needsApproval: false });
    expect(callsOf('ap-risk').map((c) => c.args)).toEqual([{ note: 'p' }]);
  });
});

describe('plan-level approval', () => {
  it('one approval lists every step with a preview; approving it runs them all', async () => {
    const fx = await tenant('ap-plan', { approvalMode: 'plan' });
    await playbook(fx, 'whole plan', [
      { key: 'a', tool: 'test.record', args: { note: 'a' }, risk: 'high' },
      { key: 'b', tool: 'test.medium', args: { note: 'b' }, dependsOn: ['a'] },
      { key: 'c', tool: 'test.record', args: { note: 'c' }, risk: 'medium' },
    ]);
    const taskId = await event(fx, 'whole plan now');
    const task = await waitFor(fx, taskId, 'pending_approval');
    expect(task.approvals).toHaveLength(1);
    const plan = task.approvals[0]!;
    expect(plan).toMatchObject({ scope: 'plan', stepId: null, status: 'pending' });
    expect(plan.action.steps).toEqual([
      expect.objectContaining({ key: 'a', hash: actionHash('test.record', { note: 'a' }) }),
      expect.objectContaining({ key: 'b', hash: actionHash('test.medium', { note: 'b' }) }),
      expect.objectContaining({ key: 'c', hash: actionHash('test.record', { note: 'c' }) }),
    ]);
    expect(plan.preview.map((p) => p.summary)).toEqual(['test.record a', 'test.medium b', 'test.record c']);
    expect(callsOf('ap-plan')).toEqual([]);

    expectStatus(await decide(fx.token, plan.id, { decision: 'approve' }), 200);
    const done = await waitFor(fx, taskId, 'done');
    expect(done.steps.map((s) => s.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(
      callsOf('ap-plan')
        .map((c) => c.args.note)
        .sort(),
    ).toEqual(['a', 'b', 'c']);
    // b depends on a.
    const notes = callsOf('ap-plan').map((c) => c.args.note);
    expect(notes.indexOf('a')).toBeLessThan(notes.indexOf('b'));
  });
});

describe('rejection', () => {
  it('rejects the task, withdraws its other approvals and runs nothing', async () => {
    const fx = await tenant('ap-reject');
    await playbook(fx, 'no', [
      { key: 'one', tool: 'test.record', args: { note: '1' }, risk: 'high' },
      { key: 'two', tool: 'test.record', args: { note: '2' }, risk: 'high' },
    ]);
    const taskId = await event(fx, 'no thanks');
    const task = await waitFor(fx, taskId, 'pending_approval');
    const one = approvalOf(task, stepOf(task, 'one'));
    const two = approvalOf(task, stepOf(task, 'two'));
    const r = expectStatus(await decide(fx.token, one.id, { decision: 'reject', comment: 'no' }), 200).json();
    expect(r.approval.status).toBe('rejected');
    const after = await getTask(fx, taskId);
    expect(after.status).toBe('rejected');
    expect(after.steps.map((s) => s.status)).toEqual(['skipped', 'skipped']);
    expect(after.approvals.find((a) => a.id === two.id)!.status).toBe('cancelled');
    expectStatus(await decide(fx.token, two.id, { decision: 'approve' }), 409);
    await settle();
    expect(callsOf('ap-reject')).toEqual([]);
  });
});

describe('cancel', () => {
  it('a task waiting for approval: approvals withdrawn, nothing runs', async () => {
    const fx = await tenant('ap-cancel');
    await playbook(fx, 'stop', [{ key: 'pay', tool: 'test.record', args: { note: 's' }, risk: 'high' }]);
    const taskId = await event(fx, 'stop it');
    const task = await waitFor(fx, taskId, 'pending_approval');
    const approval = approvalOf(task, stepOf(task, 'pay'));
    const cancelled = expectStatus(await api(fx.token, 'POST', `/tasks/${taskId}/cancel`), 200).json();
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.steps[0].status).toBe('cancelled');
    expect(cancelled.approvals[0].status).toBe('cancelled');
    expectStatus(await decide(fx.token, approval.id, { decision: 'approve' }), 409);
    expectStatus(await api(fx.token, 'POST', `/tasks/${taskId}/cancel`), 409);
    await settle();
    expect(callsOf('ap-cancel')).toEqual([]);
  });

  it('a running step is aborted', async () => {
    const fx = fxBySlug('ap-cancel');
    await playbook(fx, 'long', [
      { key: 'wait', tool: 'test.wait', args: { note: 'w' } },
      { key: 'next', tool: 'test.record', args: { note: 'after' }, dependsOn: ['wait'] },
    ]);
    const taskId = await event(fx, 'long job');
    await waitUntil(fx, taskId, (x) => stepOf(x, 'wait')?.status === 'running', 'the step to run');
    const deadline = Date.now() + 10_000;
    while (!waiting.includes(taskId) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(waiting).toContain(taskId);

    expectStatus(await api(fx.apiKey, 'POST', `/tasks/${taskId}/cancel`), 200);
    const after = await waitUntil(
      fx,
      taskId,
      (x) => stepOf(x, 'wait').status === 'cancelled',
      'the running step to stop',
    );
    expect(aborted).toContain(taskId);
    expect(after.status).toBe('cancelled');
    expect(stepOf(after, 'wait').error).toMatchObject({ code: 'CANCELLED' });
    expect(stepOf(after, 'next').status).toBe('cancelled');
    await settle();
    expect(callsOf('ap-cancel')).toEqual([]);
  });
});

describe('retries and dead letters', () => {
  it('retryable errors are retried with the same key; non-retryable tools never are', async () => {
    const fx = await tenant('ap-retry');
    await playbook(fx, 'flaky', [{ key: 'f', tool: 'test.flaky', args: { note: 'f' } }]);
    await playbook(fx, 'once', [{ key: 'o', tool: 'test.once', args: { note: 'o' } }]);
    const flaky = await event(fx, 'flaky');
    const once = await event(fx, 'once');
    const done = await waitFor(fx, flaky, 'done', 'failed');
    expect(done.status).toBe('done');
    expect(stepOf(done, 'f').attempts).toBe(2);
    const keys = callsOf('ap-retry', 'test.flaky').map((c) => c.key);
    expect(keys).toEqual([`stw-${stepOf(done, 'f').id}`, `stw-${stepOf(done, 'f').id}`]);

    const failed = await waitFor(fx, once, 'failed');
    expect(stepOf(failed, 'o')).toMatchObject({ status: 'dead', attempts: 1, error: { code: 'TIMEOUT' } });
    await settle();
    expect(callsOf('ap-retry', 'test.once')).toHaveLength(1);
  });

  it('a dead step is listed and can be retried through the API, with the same idempotency key', async () => {
    const fx = await tenant('ap-dead');
    const ghost = 'ghost@ap-dead.test';
    await playbook(fx, 'tell', [
      { key: 'tell', tool: 'notify.user', args: { to: ghost, title: 'hello' } },
      { key: 'after', tool: 'test.record', args: { note: 'after' }, dependsOn: ['tell'] },
    ]);
    const taskId = await event(fx, 'tell the ghost');
    const failed = await waitFor(fx, taskId, 'failed');
    const tell = stepOf(failed, 'tell');
    expect(tell).toMatchObject({ status: 'dead', attempts: 1, error: { code: 'UNKNOWN_MEMBER' } });
    expect(stepOf(failed, 'after').status).toBe('skipped');
    const dead = expectStatus(await api(fx.token, 'GET', '/dead-letters'), 200).json();
    expect(dead.items).toEqual([expect.objectContaining({ id: tell.id, taskId, status: 'dead' })]);

    // Fix the cause, then retry by hand.
    await addUser(t, fx.tenant.id, ghost, 'viewer');
    const retried = expectStatus(await api(fx.apiKey, 'POST', `/dead-letters/${tell.id}/retry`), 200).json();
    expect(['executing', 'done']).toContain(retried.status);
    const done = await waitFor(fx, taskId, 'done', 'failed');
    expect(done.status).toBe('done');
    expect(stepOf(done, 'tell')).toMatchObject({ status: 'succeeded', attempts: 2 });
    expect(stepOf(done, 'after').status).toBe('succeeded');
    const notes = await t.db.owner<{ idempotency_key: string }[]>`
      select idempotency_key from notifications where task_id = ${taskId}`;
    expect(notes.map((n) => n.idempotency_key)).toEqual([`stw-${tell.id}`]);
    expect(expectStatus(await api(fx.token, 'GET', '/dead-letters'), 200).json().items).toEqual([]);
    expectStatus(await api(fx.apiKey, 'POST', `/dead-letters/${tell.id}/retry`), 409);
  });
});

describe('compensation', () => {
  it('undoes the succeeded steps in reverse order after a later step fails', async () => {
    const fx = await tenant('ap-comp');
    await playbook(fx, 'saga', [
      {
        key: 's1',
        tool: 'test.record',
        args: { note: 'one' },
        compensation: { tool: 'test.undo', args: { note: 'undo one' } },
      },
      {
        key: 's2',
        tool: 'test.record',
        args: { note: 'two' },
        dependsOn: ['s1'],
        compensation: { tool: 'test.undo', args: { note: 'undo two' } },
      },
      { key: 's3', tool: 'test.fail', args: { note: 'three' }, dependsOn: ['s2'] },
    ]);
    const taskId = await event(fx, 'saga');
    const task = await waitUntil(
      fx,
      taskId,
      (x) =>
        x.steps.filter((s) => s.kind === 'compensation').length === 2 &&
        x.steps.filter((s) => s.kind === 'compensation').every((s) => s.status === 'succeeded'),
      'compensation to finish',
    );
    expect(task.status).toBe('failed');
    expect(task.steps.map((s) => [s.key, s.kind, s.status])).toEqual([
      ['s1', 'action', 'compensated'],
      ['s2', 'action', 'compensated'],
      ['s3', 'action', 'dead'],
      ['undo-s2', 'compensation', 'succeeded'],
      ['undo-s1', 'compensation', 'succeeded'],
    ]);
    expect(callsOf('ap-comp').map((c) => c.args.note)).toEqual(['one', 'two', 'undo two', 'undo one']);
    // Compensation carries its own idempotency keys.
    expect(callsOf('ap-comp', 'test.undo').map((c) => c.key)).toEqual([
      `stw-comp-${stepOf(task, 's2').id}`,
      `stw-comp-${stepOf(task, 's1').id}`,
    ]);
  });
});

describe('the reaper', () => {
  it('recovers a step whose lease ran out, and the re-run keeps the idempotency key', async () => {
    const fx = await tenant('ap-reap');
    await playbook(fx, 'reap', [{ key: 'r', tool: 'test.record', args: { note: 'r' } }]);
    const taskId = await event(fx, 'reap me');
    const done = await waitFor(fx, taskId, 'done');
    const step = stepOf(done, 'r');
    expect(callsOf('ap-reap').map((c) => c.key)).toEqual([`stw-${step.id}`]);
    // The step's outcome removed the reaper job of its attempt (queued when it was taken).
    const reapers = (attempt: number) => t.db.owner<{ run_at: Date }[]>`
      select run_at from graphile_worker._private_jobs where key = ${`reap:${step.id}:${attempt}`}`;
    expect(await reapers(1)).toEqual([]);

    // A worker that holds a live lease is left alone.
    await t.db
      .owner`update steps set status = 'running', lease_expires_at = now() + interval '1 hour' where id = ${step.id}`;
    await reapStep(t.res, fx.tenant.id, step.id);
    await settle();
    expect(stepOf(await getTask(fx, taskId), 'r').status).toBe('running');
    expect(callsOf('ap-reap')).toHaveLength(1);
    // ...and looked at again just after that lease.
    const [later] = await reapers(1);
    expect(later!.run_at.getTime()).toBeGreaterThan(Date.now() + 3_500_000);

    // Its worker died mid-call: the lease ran out.
    await t.db.owner`update steps set lease_expires_at = now() - interval '1 second' where id = ${step.id}`;
    await reapStep(t.res, fx.tenant.id, step.id);
    const after = await waitUntil(
      fx,
      taskId,
      (x) => stepOf(x, 'r').status === 'succeeded',
      'the recovered step to run',
    );
    expect(stepOf(after, 'r').attempts).toBe(2);
    expect(callsOf('ap-reap').map((c) => c.key)).toEqual([`stw-${step.id}`, `stw-${step.id}`]);
    expect(await reapers(2)).toEqual([]);
    const [recovered] = await t.db.owner<{ n: number }[]>`
      select count(*)::int as n from audit_log where action = 'step.recovered' and target_id = ${step.id}`;
    expect(recovered!.n).toBe(1);
  });

  it('never re-runs a step of a non-retryable tool whose worker died: it becomes a dead letter', async () => {
    const fx = await tenant('ap-reap-once');
    await playbook(fx, 'pay-once', [{ key: 'r', tool: 'test.record', args: { note: 'once' } }]);
    const taskId = await event(fx, 'pay-once now');
    const step = stepOf(await waitFor(fx, taskId, 'done'), 'r');
    // As if its worker had died mid-call, for a tool that must never run twice on its own.
    await t.db.owner`update steps set status = 'running', retryable = false,
                       lease_expires_at = now() - interval '1 second' where id = ${step.id}`;
    await reapStep(t.res, fx.tenant.id, step.id);
    await settle();
    const [row] = await t.db.owner<{ status: string; error: { code: string; retryable: boolean } }[]>`
      select status, error from steps where id = ${step.id}`;
    expect(row).toMatchObject({ status: 'dead', error: { code: 'WORKER_LOST', retryable: false } });
    expect(callsOf('ap-reap-once')).toHaveLength(1);
    const [recovered] = await t.db.owner<{ n: number }[]>`
      select count(*)::int as n from audit_log where action = 'step.recovered' and target_id = ${step.id}`;
    expect(recovered!.n).toBe(0);
  });

  it('a retryable step whose worker keeps dying is retried with backoff, then dead-lettered (WORKER_LOST)', async () => {
    const fx = await tenant('ap-reap-cap');
    await playbook(fx, 'lose-worker', [{ key: 'r', tool: 'test.record', args: { note: 'cap' } }]);
    const taskId = await event(fx, 'lose-worker now');
    const step = stepOf(await waitFor(fx, taskId, 'done'), 'r');
    // As if it were still executing.
    await t.db.owner`update tasks set status = 'executing', finished_at = null where id = ${taskId}`;
    type Row = {
      status: string;
      attempts: number;
      max_attempts: number;
      next_attempt_at: Date | null;
      error: { code: string; retryable: boolean } | null;
    };
    const row = async () =>
      (
        await t.db.owner<Row[]>`
        select status, attempts, max_attempts, next_attempt_at, error from steps where id = ${step.id}`
      )[0]!;
    expect((await row()).max_attempts).toBe(5);

    // Its fourth run was lost (the claim counted it): recovered, but not at once - after a backoff.
    await t.db.owner`update steps set status = 'running', attempts = 4,
                       lease_expires_at = now() - interval '1 second' where id = ${step.id}`;
    const before = Date.now();
    await reapStep(t.res, fx.tenant.id, step.id);
    const recovered = await row();
    expect(recovered).toMatchObject({
      status: 'ready',
      attempts: 4,
      error: { code: 'WORKER_LOST', retryable: true },
    });
    // backoffMs(4): between 4 and 8 seconds.
    expect(recovered.next_attempt_at!.getTime()).toBeGreaterThanOrEqual(before + 3900);
    expect(recovered.next_attempt_at!.getTime()).toBeLessThanOrEqual(Date.now() + 8100);
    const [job] = await t.db.owner<{ run_at: Date }[]>`
      select run_at from graphile_worker.jobs where key = ${`step:${step.id}`}`;
    expect(Math.abs(job!.run_at.getTime() - recovered.next_attempt_at!.getTime())).toBeLessThan(5);
    await settle();
    expect(callsOf('ap-reap-cap')).toHaveLength(1);

    // Its fifth and last attempt was lost too: a dead letter, not a sixth run.
    await t.db.owner`update steps set status = 'running', attempts = 5,
                       lease_expires_at = now() - interval '1 second' where id = ${step.id}`;
    await reapStep(t.res, fx.tenant.id, step.id);
    const dead = await row();
    expect(dead).toMatchObject({
      status: 'dead',
      attempts: 5,
      error: { code: 'WORKER_LOST', retryable: false },
    });
    expect((dead.error as unknown as { message: string }).message).toContain('5 attempts');
    expect((await getTask(fx, taskId)).status).toBe('failed');
    // The job still queued for the recovered run finds a dead letter and runs nothing.
    await runStep(t.res, fx.tenant.id, step.id);
    expect((await row()).status).toBe('dead');
    expect(callsOf('ap-reap-cap')).toHaveLength(1);
    const [audit] = await t.db.owner<{ n: number }[]>`
      select count(*)::int as n from audit_log where action = 'step.recovered' and target_id = ${step.id}`;
    expect(audit!.n).toBe(1);

    // A person retries it: one more attempt, which runs.
    expectStatus(await api(fx.token, 'POST', `/dead-letters/${step.id}/retry`), 200);
    const done = await waitFor(fx, taskId, 'done');
    expect(stepOf(done, 'r')).toMatchObject({ status: 'succeeded', attempts: 6 });
    expect(callsOf('ap-reap-cap')).toHaveLength(2);
  });

  it('a re-delivered job of a retryable step whose worker died counts the lost run the same way', async () => {
    const fx = await tenant('ap-redeliver-cap');
    await playbook(fx, 'redeliver-cap', [{ key: 'r', tool: 'test.record', args: { note: 'again' } }]);
    const taskId = await event(fx, 'redeliver-cap now');
    const step = stepOf(await waitFor(fx, taskId, 'done'), 'r');
    // Attempts left: recovered with a backoff instead of running at once in the re-delivered job.
    await t.db.owner`update steps set status = 'running', attempts = 2,
                       lease_expires_at = now() - interval '1 second' where id = ${step.id}`;
    await runStep(t.res, fx.tenant.id, step.id);
    const [ready] = await t.db.owner<{ status: string; next_attempt_at: Date }[]>`
      select status, next_attempt_at from steps where id = ${step.id}`;
    expect(ready!.status).toBe('ready');
    expect(ready!.next_attempt_at.getTime()).toBeGreaterThan(Date.now() + 500);
    expect(callsOf('ap-redeliver-cap')).toHaveLength(1);
    // None left: a dead letter.
    await t.db.owner`update steps set status = 'running', attempts = 5,
                       lease_expires_at = now() - interval '1 second' where id = ${step.id}`;
    await runStep(t.res, fx.tenant.id, step.id);
    const [row] = await t.db.owner<{ status: string; error: { code: string } }[]>`
      select status, error from steps where id = ${step.id}`;
    expect(row).toMatchObject({ status: 'dead', error: { code: 'WORKER_LOST' } });
    expect(callsOf('ap-redeliver-cap')).toHaveLength(1);
  });

  it('a re-delivered job of such a step (its worker died) does not run it either', async () => {
    const fx = await tenant('ap-redeliver');
    await playbook(fx, 'pay-twice', [{ key: 'r', tool: 'test.record', args: { note: 'twice' } }]);
    const taskId = await event(fx, 'pay-twice now');
    const step = stepOf(await waitFor(fx, taskId, 'done'), 'r');
    await t.db.owner`update steps set status = 'running', retryable = false,
                       lease_expires_at = now() - interval '1 second' where id = ${step.id}`;
    await runStep(t.res, fx.tenant.id, step.id);
    const [row] = await t.db.owner<{ status: string; error: { code: string } }[]>`
      select status, error from steps where id = ${step.id}`;
    expect(row).toMatchObject({ status: 'dead', error: { code: 'WORKER_LOST' } });
    expect(callsOf('ap-redeliver')).toHaveLength(1);
  });
});
