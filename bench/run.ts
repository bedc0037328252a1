/**
 * `npm run bench`: starts `steward serve` as a separate process on a fresh data directory, seeds a
 * tenant, drives load with autocannon from this process and writes the medians of several runs to
 * bench/out/. See bench/README.md for the scenarios and the environment variables.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import {
  analyze,
  api,
  cli,
  common,
  cpuMeter,
  externalDatabase,
  intEnv,
  log,
  machine,
  median,
  OUT_DIR,
  PASSWORD,
  procStats,
  rssSampler,
  setPostmasterPid,
  SLUG,
  startServer,
  waitForQuiet,
  type Server,
} from './support.ts';
import { PIPELINE_SCENARIOS, runPipelineScenarios, type PipelineScenarioName } from './pipeline.ts';

const SCENARIOS = ['list-apikey', 'list-jwt', 'login', 'audit-http', 'audit-direct'] as const;
/** Diagnostics, run only when named in BENCH_SCENARIOS: the floor under the list endpoint. */
const DIAGNOSTICS = ['healthz', 'tenant-get', 'list-1'] as const;
type ScenarioName = (typeof SCENARIOS)[number] | (typeof DIAGNOSTICS)[number];

const settings = {
  ...common,
  connections: intEnv('BENCH_CONNECTIONS', 50, 1),
  loginConnections: intEnv('BENCH_LOGIN_CONNECTIONS', 8, 1),
  auditConnections: intEnv('BENCH_AUDIT_CONNECTIONS', 10, 1),
  users: intEnv('BENCH_USERS', 60, 50),
  only: (process.env.BENCH_SCENARIOS || SCENARIOS.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean) as (ScenarioName | PipelineScenarioName)[],
};
const KNOWN: string[] = [...SCENARIOS, ...DIAGNOSTICS, ...PIPELINE_SCENARIOS];
for (const s of settings.only) {
  if (!KNOWN.includes(s)) throw new Error(`BENCH_SCENARIOS: unknown scenario "${s}" (${KNOWN.join(', ')})`);
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
      setPostmasterPid(Number(pidFile.split('\n')[0]));
    } else {
      setPostmasterPid(await external.postmasterPid());
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
    const want = (n: ScenarioName) => (settings.only as string[]).includes(n);
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
    // intake and pipeline (issue 3): only when named, see bench/pipeline.ts.
    const pipelines = await runPipelineScenarios(server, s, settings.only);
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
      ...pipelines.results,
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
      pipelines.markdown,
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
