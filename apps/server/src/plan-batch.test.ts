import { Type } from '@sinclair/typebox';
import { ToolError } from '@steward/core/tools/tool';
import { PLAN_BATCH } from '@steward/core/executor/job-queue';
import { planTasks } from '@steward/core/planner/plan-tasks';
import { SYSTEM_ACTOR } from '@steward/core/resources';
import { submitEvent } from '@steward/core/tasks/task-service';
import { verifyChain } from '@steward/core/audit/verify-chain';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from './testing/test-app.ts';
import { startWorker } from './worker/worker-runner.ts';

// The intake's batches become one `plan-tasks` job each, planned in one transaction and finished
// in one more: checked here with the jobs run by hand (no worker), so every step is deterministic.

let t: TestApp;
let a: TenantFixture;

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'batch');
  t.res.tools.register({
    name: 'test.broken',
    description: 'always fails, never retried',
    risk: 'low',
    retryable: false,
    args: Type.Object({ note: Type.String() }, { additionalProperties: false }),
    preview: () => [],
    async execute() {
      throw new ToolError('BROKEN', 'this always fails', { retryable: false });
    },
  });
  await addPlaybook(a, 'Quick', 'quick', [oneStep('low')]);
  await addPlaybook(a, 'Careful', 'careful', [oneStep('high')]);
});
afterAll(async () => {
  await t?.close();
});
beforeEach(async () => {
  // Every test starts with an empty queue; jobs left by an earlier test are not its business.
  await t.db.owner`delete from graphile_worker._private_jobs`;
  await t.db.owner`update tenants set settings = settings - 'maxConcurrentSteps' where id = ${a.tenant.id}`;
});

/** A playbook of the tenant for events whose subject contains `contains`. */
async function addPlaybook(tenant: TenantFixture, name: string, contains: string, steps: unknown[]) {
  const created = await t.app.inject({
    method: 'POST',
    url: '/api/v1/playbooks',
    headers: bearer(tenant.token),
    payload: { name, when: { subject: { contains } }, steps },
  });
  expectStatus(created, 201);
}
const oneStep = (risk: string) => ({ key: 'go', tool: 'noop', args: { note: '{{event.subject}}' }, risk });

let n = 0;
/** Submit events at once, so the intake groups them into batches as under load. */
const burst = (subjects: string[], tenantId = a.tenant.id) =>
  Promise.all(
    subjects.map((subject) =>
      submitEvent(t.res, tenantId, SYSTEM_ACTOR, {
        source: 'test',
        type: 'message',
        externalId: `e-${++n}`,
        subject,
      }),
    ),
  );

/** The queued `plan-tasks` jobs' payloads, oldest first. */
const planJobs = () =>
  t.db.owner<{ payload: { tenantId: string; taskIds: string[] } }[]>`
    select j.payload from graphile_worker._private_jobs j
    join graphile_worker._private_tasks k on k.id = j.task_id
    where k.identifier = 'plan-tasks' order by j.id`;

const statuses = async (ids: string[]) =>
  new Map(
    (
      await t.db.owner<
        { id: string; status: string }[]
      >`select id, status from tasks where id = any(${ids}::uuid[])`
    ).map((r) => [r.id, r.status]),
  );

/** Run a worker until these tasks are done (or fail after 20 s). */
async function workUntilDone(ids: string[]): Promise<void> {
  const worker = await startWorker(t.res, { appUrl: t.runtime.appUrl, concurrency: 2, pollIntervalMs: 100 });
  try {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const now = await statuses(ids);
      if ([...now.values()].every((v) => v === 'done') && now.size === ids.length) return;
      if (Date.now() > deadline) throw new Error(`not done: ${JSON.stringify([...now])}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await worker.stop();
  }
}

/** The audit entries of an action about these tasks (a step's entries name its task in details). */
const auditOf = (action: string, ids: string[]) =>
  t.db.owner<{ target_id: string; at: Date; seq: string }[]>`
    select target_id, at, seq from audit_log
    where tenant_id = ${a.tenant.id} and action = ${action}
      and coalesce(details->>'taskId', target_id) = any(${ids}::text[])`;

describe('plan-tasks: an intake batch is planned and run together', () => {
  it('queues one job per intake batch, not one per event, naming every new task once', async () => {
    const intake = await burst(Array.from({ length: 30 }, (_, i) => `quick ${i}`));
    const jobs = await planJobs();
    expect(jobs.length).toBeGreaterThanOrEqual(1);
    expect(jobs.length).toBeLessThan(30);
    const named = jobs.flatMap((j) => j.payload.taskIds);
    expect(named.sort()).toEqual(intake.map((i) => i.taskId).sort());
    for (const j of jobs) {
      expect(j.payload.tenantId).toBe(a.tenant.id);
      expect(j.payload.taskIds.length).toBeLessThanOrEqual(PLAN_BATCH);
    }
    // A duplicate names no task and queues nothing.
    await t.db.owner`delete from graphile_worker._private_jobs`;
    const again = await submitEvent(t.res, a.tenant.id, SYSTEM_ACTOR, {
      source: 'test',
      type: 'message',
      externalId: `e-${n}`,
      subject: 'quick again',
    });
    expect(again.duplicate).toBe(true);
    expect(await planJobs()).toHaveLength(0);
  });

  it('queues the job by a plain insert once the queue knows the task name, by add_job before; both wake workers and run', async () => {
    await t.db.owner`delete from graphile_worker._private_tasks where identifier = 'plan-tasks'`;
    const woken: string[] = [];
    const listening = await t.db.owner.listen('jobs:insert', (payload) => woken.push(payload));
    try {
      const submit = (subject: string) =>
        submitEvent(t.res, a.tenant.id, SYSTEM_ACTOR, {
          source: 'test',
          type: 'message',
          externalId: `e-${++n}`,
          subject,
        });
      const first = await submit('quick first'); // a fresh queue: through add_job, which names the task
      const second = await submit('quick second'); // now a plain insert
      const jobs = await t.db.owner<
        {
          payload: { taskIds: string[] };
          max_attempts: number;
          key: string | null;
          job_queue_id: number | null;
        }[]
      >`select j.payload, j.max_attempts, j.key, j.job_queue_id from graphile_worker._private_jobs j
          join graphile_worker._private_tasks k on k.id = j.task_id
         where k.identifier = 'plan-tasks' order by j.id`;
      expect(jobs.map((j) => j.payload.taskIds)).toEqual([[first.taskId], [second.taskId]]);
      for (const j of jobs) expect([j.max_attempts, j.key, j.job_queue_id]).toEqual([10, null, null]);
      const deadline = Date.now() + 5000;
      while (woken.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(woken.map((w) => (JSON.parse(w) as { count: number }).count)).toEqual([1, 1]);
      await workUntilDone([first.taskId, second.taskId]);
    } finally {
      await listening.unlisten();
    }
  });

  it('plans every task of the batch in one audit chain step and finishes their steps in one more', async () => {
    await t.db
      .owner`update tenants set settings = settings || '{"maxConcurrentSteps": 100}' where id = ${a.tenant.id}`;
    const intake = await burst(Array.from({ length: 12 }, (_, i) => `quick ${i}`));
    const ids = intake.map((i) => i.taskId);
    await planTasks(t.res, a.tenant.id, ids);
    expect([...(await statuses(ids)).values()]).toEqual(Array(12).fill('done'));
    // One chain step writes its entries with one timestamp: one per batch, not one per task.
    const planned = await auditOf('task.planned', ids);
    expect(planned).toHaveLength(12);
    expect(new Set(planned.map((p) => p.at.getTime())).size).toBe(1);
    const done = await auditOf('task.done', ids);
    expect(done).toHaveLength(12);
    expect(new Set(done.map((p) => p.at.getTime())).size).toBe(1);
    const succeeded = await auditOf('step.succeeded', ids);
    expect(succeeded).toHaveLength(12);
    expect(succeeded[0]!.at).toEqual(done[0]!.at);
    // Every step was started and succeeded exactly once, with its own idempotency key.
    const steps = await t.db.owner<{ status: string; attempts: number; idempotency_key: string }[]>`
      select status, attempts, idempotency_key from steps where task_id = any(${ids}::uuid[])`;
    expect(steps).toHaveLength(12);
    expect(steps.every((s) => s.status === 'succeeded' && s.attempts === 1)).toBe(true);
    expect(new Set(steps.map((s) => s.idempotency_key)).size).toBe(12);
    const finished = await t.db.owner<{ finished_at: Date | null; created_at: Date }[]>`
      select finished_at, created_at from tasks where id = any(${ids}::uuid[])`;
    expect(finished.every((f) => f.finished_at && f.finished_at >= f.created_at)).toBe(true);
    const verified = await t.res.db.withTenant(a.tenant.id, (tx) =>
      verifyChain(tx, t.res.master, a.tenant.id),
    );
    expect(verified.ok).toBe(true);
    // Run again (a retried job): nothing is planned or run twice.
    await planTasks(t.res, a.tenant.id, ids);
    expect(await auditOf('task.planned', ids)).toHaveLength(12);
    expect(await auditOf('step.started', ids)).toHaveLength(12);
  });

  it('treats each task of a mixed batch as planTask would: approval, no playbook, done', async () => {
    const [quick, careful, unknown] = await burst(['quick one', 'careful one', 'nothing matches']);
    const ids = [quick!.taskId, careful!.taskId, unknown!.taskId];
    await planTasks(t.res, a.tenant.id, ids);
    const s = await statuses(ids);
    expect(s.get(quick!.taskId)).toBe('done');
    expect(s.get(careful!.taskId)).toBe('pending_approval');
    expect(s.get(unknown!.taskId)).toBe('needs_action');
    const [approval] = await t.db.owner<{ status: string }[]>`
      select status from approvals where task_id = ${careful!.taskId}`;
    expect(approval?.status).toBe('pending');
  });

  it("keeps to the tenant's step limit: steps over it are queued, not run", async () => {
    await t.db
      .owner`update tenants set settings = settings || '{"maxConcurrentSteps": 2}' where id = ${a.tenant.id}`;
    const intake = await burst(Array.from({ length: 6 }, (_, i) => `quick ${i}`));
    const ids = intake.map((i) => i.taskId);
    await t.db.owner`delete from graphile_worker._private_jobs`;
    await planTasks(t.res, a.tenant.id, ids);
    const steps = await t.db.owner<{ id: string; status: string }[]>`
      select id, status from steps where task_id = any(${ids}::uuid[])`;
    expect(steps.filter((s) => s.status === 'succeeded')).toHaveLength(2);
    const waiting = steps.filter((s) => s.status === 'ready').map((s) => s.id);
    expect(waiting).toHaveLength(4);
    const queued = await t.db.owner<{ key: string }[]>`
      select j.key from graphile_worker._private_jobs j join graphile_worker._private_tasks k on k.id = j.task_id
      where k.identifier = 'run-step'`;
    // (Steps of earlier tests held back by the limit may be woken too: a slot freed wakes the oldest.)
    expect(queued.map((q) => q.key)).toEqual(expect.arrayContaining(waiting.map((id) => `step:${id}`)));
    // A worker runs the queued ones to the end.
    await workUntilDone(ids);
  });

  it('wakes one held-back step per freed slot at once; the others keep their later backstop', async () => {
    // A tenant of its own, so no step held back by an earlier test is the oldest in line.
    const w = await createTenantFixture(t, 'wake');
    await addPlaybook(w, 'Quick', 'quick', [oneStep('low')]);
    await t.db
      .owner`update tenants set settings = settings || '{"maxConcurrentSteps": 2}' where id = ${w.tenant.id}`;
    const intake = await burst(
      Array.from({ length: 6 }, (_, i) => `quick ${i}`),
      w.tenant.id,
    );
    const ids = intake.map((i) => i.taskId);
    await planTasks(t.res, w.tenant.id, ids);
    // Two ran and finished in the batch; the two slots they freed woke the two steps held back
    // longest, whose jobs are due now; the other two still wait for their backstop (2 s).
    const held = await t.db.owner<{ status: string; woken: boolean; due_in_ms: number | null }[]>`
      select s.status, s.throttled_at is null as woken,
             (extract(epoch from (j.run_at - now())) * 1000)::float8 as due_in_ms
      from steps s left join graphile_worker._private_jobs j on j.key = 'step:' || s.id
      where s.task_id = any(${ids}::uuid[]) order by s.status, s.throttled_at nulls first`;
    expect(held.filter((h) => h.status === 'succeeded')).toHaveLength(2);
    const ready = held.filter((h) => h.status === 'ready');
    expect(ready.map((h) => h.woken)).toEqual([true, true, false, false]);
    for (const h of ready.slice(0, 2)) expect(h.due_in_ms!).toBeLessThanOrEqual(0);
    for (const h of ready.slice(2)) expect(h.due_in_ms!).toBeGreaterThan(1000);
    await workUntilDone(ids);
  });

  it('plans the others when one task of the batch cannot be stored, and fails the job for it', async () => {
    const intake = await burst(['quick a', 'quick b', 'quick c']);
    const ids = intake.map((i) => i.taskId);
    const bad = ids[1]!;
    // A fault injected for one task: its steps cannot be inserted.
    await t.db.owner.unsafe(`
      create function fail_for_task() returns trigger language plpgsql as $$
      begin
        if new.task_id = '${bad}' then raise exception 'injected fault'; end if;
        return new;
      end $$;
      create trigger fail_for_task before insert on steps for each row execute function fail_for_task();`);
    try {
      await expect(planTasks(t.res, a.tenant.id, ids)).rejects.toThrow(/injected fault/);
    } finally {
      await t.db.owner.unsafe(`drop trigger fail_for_task on steps; drop function fail_for_task();`);
    }
    const s = await statuses(ids);
    expect(s.get(ids[0]!)).toBe('done');
    expect(s.get(ids[2]!)).toBe('done');
    expect(s.get(bad)).toBe('needs_action');
    // The job's retry plans what is left, and only that.
    await planTasks(t.res, a.tenant.id, ids);
    expect((await statuses(ids)).get(bad)).toBe('done');
    expect(await auditOf('task.planned', ids)).toHaveLength(3);
  });
});

describe('plan-tasks: outcomes of a batch', () => {
  it('finishes parallel first steps in bulk, queues the step that waited for both, and fails a task whose step failed', async () => {
    await t.db
      .owner`update tenants set settings = settings || '{"maxConcurrentSteps": 100}' where id = ${a.tenant.id}`;
    const noop = (key: string, dependsOn: string[] = []) => ({
      key,
      tool: 'noop',
      args: { note: key },
      dependsOn,
    });
    await addPlaybook(a, 'Fan in', 'fan-in', [noop('x'), noop('y'), noop('z', ['x', 'y'])]);
    await addPlaybook(a, 'Broken', 'broken', [
      noop('first'),
      { key: 'bad', tool: 'test.broken', args: { note: 'bad' } },
      noop('after', ['first', 'bad']),
    ]);
    const [quick, fan, broken] = await burst(['quick again', 'fan-in', 'broken']);
    const ids = [quick!.taskId, fan!.taskId, broken!.taskId];
    await planTasks(t.res, a.tenant.id, ids);
    const stepsOf = async (taskId: string) =>
      Object.fromEntries(
        (
          await t.db.owner<{ key: string; status: string }[]>`
            select key, status from steps where task_id = ${taskId}`
        ).map((r) => [r.key, r.status]),
      );
    const s = await statuses(ids);
    expect(s.get(quick!.taskId)).toBe('done');
    expect(await stepsOf(fan!.taskId)).toEqual({ x: 'succeeded', y: 'succeeded', z: 'ready' });
    expect(s.get(fan!.taskId)).toBe('executing');
    const [job] = await t.db.owner<{ n: number }[]>`
      select count(*)::int as n from graphile_worker._private_jobs j join graphile_worker._private_tasks k on k.id = j.task_id
      where k.identifier = 'run-step' and j.payload->>'stepId' = (select id::text from steps where task_id = ${fan!.taskId} and key = 'z')`;
    expect(job?.n).toBe(1);
    // The failed step went through the single-step path: a dead letter, the rest skipped, the task failed.
    expect(await stepsOf(broken!.taskId)).toEqual({ first: 'succeeded', bad: 'dead', after: 'skipped' });
    expect(s.get(broken!.taskId)).toBe('failed');
    await workUntilDone([fan!.taskId]);
    expect(await stepsOf(fan!.taskId)).toEqual({ x: 'succeeded', y: 'succeeded', z: 'succeeded' });
  });
});

describe('plan-tasks jobs in the worker', () => {
  it('drops a job whose payload is not a tenant and a list of task ids', async () => {
    const [x] = await burst(['quick worker']);
    await t.db.owner`delete from graphile_worker._private_jobs`;
    await t.db
      .owner`select graphile_worker.add_job('plan-tasks', ${t.db.owner.json({ tenantId: a.tenant.id, taskIds: ['nope'] } as never)}::json)`;
    await t.db
      .owner`select graphile_worker.add_job('plan-tasks', ${t.db.owner.json({ tenantId: a.tenant.id, taskIds: [x!.taskId] } as never)}::json)`;
    await workUntilDone([x!.taskId]);
    // The malformed job was dropped (completed without effect), not left to retry.
    expect(await planJobs()).toHaveLength(0);
  });
});
