/**
 * `npm run bench:live` (issue 4): the dashboard's two time targets, measured in Debian's Chromium
 * against `steward serve` started as a separate process on a fresh data directory (embedded
 * PostgreSQL, or a throwaway database on BENCH_DATABASE_URL).
 *
 * (a) Interactive with a cold cache: a new browser context per load (empty HTTP cache, no service
 *     worker) that carries only the signed-in session; from navigation start (performance.timeOrigin)
 *     to the first task card of the board rendered with data (a MutationObserver timestamp).
 *     BENCH_WEB_LOADS loads (default 15). Target: < 1 s.
 * (b) Live-update latency: a task is cancelled through the API (its state changes in the database);
 *     the page's MutationObserver notes when the task's row shows "cancelled". Latency = that moment
 *     − the transaction time PostgreSQL stored with the change (`updated_at`, the start of the
 *     committing transaction: the figure is an upper bound, never flattering), and, as a lower
 *     bound, − the moment the API answered (after the commit). BENCH_LIVE_SAMPLES samples (default
 *     30, one at a time, 300 ms apart). Target: ≤ 300 ms.
 *
 * Browser and server run on the same machine, so both clocks are the same clock. Prints a Markdown
 * summary and writes bench/out/web-live-<time>.json. Never a test: nothing here asserts a time.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { ensureWebBuild } from '../apps/web/build/ensure-build.ts';
import {
  api,
  cli,
  externalDatabase,
  intEnv,
  log,
  machine,
  median,
  OUT_DIR,
  PASSWORD,
  procStats,
  sleep,
  SLUG,
  startServer,
  type Server,
} from './support.ts';

const LOADS = intEnv('BENCH_WEB_LOADS', 15, 1, 1000);
const SAMPLES = intEnv('BENCH_LIVE_SAMPLES', 30, 1, 10_000);
const SEED_TASKS = intEnv('BENCH_WEB_TASKS', 30, 1, 10_000);
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

const percentile = (values: number[], p: number) => {
  const s = [...values].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};
const stats = (values: number[]) => ({
  n: values.length,
  median: Math.round(median(values)),
  p95: Math.round(percentile(values, 95)),
  min: Math.round(Math.min(...values)),
  max: Math.round(Math.max(...values)),
});

/** Installed before any script of the page: timestamps of what the dashboard renders. */
const OBSERVER = `
  window.__bench = { firstTaskAt: undefined, seen: {} };
  const scan = () => {
    const cards = document.querySelectorAll('[data-task-id]');
    if (cards.length && window.__bench.firstTaskAt === undefined) window.__bench.firstTaskAt = performance.now();
    for (const el of cards) {
      const status = el.querySelector('[data-status]')?.getAttribute('data-status') ?? 'card';
      const key = el.getAttribute('data-task-id') + ':' + status;
      if (!(key in window.__bench.seen)) window.__bench.seen[key] = performance.timeOrigin + performance.now();
    }
  };
  new MutationObserver(scan).observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
`;

interface Seed {
  ownerEmail: string;
  token: string;
}

async function seed(server: Server): Promise<Seed> {
  const ownerEmail = `owner@${SLUG}.bench`;
  await cli(server, [
    'tenant',
    'create',
    '--slug',
    SLUG,
    '--name',
    'Dashboard benchmark',
    '--owner-email',
    ownerEmail,
    '--owner-password',
    PASSWORD,
  ]);
  const { accessToken } = await api<{ accessToken: string }>(server, 'POST', '/api/v1/auth/login', {
    body: { email: ownerEmail, password: PASSWORD, tenant: SLUG },
  });
  for (let i = 0; i < SEED_TASKS; i++)
    await api(server, 'POST', '/api/v1/tasks', {
      token: accessToken,
      body: { title: `Seeded task ${i + 1}` },
      expect: 202,
    });
  return { ownerEmail, token: accessToken };
}

/**
 * A browser storage state holding a fresh session, as the dashboard keeps it after a sign-in
 * (refresh tokens are single-use: every page load gets its own).
 */
async function signedInState(server: Server, s: Seed) {
  const t = await api<{ refreshToken: string; user: unknown; tenant: unknown }>(
    server,
    'POST',
    '/api/v1/auth/login',
    { body: { email: s.ownerEmail, password: PASSWORD, tenant: SLUG } },
  );
  return {
    cookies: [],
    origins: [
      {
        origin: server.baseUrl,
        localStorage: [
          {
            name: 'steward.session',
            value: JSON.stringify({ refreshToken: t.refreshToken, user: t.user, tenant: t.tenant }),
          },
        ],
      },
    ],
  };
}

async function coldLoads(browser: Browser, server: Server, s: Seed) {
  const rows: {
    interactive: number;
    domContentLoaded: number;
    transferKb: number;
    mainThreadMs: number;
    scriptMs: number;
    serverCpuMs: number;
  }[] = [];
  for (let i = 0; i < LOADS; i++) {
    // A new context: empty cache, no service worker; only the session (localStorage) carried over.
    const state = await signedInState(server, s);
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, storageState: state });
    await context.addInitScript(OBSERVER);
    const page = await context.newPage();
    // The renderer's main-thread busy time (CPU, steadier than wall time on a loaded machine).
    const cdp = await context.newCDPSession(page);
    await cdp.send('Performance.enable');
    const serverCpu = (await procStats(server.pid)).cpuMs;
    await page.goto(server.baseUrl);
    await page.waitForFunction(
      () => (window as unknown as { __bench: { firstTaskAt?: number } }).__bench.firstTaskAt !== undefined,
      undefined,
      { timeout: 30_000 },
    );
    if (process.env.BENCH_WEB_WATERFALL)
      log(
        await page.evaluate(() =>
          performance
            .getEntriesByType('resource')
            .map(
              (r) =>
                `${Math.round(r.startTime)}–${Math.round((r as PerformanceResourceTiming).responseEnd)} ${r.name.replace(location.origin, '')}`,
            )
            .join('\n'),
        ),
      );
    const { metrics } = await cdp.send('Performance.getMetrics');
    const metric = (name: string) => (metrics.find((m) => m.name === name)?.value ?? NaN) * 1000;
    const cpu = {
      mainThreadMs: metric('TaskDuration'),
      scriptMs: metric('ScriptDuration'),
      serverCpuMs: (await procStats(server.pid)).cpuMs - serverCpu,
    };
    rows.push(
      await page
        .evaluate(() => {
          const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
          const bytes = performance
            .getEntriesByType('resource')
            .reduce(
              (sum, r) => sum + ((r as PerformanceResourceTiming).transferSize || 0),
              nav.transferSize || 0,
            );
          return {
            interactive: (window as unknown as { __bench: { firstTaskAt: number } }).__bench.firstTaskAt,
            domContentLoaded: nav.domContentLoadedEventEnd,
            transferKb: bytes / 1024,
          };
        })
        .then((r) => ({ ...r, ...cpu })),
    );
    await context.close();
  }
  return rows;
}

async function liveLatency(browser: Browser, server: Server, s: Seed) {
  const state = await signedInState(server, s);
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, storageState: state });
  await context.addInitScript(OBSERVER);
  const page = await context.newPage();
  await page.goto(server.baseUrl);
  await page.getByTestId('live-status').filter({ hasText: 'Live' }).waitFor();
  // The list view shows each task's state as a badge.
  await page.getByRole('button', { name: 'List' }).click();
  await page.locator('[data-task-id] [data-status]').first().waitFor();
  const fromCommit: number[] = [];
  const fromAnswer: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const { taskId } = await api<{ taskId: string }>(server, 'POST', '/api/v1/tasks', {
      token: s.token,
      body: { title: `Live sample ${i + 1}` },
      expect: 202,
    });
    await page.locator(`[data-task-id="${taskId}"]`).waitFor();
    await sleep(300);
    const task = await api<{ updatedAt: string; status: string }>(
      server,
      'POST',
      `/api/v1/tasks/${taskId}/cancel`,
      {
        token: s.token,
      },
    );
    const answeredAt = Date.now();
    if (task.status !== 'cancelled') throw new Error(`task ${taskId} is ${task.status}, not cancelled`);
    const key = `${taskId}:cancelled`;
    await page.waitForFunction(
      (k) => k in (window as unknown as { __bench: { seen: Record<string, number> } }).__bench.seen,
      key,
      { timeout: 30_000 },
    );
    const visibleAt = await page.evaluate(
      (k) => (window as unknown as { __bench: { seen: Record<string, number> } }).__bench.seen[k]!,
      key,
    );
    fromCommit.push(visibleAt - Date.parse(task.updatedAt));
    fromAnswer.push(visibleAt - answeredAt);
    await sleep(300);
  }
  await context.close();
  return { fromCommit, fromAnswer };
}

async function main() {
  const started = new Date();
  await ensureWebBuild(log);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'steward-bench-web-'));
  const external = process.env.BENCH_DATABASE_URL
    ? await externalDatabase(process.env.BENCH_DATABASE_URL)
    : undefined;
  let server: Server | undefined;
  let browser: Browser | undefined;
  try {
    server = await startServer(dataDir, external?.url);
    log(`server pid ${server.pid} at ${server.baseUrl}`);
    const s = await seed(server);
    log(`seeded tenant ${SLUG} with ${SEED_TASKS} tasks`);
    const env = await machine(server);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--no-first-run',
        '--disable-sync',
      ],
    });
    const cpuBefore = await procStats(server.pid);
    const loads = await coldLoads(browser, server, s);
    log(`cold loads: ${loads.map((l) => Math.round(l.interactive)).join(', ')} ms`);
    const live = await liveLatency(browser, server, s);
    const cpuAfter = await procStats(server.pid);
    log(`live: ${live.fromCommit.map(Math.round).join(', ')} ms`);
    const result = {
      started: started.toISOString(),
      finished: new Date().toISOString(),
      machine: { ...env, loadAverageAfter: os.loadavg(), nproc: os.cpus().length },
      chromium: browser.version(),
      interactiveMs: stats(loads.map((l) => l.interactive)),
      domContentLoadedMs: stats(loads.map((l) => l.domContentLoaded)),
      transferKb: Math.round(median(loads.map((l) => l.transferKb))),
      mainThreadTaskMs: stats(loads.map((l) => l.mainThreadMs)),
      scriptTaskMs: stats(loads.map((l) => l.scriptMs)),
      serverCpuPerLoadMs: stats(loads.map((l) => l.serverCpuMs)),
      liveFromCommitMs: stats(live.fromCommit),
      liveFromApiAnswerMs: stats(live.fromAnswer),
      serverCpuMs: cpuAfter.cpuMs - cpuBefore.cpuMs,
    };
    await writeFile(
      path.join(OUT_DIR, `web-live-${started.toISOString().replace(/[:.]/g, '-')}.json`),
      JSON.stringify(result, null, 2),
    );
    const row = (name: string, v: ReturnType<typeof stats>, target: string) =>
      `| ${name} | ${v.n} | **${v.median}** | ${v.p95} | ${v.min}–${v.max} | ${target} |`;
    console.log(
      [
        `Dashboard (issue 4), ${result.started} — load average ${env.loadAverageBefore.map((x) => x.toFixed(1)).join(' / ')} before, ${result.machine.loadAverageAfter.map((x) => x.toFixed(1)).join(' / ')} after; ${result.chromium}`,
        '',
        '| measure | samples | median ms | p95 ms | range ms | target |',
        '|---|---|---|---|---|---|',
        row(
          'interactive, cold cache (navigation start → first task card with data)',
          result.interactiveMs,
          '< 1000',
        ),
        row('DOMContentLoaded, cold cache', result.domContentLoadedMs, ''),
        row(
          'renderer main-thread task time until interactive (wall time of its tasks)',
          result.mainThreadTaskMs,
          '',
        ),
        row('  … of which script execution', result.scriptTaskMs, ''),
        row('server CPU per cold load (serve process, not PostgreSQL)', result.serverCpuPerLoadMs, ''),
        row('live update: DB transaction time → visible', result.liveFromCommitMs, '≤ 300'),
        row('live update: API answer (after commit) → visible', result.liveFromApiAnswerMs, ''),
        '',
        `transferred per cold load (median): ${result.transferKb} KB; server CPU during the measurements: ${result.serverCpuMs} ms`,
      ].join('\n'),
    );
  } finally {
    await browser?.close().catch(() => {});
    await server?.stop();
    await external?.drop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
