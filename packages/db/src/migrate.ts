import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Queryable, Sql } from './database.ts';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations/', import.meta.url));

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (file) => {
      const sql = await readFile(path.join(dir, file), 'utf8');
      return {
        version: Number(file.slice(0, 4)),
        name: file.replace(/\.sql$/, ''),
        sql,
        checksum: createHash('sha256').update(sql).digest('hex'),
      };
    }),
  );
}

export interface MigrateResult {
  applied: string[];
  current: number;
}

/**
 * Apply pending migrations as the owner role. A transaction-level advisory lock makes concurrent
 * runners (two processes starting at once) queue up: the second sees the first one's work and
 * applies nothing. Each run applies all pending files in one transaction.
 */
export async function migrate(owner: Sql, migrations?: Migration[]): Promise<MigrateResult> {
  const all = migrations ?? (await loadMigrations());
  return owner.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(7283910455)`;
    await tx`create table if not exists schema_migrations (
      version integer primary key,
      name text not null,
      checksum text not null,
      applied_at timestamptz not null default now()
    )`;
    const done = await tx<{ version: number; name: string; checksum: string }[]>`
      select version, name, checksum from schema_migrations order by version`;
    const byVersion = new Map(done.map((m) => [m.version, m]));
    const applied: string[] = [];
    for (const m of all) {
      const prior = byVersion.get(m.version);
      if (prior) {
        if (prior.checksum !== m.checksum) {
          throw new Error(`migration ${m.name} was changed after it was applied (checksum differs)`);
        }
        continue;
      }
      await tx.unsafe(m.sql);
      await tx`insert into schema_migrations (version, name, checksum) values (${m.version}, ${m.name}, ${m.checksum})`;
      applied.push(m.name);
    }
    const current = all.length ? Math.max(...all.map((m) => m.version)) : 0;
    return { applied, current };
  }) as Promise<MigrateResult>;
}

/** The highest applied version, or 0 when the schema was never migrated. */
export async function appliedVersion(sql: Queryable): Promise<number> {
  const [row] = await sql<
    { exists: boolean }[]
  >`select to_regclass('public.schema_migrations') is not null as exists`;
  if (!row?.exists) return 0;
  const [v] = await sql<{ max: number | null }[]>`select max(version) as max from schema_migrations`;
  return v?.max ?? 0;
}
