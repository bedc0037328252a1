/**
 * `npm run bench:live` (issue 4): the dashboard's two time targets, measured in Debian's Chromium
 * against `steward serve` started as a separate process on a fresh data directory (embedded
 * PostgreSQL, or a throwaway database on BENCH_DATABASE_URL).
 *
 * (a) Interactive with a cold cache: a new browser context per load (empty HTTP cache, no service
 *     worker) that carries only the signed-in session. Before navigating, the benchmark waits
 *     until the browser has finished opening the context's window (see browserSettled). Measured
 *     from navigation start (performance.timeOrigin) to the moment the frame showing the first task
 *     card of the board (real data from the API) has been painted and the main thread is free to
 *     take input; the moment the card entered the DOM is reported as well. Nothing is injected into
 *     the page while it loads (the end is announced on the console). BENCH_WEB_LOADS loads
 *     (default 15). Target: < 1 s. The milestones of each load (resource timing, the app's
 *     performance marks) are summarised; BENCH_WEB_TRACE=n traces n more loads and prints where
 *     the renderer's main thread spends its time (BENCH_WEB_TRACE_FILE keeps the last trace).
 * (b) Live-update latency: a task is cancelled through the API (its state changes in the database);
 *     the page's MutationObserver notes when the task's row shows "cancelled". Latency = that moment
 *     − the transaction time PostgreSQL stored with the change (`updated_at`, the start of the
 *     committing transaction: the figure is an upper bound, never flattering), and, as a lower
 *     bound, − the moment the API answered (after the commit). BENCH_LIVE_SAMPLES samples (default
 *     30, one at a time, 300 ms apart; 0 skips them). Target: ≤ 300 ms.
 *
 * Browser and server run on the same machine, so both clocks are the same clock. Prints a Markdown
 * summary and writes bench/out/web-live-<time>.json. Never a test: nothing here asserts a time.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ensureWebBuild } from '../apps/web/build/ensure-build.ts';
import {
  api,
  cli,
  common,
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
const SAMPLES = intEnv('BENCH_LIVE_SAMPLES', 30, 0, 10_000);
const TRACES = intEnv('BENCH_WEB_TRACE', 0, 0, 100);
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

/**
 * Installed before any script of the page: timestamps of what the dashboard renders. The first
 * task card is noted twice: when it enters the DOM (React's commit), and when the frame showing it
 * has been painted and the main thread is free again (a task queued from the next animation frame
 * runs only after that frame's style, layout and paint): the page then shows data and takes input.
 * That moment is announced on the console, so that waiting for it injects no script into the page
 * while it loads (Playwright's own helpers are hundreds of KB of script).
 */
const OBSERVER = `
  window.__bench = { firstTaskAt: undefined, interactiveAt: undefined, seen: {} };
  const scan = () => {
    const cards = document.querySelectorAll('[data-task-id]');
    if (cards.length && window.__bench.firstTaskAt === undefined) {
      window.__bench.firstTaskAt = performance.now();
      requestAnimationFrame(() => {
        const channel = new MessageChannel();
        channel.port1.onmessage = () => {
          window.__bench.interactiveAt = performance.now();
          console.debug('__bench:interactive');
        };
        channel.port2.postMessage(0);
      });
    }
    for (const el of cards) {
      const status = el.querySelector('[data-status]')?.getAttribute('data-status') ?? 'card';
      const key = el.getAttribute('data-task-id') + ':' + status;
      if (!(key in window.__bench.seen)) window.__bench.seen[key] = performance.timeOrigin + performance.now();
    }
  };
  new MutationObserver(scan).observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
`;

/** Opens the page and resolves when the first task card has been painted (see OBSERVER). */
async function loadUntilInteractive(page: Page, url: string) {
  const interactive = page.waitForEvent('console', {
    predicate: (m) => m.text() === '__bench:interactive',
    timeout: 30_000,
  });
  await page.goto(url, { waitUntil: 'commit' });
  await interactive;
}

/** The Chromium processes this benchmark started, with the CPU time (ms) each has used so far. */
async function browserProcesses(): Promise<{ pid: number; cpuMs: number }[]> {
  const children = new Map<number, number[]>();
  const stats = new Map<number, { comm: string; cpuMs: number }>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const fields = stat.slice(close + 2).split(' ');
      const ppid = Number(fields[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
      stats.set(Number(entry), {
        comm: stat.slice(stat.indexOf('(') + 1, close),
        cpuMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / 100,
      });
    } catch {
      // the process ended
    }
  }
  const found: { pid: number; cpuMs: number }[] = [];
  const walk = (pid: number) => {
    for (const child of children.get(pid) ?? []) {
      const st = stats.get(child);
      if (st?.comm.startsWith('chrom')) found.push({ pid: child, cpuMs: st.cpuMs });
      walk(child);
    }
  };
  walk(process.pid);
  return found;
}

/** CPU time (ms) used so far by the browser: the Chromium processes this benchmark started. */
async function browserCpuMs(): Promise<number> {
  return (await browserProcesses()).reduce((sum, p) => sum + p.cpuMs, 0);
}

/**
 * Like the server (support.ts), the browser runs ahead of other people's work on a shared machine
 * (BENCH_NICE, root only). New renderers are forked from the zygote and inherit its priority.
 */
async function reniceBrowser(): Promise<void> {
  if (!common.nice) return;
  for (const { pid } of await browserProcesses()) {
    try {
      os.setPriority(pid, common.nice);
    } catch {
      // ended meanwhile
    }
  }
}

/**
 * A new browser context opens a new window, and Chromium starts that window's own pages (its
 * omnibox pop-up is a WebUI renderer: seconds of CPU on this machine). A person opening the
 * dashboard does so in a browser that has started; wait (up to 10 s) until the browser has used
 * under 10 % of a core for 500 ms before navigating, so that its start-up is not counted as the
 * dashboard's.
 */
async function browserSettled(): Promise<void> {
  await reniceBrowser();
  const deadline = Date.now() + 10_000;
  let last = await browserCpuMs();
  while (Date.now() < deadline) {
    await sleep(500);
    const now = await browserCpuMs();
    if (now - last < 50) return;
    last = now;
  }
  log('  the browser did not settle within 10 s; measuring anyway');
}

/** Milestones of one cold load (ms from navigation start; NaN when absent). */
interface Phases {
  htmlEnd: number;
  jsStart: number;
  jsEnd: number;
  /** The app's entry module started running (performance.mark 'steward:app-start'). */
  appStart: number;
  /** The app's code (React and the screens) is loaded and starts rendering ('steward:mount'). */
  mount: number;
  refreshStart: number;
  refreshEnd: number;
  tasksStart: number;
  tasksEnd: number;
  /** The first task card entered the DOM. */
  firstCard: number;
  /** The frame showing it was painted (see OBSERVER). */
  interactive: number;
}

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
    browserCpuMs: number;
    phases: Phases;
  }[] = [];
  for (let i = 0; i < LOADS; i++) {
    // A new context: empty cache, no service worker; only the session (localStorage) carried over.
    const state = await signedInState(server, s);
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, storageState: state });
    await context.addInitScript(OBSERVER);
    const page = await context.newPage();
    await browserSettled();
    // The renderer's main-thread busy time (CPU, steadier than wall time on a loaded machine).
    const cdp = await context.newCDPSession(page);
    await cdp.send('Performance.enable');
    const serverCpu = (await procStats(server.pid)).cpuMs;
    const browserCpu = await browserCpuMs();
    await loadUntilInteractive(page, server.baseUrl);
    const browserCpuUsed = (await browserCpuMs()) - browserCpu;
    const { metrics } = await cdp.send('Performance.getMetrics');
    const metric = (name: string) => (metrics.find((m) => m.name === name)?.value ?? NaN) * 1000;
    const cpu = {
      mainThreadMs: metric('TaskDuration'),
      scriptMs: metric('ScriptDuration'),
      serverCpuMs: (await procStats(server.pid)).cpuMs - serverCpu,
      browserCpuMs: browserCpuUsed,
    };
    const figures = await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
      return {
        nav: {
          responseEnd: nav.responseEnd,
          domContentLoaded: nav.domContentLoadedEventEnd,
          transferSize: nav.transferSize || 0,
        },
        resources: (performance.getEntriesByType('resource') as PerformanceResourceTiming[]).map((r) => ({
          path: new URL(r.name).pathname,
          start: r.startTime,
          end: r.responseEnd,
          transferSize: r.transferSize || 0,
        })),
        marks: performance.getEntriesByType('mark').map((m) => ({ name: m.name, at: m.startTime })),
        firstCard: (window as unknown as { __bench: { firstTaskAt: number } }).__bench.firstTaskAt,
        interactive: (window as unknown as { __bench: { interactiveAt: number } }).__bench.interactiveAt,
      };
    });
    if (process.env.BENCH_WEB_WATERFALL)
      log(
        figures.resources
          .map((r) => `${Math.round(r.start)}–${Math.round(r.end)} ${r.path}`)
          .concat(figures.marks.map((m) => `${Math.round(m.at)} mark ${m.name}`))
          .concat([
            `${Math.round(figures.firstCard)} first card`,
            `${Math.round(figures.interactive)} interactive`,
          ])
          .join('\n'),
      );
    const span = (re: RegExp): [number, number] => {
      const r = figures.resources.find((x) => re.test(x.path));
      return r ? [r.start, r.end] : [NaN, NaN];
    };
    const [jsStart, jsEnd] = span(/^\/assets\/index-.*\.js$/);
    const [refreshStart, refreshEnd] = span(/^\/api\/v1\/auth\/refresh$/);
    const [tasksStart, tasksEnd] = span(/^\/api\/v1\/tasks$/);
    rows.push({
      interactive: figures.interactive,
      domContentLoaded: figures.nav.domContentLoaded,
      transferKb: figures.resources.reduce((sum, r) => sum + r.transferSize, figures.nav.transferSize) / 1024,
      ...cpu,
      phases: {
        htmlEnd: figures.nav.responseEnd,
        jsStart,
        jsEnd,
        appStart: figures.marks.find((m) => m.name === 'steward:app-start')?.at ?? NaN,
        mount: figures.marks.find((m) => m.name === 'steward:mount')?.at ?? NaN,
        refreshStart,
        refreshEnd,
        tasksStart,
        tasksEnd,
        firstCard: figures.firstCard,
        interactive: figures.interactive,
      },
    });
    await context.close();
  }
  return rows;
}

interface TraceEvent {
  name: string;
  ph: string;
  ts: number;
  dur?: number;
  pid: number;
  tid: number;
  args?: { name?: string; beginData?: { url?: string }; data?: { url?: string } };
}

/**
 * Where the renderer's main thread spends a cold load (BENCH_WEB_TRACE loads, traced; never part
 * of the timed loads: tracing slows the page). Self time per trace event name, from navigation
 * start to the first task card, summed over the main thread of the page's renderer.
 */
async function traceLoads(browser: Browser, server: Server, s: Seed, count: number) {
  const totals = new Map<string, number>();
  const threads = new Map<string, number>();
  let wall = 0;
  for (let i = 0; i < count; i++) {
    const context = await browser.newContext({
      viewport: { width: 1280, height: 800 },
      storageState: await signedInState(server, s),
    });
    await context.addInitScript(OBSERVER);
    const page = await context.newPage();
    await browserSettled();
    await browser.startTracing(page, {
      categories: [
        'devtools.timeline',
        'disabled-by-default-devtools.timeline',
        'v8.execute',
        'blink',
        'loading',
        'toplevel',
      ],
    });
    await loadUntilInteractive(page, server.baseUrl);
    const raw = await browser.stopTracing();
    if (process.env.BENCH_WEB_TRACE_FILE) await writeFile(process.env.BENCH_WEB_TRACE_FILE, raw);
    const interactive = await page.evaluate(
      () => (window as unknown as { __bench: { interactiveAt: number } }).__bench.interactiveAt,
    );
    await context.close();
    const events = (JSON.parse(raw.toString('utf8')) as { traceEvents: TraceEvent[] }).traceEvents;
    // The page's renderer main thread: the one that parsed the dashboard's HTML.
    const parse = events.find(
      (e) => e.name === 'ParseHTML' && e.ph === 'X' && e.args?.beginData?.url?.startsWith(server.baseUrl),
    );
    const request = events.find(
      (e) => e.name === 'ResourceSendRequest' && e.args?.data?.url?.startsWith(server.baseUrl),
    );
    if (!parse || !request) throw new Error('the trace has no load of the dashboard');
    const from = request.ts;
    const to = from + interactive * 1000;
    const within = events.filter((e) => e.ph === 'X' && e.dur !== undefined && e.ts >= from && e.ts < to);
    const names = new Map(
      events.filter((e) => e.ph === 'M' && e.name === 'process_name').map((e) => [e.pid, e.args?.name]),
    );
    const threadNames = new Map(
      events
        .filter((e) => e.ph === 'M' && e.name === 'thread_name')
        .map((e) => [`${e.pid}:${e.tid}`, e.args?.name]),
    );
    // Busy time of every thread: the union of its events.
    const byThread = new Map<string, TraceEvent[]>();
    for (const e of within) {
      const key = `${e.pid}:${e.tid}`;
      byThread.set(key, [...(byThread.get(key) ?? []), e]);
    }
    for (const [key, list] of byThread) {
      let busy = 0;
      let end = -Infinity;
      for (const e of list.sort((x, y) => x.ts - y.ts)) {
        const stop = Math.min(to, e.ts + e.dur!);
        if (stop > end) {
          busy += stop - Math.max(end, e.ts);
          end = stop;
        }
      }
      const pid = Number(key.split(':')[0]);
      const label = `${names.get(pid) ?? 'process'}${pid === parse.pid ? ' (the page)' : ''} / ${threadNames.get(key) ?? 'thread'}`;
      threads.set(label, (threads.get(label) ?? 0) + busy / 1000);
    }
    // Self time on the page's main thread: each event's duration less its direct children's.
    const stack: { e: TraceEvent; child: number }[] = [];
    const add = (name: string, us: number) => totals.set(name, (totals.get(name) ?? 0) + us / 1000);
    const close = (upTo: number) => {
      while (stack.length && stack.at(-1)!.e.ts + stack.at(-1)!.e.dur! <= upTo) {
        const top = stack.pop()!;
        add(top.e.name, Math.max(0, top.e.dur! - top.child));
        if (stack.length) stack.at(-1)!.child += top.e.dur!;
      }
    };
    const main = within
      .filter((e) => e.pid === parse.pid && e.tid === parse.tid)
      .sort((x, y) => x.ts - y.ts || y.dur! - x.dur!);
    for (const e of main) {
      close(e.ts);
      stack.push({ e, child: 0 });
    }
    close(Number.POSITIVE_INFINITY);
    wall += interactive;
  }
  const top = (m: Map<string, number>) =>
    [...m.entries()]
      .map(([name, ms]) => ({ name, ms: ms / count }))
      .filter((r) => r.ms >= 1)
      .sort((x, y) => y.ms - x.ms);
  return {
    loads: count,
    interactiveMs: wall / count,
    selfMsByEvent: top(totals),
    busyMsByThread: top(threads),
  };
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
    const live = SAMPLES ? await liveLatency(browser, server, s) : { fromCommit: [], fromAnswer: [] };
    const cpuAfter = await procStats(server.pid);
    log(`live: ${live.fromCommit.map(Math.round).join(', ')} ms`);
    const trace = TRACES ? await traceLoads(browser, server, s, TRACES) : undefined;
    const result = {
      started: started.toISOString(),
      finished: new Date().toISOString(),
      machine: { ...env, loadAverageAfter: os.loadavg(), nproc: os.cpus().length },
      chromium: browser.version(),
      interactiveMs: stats(loads.map((l) => l.interactive)),
      firstCardMs: stats(loads.map((l) => l.phases.firstCard)),
      browserCpuPerLoadMs: stats(loads.map((l) => l.browserCpuMs)),
      domContentLoadedMs: stats(loads.map((l) => l.domContentLoaded)),
      transferKb: Math.round(median(loads.map((l) => l.transferKb))),
      mainThreadTaskMs: stats(loads.map((l) => l.mainThreadMs)),
      scriptTaskMs: stats(loads.map((l) => l.scriptMs)),
      serverCpuPerLoadMs: stats(loads.map((l) => l.serverCpuMs)),
      liveFromCommitMs: stats(live.fromCommit),
      liveFromApiAnswerMs: stats(live.fromAnswer),
      serverCpuMs: cpuAfter.cpuMs - cpuBefore.cpuMs,
      phasesMs: Object.fromEntries(
        (Object.keys(loads[0]!.phases) as (keyof Phases)[]).map((k) => [
          k,
          Math.round(median(loads.map((l) => l.phases[k]))),
        ]),
      ) as Record<keyof Phases, number>,
      trace,
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
          'interactive, cold cache (navigation start → first task card with data painted)',
          result.interactiveMs,
          '< 1000',
        ),
        row('  first task card in the DOM (React commit)', result.firstCardMs, ''),
        row('DOMContentLoaded, cold cache', result.domContentLoadedMs, ''),
        row(
          'renderer main-thread task time until interactive (wall time of its tasks)',
          result.mainThreadTaskMs,
          '',
        ),
        row('  … of which script execution', result.scriptTaskMs, ''),
        row('server CPU per cold load (serve process, not PostgreSQL)', result.serverCpuPerLoadMs, ''),
        row('browser CPU per cold load (all Chromium processes)', result.browserCpuPerLoadMs, ''),
        ...(SAMPLES
          ? [
              row('live update: DB transaction time → visible', result.liveFromCommitMs, '≤ 300'),
              row('live update: API answer (after commit) → visible', result.liveFromApiAnswerMs, ''),
            ]
          : []),
        '',
        `transferred per cold load (median): ${result.transferKb} KB; server CPU during the measurements: ${result.serverCpuMs} ms`,
        '',
        'Cold load milestones (median ms from navigation start; each column its own median):',
        '',
        `| ${Object.keys(result.phasesMs).join(' | ')} |`,
        `|${Object.keys(result.phasesMs)
          .map(() => '---')
          .join('|')}|`,
        `| ${Object.values(result.phasesMs).join(' | ')} |`,
        ...(trace
          ? [
              '',
              `Renderer main thread until interactive, self time per trace event (mean of ${trace.loads} traced loads, interactive ${Math.round(trace.interactiveMs)} ms while traced):`,
              '',
              '| event | ms |',
              '|---|---|',
              ...trace.selfMsByEvent.slice(0, 25).map((r) => `| ${r.name} | ${r.ms.toFixed(1)} |`),
              '',
              'Busy time per browser thread over the same span (mean ms):',
              '',
              '| thread | ms |',
              '|---|---|',
              ...trace.busyMsByThread.slice(0, 12).map((r) => `| ${r.name} | ${r.ms.toFixed(1)} |`),
            ]
          : []),
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
