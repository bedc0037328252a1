import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { verifyTenantAudit } from '@steward/core/audit/audit-service';
import { getTenantBySlug } from '@steward/core/tenants/tenant-service';
import { createBackup, findPgTool, restoreBackup } from '@steward/db/backup';
import { connect } from '@steward/db/database';
import { withDatabase } from '@steward/db/embedded-postgres';
import { testDatabaseName } from '@steward/db/testing/test-database';
import { loadConfig } from '../config.ts';
import { openRuntime } from '../runtime.ts';
import { cliFor, errorOf, jsonOf } from '../testing/cli-runner.ts';
import {
  addUser,
  createTenantFixture,
  createTestApp,
  TEST_MASTER_KEY,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

let t: TestApp;
let a: TenantFixture;
let work: string;
let targetUrl = '';
let targetName = '';
let copyUrl = '';
let copyName = '';
let toolsProblem: string | undefined;

async function serverMajor(url: string): Promise<number> {
  const sql = connect(url, { max: 1 });
  try {
    const [r] = await sql<{ n: string }[]>`select current_setting('server_version_num') as n`;
    return Math.floor(Number(r!.n) / 10000);
  } finally {
    await sql.end();
  }
}

const { adminUrl } = inject('pg');
try {
  const major = await serverMajor(withDatabase(adminUrl, 'postgres'));
  await findPgTool('pg_dump', major);
  await findPgTool('pg_restore', major);
} catch (error) {
  toolsProblem = (error as Error).message;
  console.warn(
    `backups here use the built-in COPY format, not pg_dump: ${toolsProblem} (apt package postgresql-client)`,
  );
}

/** The CLI against another database and data directory (the restore target). */
const cliAt = (ownerUrl: string, dataDir: string) =>
  cliFor({ db: { ownerUrl }, config: { dataDir } } as unknown as TestApp);

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'steward-backup-test-'));
  t = await createTestApp();
  a = await createTenantFixture(t, 'backup-a');
  await addUser(t, a.tenant.id, 'member@backup-a.test', 'member');
  // Data-directory files: a tenant inbox file and a signed audit checkpoint.
  const inbox = path.join(t.config.dataDir, 'tenants', 'backup-a', 'inbox');
  await mkdir(inbox, { recursive: true });
  await writeFile(path.join(inbox, 'note.md'), '# kept\n');
  await t.runtime.checkpointer.flush([a.tenant.id]);
  targetName = testDatabaseName();
  const admin = connect(withDatabase(adminUrl, 'postgres'), { max: 1 });
  try {
    await admin.unsafe(`create database ${targetName}`);
    copyName = testDatabaseName();
    await admin.unsafe(`create database ${copyName}`);
  } finally {
    await admin.end();
  }
  targetUrl = withDatabase(adminUrl, targetName);
  copyUrl = withDatabase(adminUrl, copyName);
});
afterAll(async () => {
  await t?.close();
  await rm(work, { recursive: true, force: true });
  const admin = connect(withDatabase(adminUrl, 'postgres'), { max: 1 });
  await admin.unsafe(`drop database if exists ${targetName} with (force)`).catch(() => {});
  await admin.unsafe(`drop database if exists ${copyName} with (force)`).catch(() => {});
  await admin.end();
});

describe('steward backup and restore', () => {
  it('backs up, then restores into a fresh database and data directory where the data verifies', async () => {
    const archive = path.join(work, 'steward.tar.gz');
    const backup = await cliFor(t)('backup', '--out', archive, '--json');
    const out = jsonOf<{
      file: string;
      schemaVersion: number;
      database: string;
      includesMasterKey: boolean;
      warnings: string[];
    }>(backup);
    expect(out.file).toBe(archive);
    // pg_dump where one as new as the server exists, else the built-in format (with a warning).
    expect(out.database).toBe(toolsProblem ? 'copy' : 'custom');
    if (toolsProblem) expect(backup.stderr).toContain('built-in COPY format');
    expect(out.schemaVersion).toBeGreaterThanOrEqual(13);
    expect(out.includesMasterKey).toBe(false);
    expect(backup.stderr).toContain('master key is not in this backup');
    expect(existsSync(archive)).toBe(true);

    const listed: string[] = [];
    await tar.list({ file: archive, onReadEntry: (e) => listed.push(e.path) });
    expect(listed).toEqual(
      expect.arrayContaining([
        'manifest.json',
        toolsProblem ? 'database/sequences.json' : 'database.dump',
        'data/tenants/backup-a/inbox/note.md',
        'data/audit/checkpoints.jsonl',
      ]),
    );
    expect(listed.some((p) => p.startsWith('data/postgres'))).toBe(false);

    const freshDir = path.join(work, 'restored');
    const restore = await cliAt(targetUrl, freshDir)('restore', '--in', archive, '--json');
    const restored = jsonOf<{ restored: boolean; schemaVersion: number; files: number }>(restore);
    expect(restored).toMatchObject({ restored: true, schemaVersion: out.schemaVersion });
    expect(await readFile(path.join(freshDir, 'tenants', 'backup-a', 'inbox', 'note.md'), 'utf8')).toBe(
      '# kept\n',
    );

    const rt = await openRuntime(
      loadConfig({
        DATABASE_URL: targetUrl,
        STEWARD_DATA_DIR: freshDir,
        STEWARD_MASTER_KEY: TEST_MASTER_KEY,
      }),
    );
    try {
      const tenant = await getTenantBySlug(rt.res, 'backup-a');
      expect(tenant.id).toBe(a.tenant.id);
      const verify = await verifyTenantAudit(rt.res, tenant.id);
      expect(verify.ok).toBe(true);
      expect(verify.checked).toBeGreaterThan(2);
      expect(verify.checkpointSeq).toBeGreaterThan(0);
      const emails = await rt.res.db.withTenant(
        tenant.id,
        (tx) =>
          tx<{ email: string }[]>`
          select u.email from memberships m join users u on u.id = m.user_id where m.tenant_id = ${tenant.id} order by u.email`,
      );
      expect(emails.map((e) => e.email)).toEqual(['member@backup-a.test', 'owner@backup-a.test']);
      // The job queue schema came along too.
      const [gw] = await rt.res.db.withSystemAccess(
        (tx) =>
          tx<{ n: number }[]>`select count(*)::int as n from pg_tables where schemaname = 'graphile_worker'`,
      );
      expect(gw!.n).toBeGreaterThan(0);
    } finally {
      await rt.close();
    }

    // Not over data without --force.
    const again = errorOf(await cliAt(targetUrl, freshDir)('restore', '--in', archive, '--json'));
    expect(again.message).toContain('DATABASE_NOT_EMPTY');
    const forced = await cliAt(targetUrl, freshDir)('restore', '--in', archive, '--force', '--json');
    expect(jsonOf(forced)).toMatchObject({ restored: true });
  }, 120_000);

  it('refuses an archive whose files do not match the manifest, and a schema newer than it knows', async () => {
    const archive = path.join(work, 'with-key.tar.gz');
    const backup = jsonOf<{ includesMasterKey: boolean }>(
      await cliFor(t)('backup', '--out', archive, '--include-master-key', '--json'),
    );
    // The test app's key comes from STEWARD_MASTER_KEY: there is no master.key file to include.
    expect(backup.includesMasterKey).toBe(false);
    const unpacked = path.join(work, 'unpacked');
    await mkdir(unpacked, { recursive: true });
    await tar.extract({ file: archive, cwd: unpacked });
    const files = ['manifest.json', toolsProblem ? 'database' : 'database.dump', 'data'];
    await writeFile(path.join(unpacked, 'data', 'tenants', 'backup-a', 'inbox', 'note.md'), '# changed\n');
    const tampered = path.join(work, 'tampered.tar.gz');
    await tar.create({ gzip: true, file: tampered, cwd: unpacked }, files);
    const emptyDir = path.join(work, 'never');
    const bad = errorOf(await cliAt(targetUrl, emptyDir)('restore', '--in', tampered, '--force', '--json'));
    expect(bad.message).toContain('BACKUP_CORRUPT');
    expect(bad.message).toContain('note.md');

    await writeFile(path.join(unpacked, 'data', 'tenants', 'backup-a', 'inbox', 'note.md'), '# kept\n');
    const manifest = JSON.parse(await readFile(path.join(unpacked, 'manifest.json'), 'utf8')) as {
      schemaVersion: number;
    };
    manifest.schemaVersion = 9999;
    await writeFile(path.join(unpacked, 'manifest.json'), JSON.stringify(manifest));
    const future = path.join(work, 'future.tar.gz');
    await tar.create({ gzip: true, file: future, cwd: unpacked }, files);
    const newer = errorOf(await cliAt(targetUrl, emptyDir)('restore', '--in', future, '--force', '--json'));
    expect(newer.message).toContain('SCHEMA_TOO_NEW');
    expect(existsSync(emptyDir)).toBe(false);
  }, 120_000);

  it('includes master.key only when asked, and restores it private', async () => {
    const dir = path.join(work, 'with-key-dir');
    await mkdir(path.join(dir, 'postgres'), { recursive: true });
    await writeFile(path.join(dir, 'master.key'), 'b'.repeat(64) + '\n', { mode: 0o600 });
    await writeFile(path.join(dir, 'postgres', 'PG_VERSION'), '17\n');
    const without = await createBackup({
      ownerUrl: t.db.ownerUrl,
      dataDir: dir,
      out: path.join(work, 'no-key.tar.gz'),
      includeMasterKey: false,
      stewardVersion: 'test',
    });
    expect(without.manifest.includesMasterKey).toBe(false);
    expect(without.manifest.files.map((f) => f.path)).not.toContain('data/master.key');
    expect(without.warnings.join()).toContain('--include-master-key');
    const withKey = await createBackup({
      ownerUrl: t.db.ownerUrl,
      dataDir: dir,
      out: path.join(work, 'key.tar.gz'),
      includeMasterKey: true,
      stewardVersion: 'test',
    });
    expect(withKey.manifest.includesMasterKey).toBe(true);
    expect(withKey.manifest.files.map((f) => f.path)).toContain('data/master.key');
    // Never the embedded cluster.
    expect(withKey.manifest.files.some((f) => f.path.startsWith('data/postgres'))).toBe(false);

    const into = path.join(work, 'key-restored');
    await mkdir(into, { recursive: true });
    await writeFile(path.join(into, 'master.key'), 'c'.repeat(64) + '\n');
    const restored = await restoreBackup({
      file: withKey.file,
      ownerUrl: targetUrl,
      dataDir: into,
      force: true,
    });
    expect(restored.manifest.includesMasterKey).toBe(true);
    expect(await readFile(path.join(into, 'master.key'), 'utf8')).toBe('b'.repeat(64) + '\n');
    expect((await stat(path.join(into, 'master.key'))).mode & 0o077).toBe(0);
  }, 120_000);
});

/** What verifies after a restore: the tenant, its members, its audit chain against its checkpoint. */
async function expectRestored(ownerUrl: string, dataDir: string) {
  const rt = await openRuntime(
    loadConfig({ DATABASE_URL: ownerUrl, STEWARD_DATA_DIR: dataDir, STEWARD_MASTER_KEY: TEST_MASTER_KEY }),
  );
  try {
    const tenant = await getTenantBySlug(rt.res, 'backup-a');
    expect(tenant.id).toBe(a.tenant.id);
    const verify = await verifyTenantAudit(rt.res, tenant.id);
    expect(verify.ok).toBe(true);
    expect(verify.checked).toBeGreaterThan(2);
    expect(verify.checkpointSeq).toBeGreaterThan(0);
    const emails = await rt.res.db.withTenant(
      tenant.id,
      (tx) =>
        tx<{ email: string }[]>`
        select u.email from memberships m join users u on u.id = m.user_id where m.tenant_id = ${tenant.id} order by u.email`,
    );
    expect(emails.map((e) => e.email)).toEqual(['member@backup-a.test', 'owner@backup-a.test']);
  } finally {
    await rt.close();
  }
}

describe('backup without pg_dump (the built-in COPY format)', () => {
  it('backs up every table in one snapshot and restores it into a fresh database', async () => {
    const backup = await createBackup({
      ownerUrl: t.db.ownerUrl,
      dataDir: t.config.dataDir,
      out: path.join(work, 'copy.tar.gz'),
      includeMasterKey: false,
      stewardVersion: 'test',
      method: 'copy',
    });
    expect(backup.manifest.database.format).toBe('copy');
    const paths = backup.manifest.files.map((f) => f.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'database/public.audit_log.copy',
        'database/public.schema_migrations.copy',
        'database/sequences.json',
        'data/audit/checkpoints.jsonl',
      ]),
    );
    expect(paths.some((p) => p.startsWith('database/graphile_worker.'))).toBe(true);
    const dir = path.join(work, 'copy-restored');
    const restored = await restoreBackup({
      file: backup.file,
      ownerUrl: copyUrl,
      dataDir: dir,
      force: false,
    });
    expect(restored.manifest.schemaVersion).toBe(backup.manifest.schemaVersion);
    await expectRestored(copyUrl, dir);
    // The same ledger of migrations as the source.
    const sql = connect(copyUrl, { max: 1 });
    try {
      const [row] = await sql<{ n: number }[]>`select count(*)::int as n from schema_migrations`;
      const [src] = await t.db.owner<{ n: number }[]>`select count(*)::int as n from schema_migrations`;
      expect(row!.n).toBe(src!.n);
    } finally {
      await sql.end();
    }
    await expect(
      restoreBackup({ file: backup.file, ownerUrl: copyUrl, dataDir: dir, force: false }),
    ).rejects.toThrow(/already holds Steward data/);
  }, 120_000);
});
