import { cp, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connect, type Sql } from './database.ts';
import { withDatabase } from './embedded-postgres.ts';
import { appliedVersion, loadMigrations, migrate, MIGRATIONS_DIR, type Migration } from './migrate.ts';
import { testDatabaseName } from './testing/test-database.ts';

let name: string;
let url: string;
const pools: Sql[] = [];
const open = (max = 1) => {
  const sql = connect(url, { max });
  pools.push(sql);
  return sql;
};
let migrations: Migration[];

/** A fresh, empty database (not cloned from the migrated template). */
beforeAll(async () => {
  const { adminUrl } = inject('pg');
  name = testDatabaseName();
  const admin = connect(withDatabase(adminUrl, 'postgres'), { max: 1 });
  try {
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end();
  }
  url = withDatabase(adminUrl, name);
  migrations = await loadMigrations();
});

afterAll(async () => {
  await Promise.all(pools.map((p) => p.end()));
  const admin = connect(withDatabase(inject('pg').adminUrl, 'postgres'), { max: 1 });
  try {
    await admin.unsafe(`drop database if exists ${name} with (force)`);
  } finally {
    await admin.end();
  }
});

describe('migrate', () => {
  it('reads the numbered files in order, each with a checksum', async () => {
    expect(migrations.length).toBeGreaterThan(0);
    expect(migrations[0]!.name).toBe('0001_foundation');
    expect(migrations.map((m) => m.version)).toEqual(
      [...migrations.map((m) => m.version)].sort((a, b) => a - b),
    );
    for (const m of migrations) expect(m.checksum).toMatch(/^[0-9a-f]{64}$/);
  });

  it('two runners on an empty database: both succeed and every migration is applied once', async () => {
    const before = open();
    expect(await appliedVersion(before)).toBe(0);
    const [first, second] = await Promise.all([migrate(open()), migrate(open())]);
    const all = migrations.map((m) => m.name);
    // One runner applied everything, the other waited for it and found nothing to do.
    expect([first.applied, second.applied].sort((a, b) => a.length - b.length)).toEqual([[], all]);
    expect(first.current).toBe(migrations.at(-1)!.version);
    expect(second.current).toBe(migrations.at(-1)!.version);
    const rows = await before<{ version: number; n: string }[]>`
      select version, count(*) over (partition by version) as n from schema_migrations order by version`;
    expect(rows.map((r) => r.version)).toEqual(migrations.map((m) => m.version));
    expect(rows.every((r) => Number(r.n) === 1)).toBe(true);
    expect(await appliedVersion(before)).toBe(migrations.at(-1)!.version);
  });

  it('a third run applies nothing', async () => {
    expect(await migrate(open())).toEqual({ applied: [], current: migrations.at(-1)!.version });
  });

  it('applies only a new migration, with concurrent runners', async () => {
    const extra: Migration = {
      version: 9000,
      name: '9000_test_extra',
      sql: 'CREATE TABLE migrate_test_extra (id int PRIMARY KEY);',
      checksum: 'e'.repeat(64),
    };
    const results = await Promise.all([1, 2, 3].map(() => migrate(open(), [...migrations, extra])));
    expect(results.map((r) => r.applied).sort((a, b) => a.length - b.length)).toEqual([
      [],
      [],
      ['9000_test_extra'],
    ]);
    const [row] = await open()<
      { n: string }[]
    >`select count(*) as n from schema_migrations where version = 9000`;
    expect(Number(row!.n)).toBe(1);
  });

  it('refuses a migration whose file changed after it was applied, naming it', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'steward-migrations-'));
    try {
      await cp(MIGRATIONS_DIR, dir, { recursive: true });
      const file = (await readdir(dir)).find((f) => f.startsWith('0001_'))!;
      await writeFile(path.join(dir, file), '-- edited after it was applied\n', { flag: 'a' });
      const edited = await loadMigrations(dir);
      expect(edited[0]!.checksum).not.toBe(migrations[0]!.checksum);
      await expect(migrate(open(), edited)).rejects.toThrow(
        'migration 0001_foundation was changed after it was applied (checksum differs)',
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rolls back every file of a run when one fails', async () => {
    const good: Migration = {
      version: 9001,
      name: '9001_good',
      sql: 'CREATE TABLE migrate_test_good (id int);',
      checksum: 'a'.repeat(64),
    };
    const bad: Migration = {
      version: 9002,
      name: '9002_bad',
      sql: 'CREATE TABLE oops (',
      checksum: 'b'.repeat(64),
    };
    await expect(migrate(open(), [...migrations, good, bad])).rejects.toThrow();
    const sql = open();
    const [row] = await sql<{ t: string | null }[]>`select to_regclass('migrate_test_good')::text as t`;
    expect(row!.t).toBeNull();
    const [v] = await sql<{ n: string }[]>`select count(*) as n from schema_migrations where version > 9000`;
    expect(Number(v!.n)).toBe(0);
  });
});
