/**
 * The pipeline benchmarks of issue 3 (run by bench/run.ts when named in BENCH_SCENARIOS;
 * `npm run bench:pipeline` runs both):
 *
 * - `intake`: POST /api/v1/events with an API key, unique externalIds, against `steward serve`
 *   alone (nothing processes the tasks).
 * - `pipeline`: a playbook turns every event into a plan with one low-risk `noop` step (no approval),
 *   which runs to `done`; `steward serve` plus N `steward work` processes. Events are submitted at
 *   a fixed rate (open loop) and flat out; tasks/s and event-to-done latency come from the
 *   database (tasks.created_at, set by the intake transaction, to tasks.finished_at, set when the
 *   task reaches `done`), for every task of the run.
 */
import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import { openLoop } from './open-loop.ts';
import { FINAL_TASK_STATUSES } from '../packages/core/src/tasks/task-types.ts';
import {
  api,
  common,
  cpuMeter,
  intEnv,
  log,
  median,
  spawnSteward,
  sleep,
  waitForQuiet,
  type Server,
  type StewardProcess,
} from './support.ts';

export const PIPELINE_SCENARIOS = ['intake', 'pipeline'] as const;
export type PipelineScenarioName = (typeof PIPELINE_SCENARIOS)[number];

const settings = {
  connections: intEnv('BENCH_CONNECTIONS', 50, 1),
  /** Events per second of the latency run (open loop). */
  rate: intEnv('BENCH_PIPELINE_RATE', 500, 1),
  /** Requests per second of the intake's fixed-rate run (0: flat out only). */
  intakeRate: intEnv('BENCH_INTAKE_RATE', 3000, 0),
  /** Connections the fixed-rate (open loop) runs may open at most. */
  openLoopConnections: intEnv('BENCH_OPEN_LOOP_CONNECTIONS', 256, 1),
  workers: (process.env.BENCH_WORKERS || '1,2,4').split(',').map((w) => {
    const n = Number(w.trim());
    if (!Number.isInteger(n) || n < 1 || n > 32)
      throw new Error(`BENCH_WORKERS: "${w}" is not a number of workers from 1 to 32`);
    return n;
  }),
  /** STEWARD_WORKER_CONCURRENCY of each `steward work` (unset: the server's default, 8). */
  workerConcurrency: process.env.BENCH_WORKER_CONCURRENCY || undefined,
  /**
   * The bench tenant's `maxConcurrentSteps` (steps it may run at once; the installation's default is
   * 4). A batch of tasks planned together takes at most this many steps at once; the rest queue.
   */
  tenantStepLimit: intEnv('BENCH_TENANT_STEP_LIMIT', 200, 1),
  /** Seconds to wait after the submissions until every task of the run is final. */
  drainTimeout: intEnv('BENCH_DRAIN_TIMEOUT', 120, 1),
};

const SOURCE = 'bench';

interface PipelineRun {
  mode: 'rate' | 'flat-out';
  workers: number;
  /** Target events/s (flat-out: null). */
  targetRate: number | null;
  /** Events accepted per second while submitting (autocannon's mean of per-second samples). */
  intakePerSec: number;
  /** Responses to the submissions (a few requests in flight at the end may still create tasks). */
  responses: number;
  /** Tasks the run created (from the database). */
  tasks: number;
  non2xx: number;
  errors: number;
  intakeP99Ms: number;
  done: number;
  /** Tasks of the run not `done` when the drain wait ended, by status. */
  notDone: Record<string, number>;
  /** Tasks done per second: done / (last finished_at - first created_at). */
  tasksPerSec: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  serverCpuPct: number;
  workersCpuPct: number;
  postgresCpuPct: number;
  benchCpuPct: number;
  otherCpuPct: number;
  /** CPU µs per task done, from the first submission until the run drained. */
  serverUsPerTask: number;
  workersUsPerTask: number;
  postgresUsPerTask: number;
  /** Database commits (all clients, including this process's drain polling) and WAL bytes per task done. */
  commitsPerTask: number;
  walBytesPerTask: number;
  /** Active backends seen in 200 ms samples of pg_stat_activity, by what they waited for (CPU: nothing). */
  waits: Record<string, number>;
  busyBeforePct: number;
}

interface IntakeRun {
  requestsPerSec: number;
  total: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  errors: number;
  non2xx: number;
  serverCpuPct: number;
  postgresCpuPct: number;
  benchCpuPct: number;
  otherCpuPct: number;
  serverUsPerReq: number;
  postgresUsPerReq: number;
  busyBeforePct: number;
}

type Db = Awaited<ReturnType<typeof openDb>>;

/** A runtime in this process on the server's database, for reading the run's timestamps. */
async function openDb(server: Server, tenantId: string) {
  const { loadConfig } = await import('../apps/server/src/config.ts');
  const { openRuntime } = await import('../apps/server/src/runtime.ts');
  const runtime = await openRuntime(loadConfig({ ...server.env, STEWARD_DB_POOL_MAX: '2' }), {
    migrate: false,
  });
  const { db } = runtime.res;
  const prefix = (runId: string) => `${runId}-%`;
  return {
    close: () => runtime.close(),
    /** Transactions committed in the database so far, and WAL written (bytes): all clients together. */
    async dbCounters(): Promise<{ commits: number; walBytes: number }> {
      return db.withSystemAccess(async (tx) => {
        await tx`select pg_stat_clear_snapshot()`;
        const [row] = await tx<{ commits: string; wal: string }[]>`
          select (select xact_commit from pg_stat_database where datname = current_database()) as commits,
                 pg_current_wal_lsn() - '0/0'::pg_lsn as wal`;
        return { commits: Number(row!.commits), walBytes: Number(row!.wal) };
      });
    },
    /** What the database's active backends are waiting for right now (wait event → count). */
    async waits(): Promise<Record<string, number>> {
      return db.withSystemAccess(async (tx) => {
        const rows = await tx<{ w: string; n: number }[]>`
          select coalesce(a.wait_event_type || ':' || a.wait_event, 'CPU')
                 || coalesce(' on ' || (select l.relation::regclass::text from pg_locks l
                                        where l.pid = a.pid and not l.granted and l.relation is not null
                                        limit 1), '') as w,
                 count(*)::int as n
          from pg_stat_activity a
          where a.datname = current_database() and a.state = 'active' and a.pid <> pg_backend_pid()
          group by 1`;
        return Object.fromEntries(rows.map((r) => [r.w, r.n]));
      });
    },
    /** Tasks of one run by status. */
    async statusCounts(runId: string): Promise<Record<string, number>> {
      return db.withTenant(tenantId, async (tx) => {
        // A task not planned yet is `needs_action` without a reason: counted apart, as `unplanned`.
        const rows = await tx<{ status: string; n: number }[]>`
          select case when t.status = 'needs_action' and t.needs_action_reason is null then 'unplanned'
                      else t.status end as status, count(*)::int as n from events e
            join tasks t on t.tenant_id = e.tenant_id and t.id = e.task_id
          where e.tenant_id = ${tenantId} and e.source = ${SOURCE} and e.external_id like ${prefix(runId)}
          group by 1`;
        return Object.fromEntries(rows.map((r) => [r.status, r.n]));
      });
    },
    /** Event-to-done latency of every task of one run that is done (ms), and the run's span. */
    async latency(runId: string) {
      return db.withTenant(tenantId, async (tx) => {
        const [row] = await tx<
          {
            done: number;
            span_ms: number | null;
            p50: number | null;
            p90: number | null;
            p99: number | null;
            max: number | null;
          }[]
        >`
          with l as (
            select t.created_at, t.finished_at,
                   extract(epoch from (t.finished_at - t.created_at)) * 1000 as ms
            from events e join tasks t on t.tenant_id = e.tenant_id and t.id = e.task_id
            where e.tenant_id = ${tenantId} and e.source = ${SOURCE} and e.external_id like ${prefix(runId)}
              and t.status = 'done')
          select count(*)::int as done,
                 (extract(epoch from (max(finished_at) - min(created_at))) * 1000)::float8 as span_ms,
                 percentile_cont(0.5) within group (order by ms)::float8 as p50,
                 percentile_cont(0.9) within group (order by ms)::float8 as p90,
                 percentile_cont(0.99) within group (order by ms)::float8 as p99,
                 max(ms)::float8 as max
          from l`;
        return row!;
      });
    },
  };
}

function eventBody(runId: string, n: number): string {
  return JSON.stringify({
    source: SOURCE,
    type: 'bench.event',
    externalId: `${runId}-${n}`,
    subject: `Bench event ${n}`,
    body: 'Benchmark event',
  });
}

interface Submitted {
  /** Answers per second (flat out: autocannon's mean of per-second samples). */
  requestsPerSec: number;
  total: number;
  non2xx: number;
  errors: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/**
 * POST unique events for `seconds`: flat out over BENCH_CONNECTIONS connections (autocannon, closed
 * loop), or at `rate` per second on a fixed schedule (open loop, see open-loop.ts).
 */
async function submit(
  server: Server,
  apiKey: string,
  runId: string,
  seconds: number,
  rate?: number,
): Promise<Submitted> {
  const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
  if (rate) {
    const r = await openLoop({
      origin: server.baseUrl,
      path: '/api/v1/events',
      headers,
      body: (n) => eventBody(runId, n),
      rate,
      seconds,
      connections: settings.openLoopConnections,
    });
    return { ...r, total: r.ok + r.non2xx };
  }
  let n = 0;
  const r = await autocannon({
    url: `${server.baseUrl}/api/v1/events`,
    method: 'POST',
    connections: settings.connections,
    duration: seconds,
    timeout: 10,
    headers,
    requests: [{ method: 'POST', setupRequest: (req) => ({ ...req, body: eventBody(runId, n++) }) }],
  });
  return {
    requestsPerSec: r.requests.average,
    total: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors,
    p50: r.latency.p50,
    p90: r.latency.p90,
    p99: r.latency.p99,
    max: r.latency.max,
  };
}

const round = (x: number | null | undefined, digits = 0) =>
  x === null || x === undefined || !Number.isFinite(x) ? NaN : Math.round(x * 10 ** digits) / 10 ** digits;

// ---------------------------------------------------------------------------------------------
// intake

async function intakeOnce(
  server: Server,
  apiKey: string,
  seconds: number,
  rate: number | undefined,
): Promise<IntakeRun> {
  const busyBeforePct = await waitForQuiet(server.pid);
  const cpu = await cpuMeter(server.pid);
  const runId = `intake-${randomBytes(4).toString('hex')}`;
  const r = await submit(server, apiKey, runId, seconds, rate);
  const { cpuMs, ...pct } = await cpu();
  const n = r.total;
  return {
    requestsPerSec: r.requestsPerSec,
    total: n,
    p50: r.p50,
    p90: r.p90,
    p99: r.p99,
    max: r.max,
    errors: r.errors,
    non2xx: r.non2xx,
    serverCpuPct: pct.serverCpuPct,
    postgresCpuPct: pct.postgresCpuPct,
    benchCpuPct: pct.benchCpuPct,
    otherCpuPct: pct.otherCpuPct,
    serverUsPerReq: Math.round((cpuMs.server * 1000) / n),
    postgresUsPerReq: Math.round((cpuMs.postgres * 1000) / n),
    busyBeforePct,
  };
}

async function intake(server: Server, apiKey: string) {
  const modes = [undefined, ...(settings.intakeRate ? [settings.intakeRate] : [])];
  log(
    `\nintake: POST /api/v1/events with an API key, unique externalIds, API only (${settings.connections} connections, ` +
      `flat out${settings.intakeRate ? ` and at ${settings.intakeRate}/s` : ''}, ${common.duration} s per run)`,
  );
  if (common.warmup > 0) {
    const w = await intakeOnce(server, apiKey, common.warmup, undefined);
    log(`  warm-up: ${w.requestsPerSec.toFixed(0)} req/s (not counted)`);
  }
  const byMode = [];
  for (const rate of modes) {
    const runs: IntakeRun[] = [];
    for (let i = 1; i <= common.runs; i++) {
      const r = await intakeOnce(server, apiKey, common.duration, rate);
      log(
        `  ${rate ? `${rate}/s` : 'flat out'} run ${i}: ${r.requestsPerSec.toFixed(0)} req/s, p50 ${r.p50} ms, p90 ${r.p90} ms, p99 ${r.p99} ms, max ${r.max} ms, ` +
          `errors ${r.errors}, non-2xx ${r.non2xx}, CPU server ${r.serverCpuPct}% postgres ${r.postgresCpuPct}% bench ${r.benchCpuPct}% other ${r.otherCpuPct}%, ` +
          `CPU µs/req server ${r.serverUsPerReq} postgres ${r.postgresUsPerReq}`,
      );
      runs.push(r);
    }
    const pick = (f: (r: IntakeRun) => number) => median(runs.map(f));
    const m = {
      requestsPerSec: Math.round(pick((r) => r.requestsPerSec)),
      p50: pick((r) => r.p50),
      p99: pick((r) => r.p99),
      non2xx: pick((r) => r.non2xx),
      serverCpuPct: pick((r) => r.serverCpuPct),
      postgresCpuPct: pick((r) => r.postgresCpuPct),
      benchCpuPct: pick((r) => r.benchCpuPct),
      otherCpuPct: pick((r) => r.otherCpuPct),
      serverUsPerReq: pick((r) => r.serverUsPerReq),
      postgresUsPerReq: pick((r) => r.postgresUsPerReq),
    };
    log(
      `  => ${rate ? `${rate}/s` : 'flat out'}, median of ${runs.length}: ${m.requestsPerSec} req/s, p50 ${m.p50} ms, p99 ${m.p99} ms`,
    );
    byMode.push({ targetRate: rate ?? null, runs, median: m });
  }
  return { name: 'intake' as const, connections: settings.connections, byMode };
}

// ---------------------------------------------------------------------------------------------
// pipeline

/** Start N `steward work` processes and wait until each says it runs. */
async function startWorkers(server: Server, n: number): Promise<StewardProcess[]> {
  const env: NodeJS.ProcessEnv = { ...server.env, LOG_LEVEL: 'info' };
  delete env.PORT;
  if (settings.workerConcurrency) env.STEWARD_WORKER_CONCURRENCY = settings.workerConcurrency;
  const workers: StewardProcess[] = [];
  for (let i = 0; i < n; i++) {
    const w = spawnSteward('work', env, `worker-${i + 1}.log`);
    workers.push(w);
    await new Promise<void>((resolve, reject) => {
      let seen = '';
      const timer = setTimeout(
        () => reject(new Error(`worker ${i + 1} did not start within 120 s`)),
        120_000,
      );
      w.child.stdout!.on('data', (chunk: Buffer) => {
        seen = (seen + chunk.toString()).slice(-2000);
        if (seen.includes('Steward worker running')) {
          clearTimeout(timer);
          resolve();
        }
      });
      w.child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`worker ${i + 1} exited with code ${code}; see bench/out/worker-${i + 1}.log`));
      });
    });
  }
  return workers;
}

async function pipelineOnce(
  server: Server,
  apiKey: string,
  db: Db,
  workers: StewardProcess[],
  seconds: number,
  rate: number | undefined,
): Promise<PipelineRun> {
  const workerPids = workers.map((w) => w.pid);
  const busyBeforePct = await waitForQuiet(server.pid, workerPids);
  const runId = `p${workers.length}-${randomBytes(4).toString('hex')}`;
  const counters0 = await db.dbCounters();
  const cpu = await cpuMeter(server.pid, workerPids);
  // Sample what the busy backends wait for, every 200 ms, until the run has drained.
  const waits: Record<string, number> = {};
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      for (const [w, n] of Object.entries(await db.waits().catch(() => ({})))) waits[w] = (waits[w] ?? 0) + n;
      await sleep(200);
    }
  })();
  const r = await submit(server, apiKey, runId, seconds, rate);
  // Wait until every task of the run is final (or the drain timeout).
  const deadline = Date.now() + settings.drainTimeout * 1000;
  let counts: Record<string, number>;
  for (;;) {
    counts = await db.statusCounts(runId);
    const open = Object.entries(counts)
      // needs_action (with a reason) waits for a person: final for this benchmark (it should not happen).
      .filter(([s]) => !FINAL_TASK_STATUSES.has(s) && s !== 'needs_action')
      .reduce((a, [, n]) => a + n, 0);
    if (open === 0 || Date.now() > deadline) break;
    await sleep(250);
  }
  sampling = false;
  await sampler;
  const { cpuMs, ...pct } = await cpu();
  // PostgreSQL publishes a backend's counters when it goes idle (at most ~1 s later).
  await sleep(1500);
  const counters1 = await db.dbCounters();
  const l = await db.latency(runId);
  const notDone = Object.fromEntries(Object.entries(counts).filter(([s]) => s !== 'done'));
  const perTask = (ms: number) => (l.done > 0 ? Math.round((ms * 1000) / l.done) : NaN);
  return {
    mode: rate ? 'rate' : 'flat-out',
    workers: workers.length,
    targetRate: rate ?? null,
    intakePerSec: round(r.requestsPerSec),
    responses: r.total,
    tasks: Object.values(counts).reduce((a, n) => a + n, 0),
    non2xx: r.non2xx,
    errors: r.errors,
    intakeP99Ms: r.p99,
    done: l.done,
    notDone,
    tasksPerSec: l.span_ms ? round((l.done * 1000) / l.span_ms, 1) : NaN,
    p50Ms: round(l.p50),
    p90Ms: round(l.p90),
    p99Ms: round(l.p99),
    maxMs: round(l.max),
    serverCpuPct: pct.serverCpuPct,
    workersCpuPct: pct.workersCpuPct,
    postgresCpuPct: pct.postgresCpuPct,
    benchCpuPct: pct.benchCpuPct,
    otherCpuPct: pct.otherCpuPct,
    serverUsPerTask: perTask(cpuMs.server),
    workersUsPerTask: perTask(cpuMs.workers),
    postgresUsPerTask: perTask(cpuMs.postgres),
    commitsPerTask: l.done > 0 ? round((counters1.commits - counters0.commits) / l.done, 1) : NaN,
    walBytesPerTask: l.done > 0 ? Math.round((counters1.walBytes - counters0.walBytes) / l.done) : NaN,
    waits,
    busyBeforePct,
  };
}

function printPipelineRun(label: string, r: PipelineRun): void {
  const nd = Object.entries(r.notDone)
    .map(([s, n]) => `${s}:${n}`)
    .join(' ');
  log(
    `  ${label} [${r.mode}${r.targetRate ? ' ' + r.targetRate + '/s' : ''}]: intake ${r.intakePerSec} ev/s (${r.tasks} tasks, non-2xx ${r.non2xx}), ` +
      `${r.tasksPerSec} tasks/s done (${r.done}${nd ? ', not done ' + nd : ''}), event-to-done p50 ${r.p50Ms} ms p90 ${r.p90Ms} ms p99 ${r.p99Ms} ms max ${r.maxMs} ms, ` +
      `CPU server ${r.serverCpuPct}% workers ${r.workersCpuPct}% postgres ${r.postgresCpuPct}% bench ${r.benchCpuPct}% other ${r.otherCpuPct}%, ` +
      `CPU µs/task server ${r.serverUsPerTask} workers ${r.workersUsPerTask} postgres ${r.postgresUsPerTask}, ` +
      `commits/task ${r.commitsPerTask}, WAL bytes/task ${r.walBytesPerTask}, waits ${Object.entries(r.waits)
        .sort((a, b) => b[1] - a[1])
        .map(([w, n]) => `${w}:${n}`)
        .join(' ')}`,
  );
}

function medianRun(runs: PipelineRun[]) {
  const pick = (f: (r: PipelineRun) => number) => median(runs.map(f));
  return {
    intakePerSec: pick((r) => r.intakePerSec),
    tasksPerSec: pick((r) => r.tasksPerSec),
    done: pick((r) => r.done),
    notDone: pick((r) => Object.values(r.notDone).reduce((a, n) => a + n, 0)),
    p50Ms: pick((r) => r.p50Ms),
    p90Ms: pick((r) => r.p90Ms),
    p99Ms: pick((r) => r.p99Ms),
    serverCpuPct: pick((r) => r.serverCpuPct),
    workersCpuPct: pick((r) => r.workersCpuPct),
    postgresCpuPct: pick((r) => r.postgresCpuPct),
    benchCpuPct: pick((r) => r.benchCpuPct),
    otherCpuPct: pick((r) => r.otherCpuPct),
    serverUsPerTask: pick((r) => r.serverUsPerTask),
    workersUsPerTask: pick((r) => r.workersUsPerTask),
    postgresUsPerTask: pick((r) => r.postgresUsPerTask),
    commitsPerTask: pick((r) => r.commitsPerTask),
    walBytesPerTask: pick((r) => r.walBytesPerTask),
  };
}

async function pipeline(server: Server, apiKey: string, tenantId: string) {
  log(
    `\npipeline: event -> plan (playbook, one low-risk noop step) -> done; serve + ${settings.workers.join('/')} workers, ` +
      `${settings.rate} events/s and flat out (${settings.connections} connections), ${common.duration} s per run, ` +
      `tenant step limit ${settings.tenantStepLimit}`,
  );
  await api(server, 'PATCH', '/api/v1/tenant', {
    token: apiKey,
    body: { settings: { maxConcurrentSteps: settings.tenantStepLimit } },
  });
  await api(server, 'POST', '/api/v1/playbooks', {
    token: apiKey,
    expect: 201,
    body: {
      name: 'Benchmark: noop',
      when: { source: [SOURCE] },
      steps: [{ key: 'noop', tool: 'noop', args: { note: 'bench {{event.externalId}}' } }],
    },
  });
  const db = await openDb(server, tenantId);
  const byWorkers = [];
  try {
    for (const n of settings.workers) {
      const workers = await startWorkers(server, n);
      try {
        log(`  ${n} worker(s): pids ${workers.map((w) => w.pid).join(', ')}`);
        if (common.warmup > 0) {
          const w = await pipelineOnce(server, apiKey, db, workers, common.warmup, settings.rate);
          printPipelineRun('warm-up (not counted)', w);
        }
        const rateRuns: PipelineRun[] = [];
        const flatRuns: PipelineRun[] = [];
        for (let i = 1; i <= common.runs; i++) {
          const a = await pipelineOnce(server, apiKey, db, workers, common.duration, settings.rate);
          printPipelineRun(`run ${i}`, a);
          rateRuns.push(a);
          const b = await pipelineOnce(server, apiKey, db, workers, common.duration, undefined);
          printPipelineRun(`run ${i}`, b);
          flatRuns.push(b);
        }
        byWorkers.push({
          workers: n,
          rate: { runs: rateRuns, median: medianRun(rateRuns) },
          flatOut: { runs: flatRuns, median: medianRun(flatRuns) },
        });
      } finally {
        await Promise.all(workers.map((w) => w.stop()));
      }
    }
  } finally {
    await db.close();
  }
  return {
    name: 'pipeline' as const,
    connections: settings.connections,
    targetRate: settings.rate,
    workerConcurrency: settings.workerConcurrency ?? 'default (8)',
    byWorkers,
  };
}

// ---------------------------------------------------------------------------------------------

/**
 * Run the pipeline scenarios named in `only` (pipeline first: intake leaves queued jobs that
 * nothing processes). Returns the JSON for the report and a Markdown summary.
 */
export async function runPipelineScenarios(
  server: Server,
  seed: { apiKey: string; tenantId: string },
  only: string[],
) {
  const results: {
    pipeline?: Awaited<ReturnType<typeof pipeline>>;
    intake?: Awaited<ReturnType<typeof intake>>;
  } = {};
  if (only.includes('pipeline')) results.pipeline = await pipeline(server, seed.apiKey, seed.tenantId);
  if (only.includes('intake')) results.intake = await intake(server, seed.apiKey);

  const md: string[] = [];
  if (results.pipeline) {
    md.push(
      '',
      `Pipeline (${common.runs} run(s) of ${common.duration} s per mode, medians; CPU µs per task done):`,
      '',
      '| workers | mode | intake ev/s | tasks/s done | not done | p50 ms | p90 ms | p99 ms | CPU % server / workers / postgres / bench / other | CPU µs/task server / workers / postgres | commits/task | WAL bytes/task |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|',
    );
    for (const w of results.pipeline.byWorkers) {
      for (const [mode, m] of [
        [`${results.pipeline.targetRate}/s`, w.rate.median],
        ['flat out', w.flatOut.median],
      ] as const) {
        md.push(
          `| ${w.workers} | ${mode} | ${m.intakePerSec} | ${m.tasksPerSec} | ${m.notDone} | ${m.p50Ms} | ${m.p90Ms} | ${m.p99Ms} | ${m.serverCpuPct} / ${m.workersCpuPct} / ${m.postgresCpuPct} / ${m.benchCpuPct} / ${m.otherCpuPct} | ${m.serverUsPerTask} / ${m.workersUsPerTask} / ${m.postgresUsPerTask} | ${m.commitsPerTask} | ${m.walBytesPerTask} |`,
        );
      }
    }
  }
  if (results.intake) {
    for (const { targetRate, runs, median: m } of results.intake.byMode) {
      md.push(
        '',
        `Intake ${targetRate ? `at ${targetRate}/s (open loop, up to ${settings.openLoopConnections} connections` : `flat out (${results.intake.connections} connections`}, median of ${runs.length}): ${m.requestsPerSec} req/s, p50 ${m.p50} ms, p99 ${m.p99} ms, non-2xx ${m.non2xx}, ` +
          `CPU % server / postgres / bench / other ${m.serverCpuPct} / ${m.postgresCpuPct} / ${m.benchCpuPct} / ${m.otherCpuPct}, CPU µs/req server ${m.serverUsPerReq} postgres ${m.postgresUsPerReq}`,
      );
    }
  }
  return { results, markdown: md.join('\n') };
}
