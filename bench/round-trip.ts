/**
 * Writes and CPU per transaction shaped like an intake batch, on a pool configured as Steward's
 * (`connect()`), one transaction at a time:
 *
 *   round trip 1: BEGIN, set_config, a statement with a ~2 kB JSON parameter, a one-row select
 *   round trip 2: a statement with a ~2 kB JSON parameter, a setting read, COMMIT
 *
 * Counts the process's write system calls (/proc/self/io, so Linux only), its CPU, and the CPU of the
 * PostgreSQL backend serving it (/proc/<pid>/stat, so the server must run on this machine).
 *
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench:round-trip
 *
 * Without BENCH_DATABASE_URL it starts an embedded PostgreSQL in a temporary directory.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres } from '../packages/db/src/embedded-postgres.ts';
import { connect } from '../packages/db/src/database.ts';
import { intEnv, log, median } from './support.ts';

const TRANSACTIONS = intEnv('BENCH_TRANSACTIONS', 4000, 100);
const RUNS = intEnv('BENCH_RUNS', 3, 1);
const first = JSON.stringify(Array.from({ length: 8 }, (_, i) => ({ i, body: 'x'.repeat(200) })));
const second = JSON.stringify(Array.from({ length: 8 }, (_, i) => ({ i, hash: 'y'.repeat(250) })));

async function writeCalls(): Promise<number> {
  return Number(/^syscw: (\d+)$/m.exec(await readFile('/proc/self/io', 'utf8'))![1]);
}

/** User plus system CPU of a process, in microseconds (clock ticks of 10 ms). */
async function cpuOf(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

interface Sample {
  writes: number;
  nodeUs: number;
  backendUs: number;
  wallUs: number;
}

async function measure(url: string): Promise<Sample> {
  const sql = connect(url, { max: 1 });
  try {
    const pid = (await sql<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!.pid;
    const transaction = async () => {
      const c = await sql.reserve();
      try {
        await Promise.all([
          c.unsafe('begin'),
          c`select set_config('app.tenant_id', ${'bench'}, true)`,
          c`select ${first}::jsonb is not null as ok`,
          c`select 1 as head`,
        ]);
        await Promise.all([
          c`select ${second}::jsonb is not null as ok`,
          c`select current_setting('app.tenant_id', true) as v`,
          c.unsafe('commit'),
        ]);
      } finally {
        c.release();
      }
    };
    for (let i = 0; i < 500; i++) await transaction(); // prepared statements, warm code
    const [w0, b0, c0, t0] = [await writeCalls(), await cpuOf(pid), process.cpuUsage(), performance.now()];
    for (let i = 0; i < TRANSACTIONS; i++) await transaction();
    const [t1, c1, b1, w1] = [performance.now(), process.cpuUsage(c0), await cpuOf(pid), await writeCalls()];
    return {
      writes: (w1 - w0) / TRANSACTIONS,
      nodeUs: (c1.user + c1.system) / TRANSACTIONS,
      backendUs: (b1 - b0) / TRANSACTIONS,
      wallUs: ((t1 - t0) * 1000) / TRANSACTIONS,
    };
  } finally {
    await sql.end();
  }
}

const line = (label: string, s: Sample) =>
  `${label}: writes/tx ${s.writes.toFixed(2)}, CPU µs/tx node ${s.nodeUs.toFixed(0)} backend ${s.backendUs.toFixed(0)}, wall µs/tx ${s.wallUs.toFixed(0)}`;

let url = process.env.BENCH_DATABASE_URL;
let cleanup = async () => {};
if (!url) {
  const dir = await mkdtemp(path.join(tmpdir(), 'steward-round-trip-'));
  const pg = await startEmbeddedPostgres({ dataDir: dir, port: 0, log });
  url = pg.url;
  cleanup = async () => {
    await pg.stop();
    await rm(dir, { recursive: true, force: true });
  };
}
try {
  log(`${TRANSACTIONS} transactions per run, ${RUNS} run(s)`);
  const runs: Sample[] = [];
  for (let r = 0; r < RUNS; r++) {
    runs.push(await measure(url));
    log(`  ${line(`run ${r + 1}`, runs[r]!)}`);
  }
  const m = (k: keyof Sample) => median(runs.map((s) => s[k]));
  log(
    line('median', {
      writes: m('writes'),
      nodeUs: m('nodeUs'),
      backendUs: m('backendUs'),
      wallUs: m('wallUs'),
    }),
  );
} finally {
  await cleanup();
}
