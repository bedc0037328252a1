import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { retryDeadLetter } from '@steward/core/executor/dead-letters';
import { SYSTEM_ACTOR } from '@steward/core/resources';
import { submitEvent } from '@steward/core/tasks/task-service';
import { updateTenant } from '@steward/core/tenants/tenant-service';
import { startReceiver, type Receiver, type ReceiverMode } from './testing/idempotency-receiver.ts';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  TEST_MASTER_KEY,
  type TestApp,
} from './testing/test-app.ts';

/**
 * Crash safety of the durable executor, on real processes.
 *
 * A receiving test server (testing/idempotency-receiver.ts) stands in for a third-party API: every
 * connector call (http.request POST, carrying the step's `Idempotency-Key`) is recorded, and its side
 * effect is applied as soon as the request arrives, before a slow answer (100–400 ms). The tenant
 * allows private addresses (network.allowPrivate) and auto-approves medium risk (approveFromRisk
 * 'high', newRecipients false); its playbook turns every event into two steps, the second depending
 * on the first, both POSTing to the receiver.
 *
 * Worker processes are real `steward work` processes (bin/steward.js) with a 2 s step lease. Tasks
 * keep arriving while, cycle after cycle, one or two workers are started, left to run for 0.3–1.5 s
 * and then killed with SIGKILL — each kill aimed at a moment when the receiver holds a request that
 * has not been answered (so the worker dies mid-call, after the side effect and before the step's
 * result is committed). The reaper (and the recovery of jobs locked by a dead worker) must bring every
 * step back; a last worker then runs until every task has finished.
 *
 * Assertions: every task `done` (zero lost), every step `succeeded`, exactly one applied effect per
 * step at the honouring receiver, matching that step's body, and no effect that belongs to no step
 * (zero duplicated side effects). The receiver must have seen repeated deliveries (the same key
 * again): proof that kills landed mid-call and that the keys are what kept the effects single.
 * Recoveries count as attempts: no step runs more than its max attempts; a step whose worker died on
 * every attempt is a WORKER_LOST dead letter, which the drain retries by hand (as an operator would).
 *
 * Negative control: the same scenario, smaller, against a receiver that ignores the keys: it must
 * show duplicated effects, i.e. the main assertion can fail.
 *
 * Figures (kills, kills mid-call, repeats, durations) are printed with console.log.
 */

const ROOT = path.resolve(import.meta.dirname, '../../..');
const BIN = path.join(ROOT, 'bin/steward.js');
const LEASE_SECONDS = 2;

let t: TestApp;
let dataDir: string;

beforeAll(async () => {
  t = await createTestApp();
  dataDir = await mkdtemp(path.join(tmpdir(), 'steward-crash-'));
});
afterAll(async () => {
  for (const w of workers) w.child.kill('SIGKILL');
  await Promise.all([...workers].map((w) => w.exited));
  await t?.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const between = (lo: number, hi: number) => lo + Math.random() * (hi - lo);

interface Worker {
  child: ChildProcess;
  output: () => string;
  exited: Promise<void>;
  /** When the worker said it was running (0: still starting). */
  readyAt: number;
  /** How long it runs before it becomes a target. */
  runFor: number;
}
const workers = new Set<Worker>();

function startWorkerProcess(): Worker {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: t.db.ownerUrl,
    STEWARD_DATA_DIR: dataDir,
    STEWARD_MASTER_KEY: TEST_MASTER_KEY,
    STEWARD_STEP_LEASE_SECONDS: String(LEASE_SECONDS),
    STEWARD_WORKER_CONCURRENCY: '8',
    STEWARD_DB_POOL_MAX: '6',
    // info: the "worker running" line tells the test when the worker is up.
    LOG_LEVEL: 'info',
  };
  delete env.DATABASE_APP_URL;
  const child = spawn(process.execPath, [BIN, 'work'], { env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const w: Worker = {
    child,
    output: () => out,
    exited: new Promise((resolve) => child.once('exit', () => resolve())),
    readyAt: 0,
    runFor: between(300, 1500),
  };
  const keep = (d: Buffer) => {
    out = (out + String(d)).slice(-20_000);
    if (!w.readyAt && out.includes('Steward worker running')) w.readyAt = Date.now();
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  workers.add(w);
  void w.exited.then(() => workers.delete(w));
  return w;
}

async function untilRunning(w: Worker): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!w.output().includes('Steward worker running')) {
    if (w.child.exitCode !== null || w.child.signalCode !== null)
      throw new Error(`the worker exited: ${w.output()}`);
    if (Date.now() > deadline) throw new Error(`the worker did not start: ${w.output()}`);
    await sleep(25);
  }
}

/** The local TCP ports of a process's sockets (Linux: /proc/<pid>/fd and /proc/net/tcp*). */
async function tcpPortsOf(pid: number): Promise<Set<number>> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
    const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) inodes.add(m[1]!);
  }
  const ports = new Set<number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 9 && inodes.has(cols[9]!)) ports.add(parseInt(cols[1]!.split(':')[1]!, 16));
    }
  }
  return ports;
}

/** Is this worker waiting for an answer from the receiver right now? */
async function midCall(w: Worker, receiver: Receiver): Promise<boolean> {
  const waiting = receiver.inFlightPorts();
  if (!waiting.size || !w.child.pid) return false;
  for (const port of await tcpPortsOf(w.child.pid)) if (waiting.has(port)) return true;
  return false;
}

async function kill(w: Worker): Promise<void> {
  w.child.kill('SIGKILL');
  await w.exited;
}

interface Scenario {
  slug: string;
  mode: ReceiverMode;
  /** Tasks submitted before the first worker starts. */
  initialTasks: number;
  /** Load keeps arriving: below this many unfinished tasks, topUp more are submitted... */
  backlog: number;
  topUp: number;
  /** ...up to this many tasks in all. */
  maxTasks: number;
  /** Worker processes alive (starting or running) during the kill phase. */
  population: number;
  /** Kills in all, and kills that must land while the killed worker waits on the receiver. */
  kills: number;
  midCallKills: number;
  /** Bounds of the kill phase. */
  maxKills: number;
  maxKillPhaseMs: number;
}

interface Outcome {
  receiver: Receiver;
  tasks: { id: string; status: string }[];
  steps: {
    id: string;
    task_id: string;
    key: string;
    status: string;
    idempotency_key: string;
    attempts: number;
    max_attempts: number;
  }[];
  /** Steps that used up their attempts on lost workers (WORKER_LOST dead letters), retried by hand. */
  lost: { id: string; attempts: number; max_attempts: number; code: string }[];
  expectedBody: Map<string, string>;
  kills: number;
  midCallKills: number;
  cycles: number;
  killPhaseMs: number;
  drainMs: number;
}

async function runScenario(s: Scenario): Promise<Outcome> {
  const receiver = await startReceiver({ mode: s.mode, delayMs: () => between(100, 400) });
  try {
    const f = await createTenantFixture(t, s.slug);
    await updateTenant(t.res, f.tenant.id, SYSTEM_ACTOR, {
      settings: {
        network: { allowPrivate: true },
        approvalPolicy: { approveFromRisk: 'high', newRecipients: false },
        maxConcurrentSteps: 16,
      },
    });
    expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/playbooks',
        headers: bearer(f.token),
        payload: {
          name: 'Forward orders',
          when: { subject: { contains: 'order' } },
          steps: [
            {
              key: 'reserve',
              tool: 'http.request',
              args: {
                method: 'POST',
                url: `${receiver.url}/reserve`,
                body: { order: '{{event.externalId}}', step: 'reserve' },
                timeoutMs: 10_000,
              },
            },
            {
              key: 'ship',
              tool: 'http.request',
              args: {
                method: 'POST',
                url: `${receiver.url}/ship`,
                body: { order: '{{event.externalId}}', step: 'ship' },
                timeoutMs: 10_000,
              },
              dependsOn: ['reserve'],
            },
          ],
        },
      }),
      201,
    );

    const taskIds: string[] = [];
    const submit = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const externalId = `${s.slug}-${taskIds.length + 1}`;
        const intake = await submitEvent(t.res, f.tenant.id, SYSTEM_ACTOR, {
          source: 'api',
          type: 'order',
          externalId,
          subject: `order ${externalId}`,
          body: 'please ship',
        });
        taskIds.push(intake.taskId);
      }
    };
    const unfinished = async () => {
      const [row] = await t.db.owner<{ n: number }[]>`
        select count(*)::int as n from tasks
        where tenant_id = ${f.tenant.id} and status not in ('done', 'failed', 'cancelled')`;
      return row!.n;
    };

    await submit(s.initialTasks);
    const killStart = Date.now();
    let kills = 0;
    let midCallKills = 0;
    let cycles = 0;
    // A population of worker processes: some starting (starting takes seconds), some running. Each
    // running worker, after 0.3-1.5 s, is killed as soon as it is waiting on the receiver (bounded
    // wait; a kill that found it idle does not count as mid-call). Sometimes two go at once.
    while ((kills < s.kills || midCallKills < s.midCallKills) && kills < s.maxKills) {
      if (Date.now() - killStart > s.maxKillPhaseMs) break;
      while (workers.size < s.population) startWorkerProcess();
      for (const w of workers) {
        if (w.child.exitCode !== null) throw new Error(`a worker exited by itself: ${w.output()}`);
      }
      const due = [...workers].filter((w) => w.readyAt && Date.now() - w.readyAt >= w.runFor);
      if (!due.length) {
        await sleep(20);
        continue;
      }
      cycles++;
      const victims = due.slice(0, cycles % 4 === 0 ? 2 : 1);
      const aim = Date.now() + 2000;
      const hit = new Set<Worker>();
      while (hit.size < victims.length && Date.now() < aim) {
        for (const v of victims) if (!hit.has(v) && (await midCall(v, receiver))) hit.add(v);
        if (hit.size < victims.length) await sleep(5);
      }
      for (const v of victims) v.child.kill('SIGKILL');
      await Promise.all(victims.map((v) => v.exited));
      kills += victims.length;
      midCallKills += hit.size;
      if ((await unfinished()) < s.backlog && taskIds.length < s.maxTasks) await submit(s.topUp);
      if (process.env.SHOW_LOGS)
        console.log(
          `kill ${kills} at ${Date.now() - killStart} ms: mid-call ${midCallKills}, tasks ${taskIds.length}, ` +
            `unfinished ${await unfinished()}, requests ${receiver.requests.length}, repeats ${receiver.repeats()}`,
        );
    }
    for (const w of workers) w.child.kill('SIGKILL');
    await Promise.all([...workers].map((w) => w.exited));
    const killPhaseMs = Date.now() - killStart;

    // One worker runs until every task has finished (or the deadline passes: then tasks were lost).
    const drainStart = Date.now();
    if (process.env.SHOW_LOGS) console.log(`draining: unfinished ${await unfinished()}`);
    const last = startWorkerProcess();
    await untilRunning(last);
    const deadline = Date.now() + 60_000;
    const lost: Outcome['lost'] = [];
    for (;;) {
      // A step whose worker died on each of its attempts is a WORKER_LOST dead letter (the cap on
      // recoveries): an operator retries it, as the dead-letter API lets them.
      const dead = await t.db.owner<{ id: string; attempts: number; max_attempts: number; code: string }[]>`
        select id, attempts, max_attempts, error->>'code' as code from steps
        where tenant_id = ${f.tenant.id} and status = 'dead'`;
      for (const d of dead) {
        lost.push(d);
        await retryDeadLetter(t.res, f.tenant.id, SYSTEM_ACTOR, d.id);
      }
      if (!dead.length && (await unfinished()) === 0 && receiver.inFlight() === 0) break;
      if (Date.now() > deadline) break;
      await sleep(200);
    }
    const drainMs = Date.now() - drainStart;
    if ((await unfinished()) > 0) {
      // What is stuck, for whoever reads the failure: step states and the queue's locked jobs.
      const states = await t.db.owner`
        select status, count(*)::int as n from steps where tenant_id = ${f.tenant.id} group by status`;
      const locked = await t.db.owner`
        select task_identifier, count(*)::int as n from graphile_worker.jobs
        where locked_at is not null group by task_identifier`;
      const stuck = await t.db.owner`
        select id, status, planner, needs_action_reason, error from tasks
        where tenant_id = ${f.tenant.id} and status not in ('done', 'failed', 'cancelled')`;
      const jobs = await t.db.owner`
        select task_identifier, attempts, max_attempts, run_at, locked_at, last_error, key from graphile_worker.jobs`;
      console.log(
        `[crash-safety ${s.mode}] unfinished after the drain:`,
        JSON.stringify({ states, locked, stuck, jobs }),
      );
    }
    await kill(last);

    const tasks = await t.db.owner<{ id: string; status: string }[]>`
      select id, status from tasks where tenant_id = ${f.tenant.id}`;
    const steps = await t.db.owner<Outcome['steps']>`
      select s.id, s.task_id, s.key, s.status, s.idempotency_key, s.attempts, s.max_attempts from steps s
      where s.tenant_id = ${f.tenant.id}`;
    const externalIds = new Map(
      (
        await t.db.owner<{ task_id: string; external_id: string }[]>`
          select task_id, external_id from events where tenant_id = ${f.tenant.id}`
      ).map((e) => [e.task_id, e.external_id]),
    );
    const expectedBody = new Map(
      steps.map((st) => [
        st.idempotency_key,
        JSON.stringify({ order: externalIds.get(st.task_id), step: st.key }),
      ]),
    );
    expect(tasks.length).toBe(taskIds.length);
    const outcome = {
      receiver,
      tasks,
      steps,
      lost,
      expectedBody,
      kills,
      midCallKills,
      cycles,
      killPhaseMs,
      drainMs,
    };
    console.log(
      `[crash-safety ${s.mode}] tasks ${tasks.length}, steps ${steps.length}, cycles ${cycles}, ` +
        `kills ${kills} (mid-call ${midCallKills}), requests ${receiver.requests.length}, ` +
        `repeated deliveries ${receiver.repeats()}, effects ${[...receiver.effects.values()].reduce((n, e) => n + e.count, 0)}, ` +
        `duplicated effects ${receiver.duplicatedEffects()}, step attempts max ${Math.max(...steps.map((x) => x.attempts))}, ` +
        `worker-lost dead letters ${lost.length}, ` +
        `kill phase ${(killPhaseMs / 1000).toFixed(1)} s, drain ${(drainMs / 1000).toFixed(1)} s`,
    );
    return outcome;
  } finally {
    await receiver.close();
  }
}

describe('crash safety: kill -9 the worker mid-execution', () => {
  it('loses no task and duplicates no side effect at a receiver that honours idempotency keys', async () => {
    const o = await runScenario({
      slug: 'crash-honour',
      mode: 'honour',
      initialTasks: 60,
      backlog: 40,
      topUp: 10,
      maxTasks: 240,
      population: 3,
      kills: 22,
      midCallKills: 20,
      maxKills: 45,
      maxKillPhaseMs: 200_000,
    });
    expect(o.kills).toBeGreaterThanOrEqual(20);
    expect(o.midCallKills).toBeGreaterThanOrEqual(20);

    // Zero lost tasks: every task finished, and finished well.
    expect(o.tasks.filter((x) => x.status !== 'done')).toEqual([]);
    expect(o.steps.length).toBe(o.tasks.length * 2);
    expect(o.steps.filter((x) => x.status !== 'succeeded')).toEqual([]);
    // Recoveries count as attempts: no step ran more often than it was allowed to (a dead letter
    // retried by hand gets exactly one more), and those that gave up had used up all of theirs.
    expect(o.steps.filter((x) => x.attempts > x.max_attempts)).toEqual([]);
    expect(o.lost.filter((x) => x.code !== 'WORKER_LOST' || x.attempts < x.max_attempts)).toEqual([]);

    // Zero duplicated side effects: exactly one effect per step, with that step's body, and none else.
    const effects = o.receiver.effects;
    for (const st of o.steps) {
      const e = effects.get(st.idempotency_key);
      expect(e?.count, `effects of step ${st.id}`).toBe(1);
      // Compare as data: jsonb stores object keys in its own order.
      expect(JSON.parse(e?.body ?? 'null')).toEqual(JSON.parse(o.expectedBody.get(st.idempotency_key)!));
    }
    expect(effects.size).toBe(o.steps.length);
    expect(o.receiver.duplicatedEffects()).toBe(0);
    expect(o.receiver.requests.every((r) => r.key !== undefined)).toBe(true);

    // The kills did land mid-call: some steps were delivered again, and the keys absorbed it.
    expect(o.receiver.repeats()).toBeGreaterThan(0);
  }, 330_000);

  it('negative control: a receiver that ignores the keys shows duplicated effects', async () => {
    const o = await runScenario({
      slug: 'crash-ignore',
      mode: 'ignore',
      initialTasks: 20,
      backlog: 10,
      topUp: 5,
      maxTasks: 40,
      population: 2,
      kills: 4,
      midCallKills: 4,
      maxKills: 12,
      maxKillPhaseMs: 40_000,
    });
    expect(o.midCallKills).toBeGreaterThanOrEqual(4);
    // The executor still loses nothing...
    expect(o.tasks.filter((x) => x.status !== 'done')).toEqual([]);
    // ...but repeated deliveries became repeated effects: the main test's assertion would fail here.
    expect(o.receiver.duplicatedEffects()).toBeGreaterThan(0);
    const doubled = o.steps.filter((st) => (o.receiver.effects.get(st.idempotency_key)?.count ?? 0) > 1);
    expect(doubled.length).toBeGreaterThan(0);
  }, 150_000);
});
