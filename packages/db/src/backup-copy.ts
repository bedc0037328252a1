import { createReadStream, createWriteStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { connect, type Sql } from './database.ts';
import { migrateJobQueue } from './job-queue-schema.ts';
import { loadMigrations, migrate } from './migrate.ts';

/**
 * The built-in database format of a backup, for installations without a pg_dump as new as their
 * server (the embedded PostgreSQL ships none): every table of Steward's schemas (public and
 * graphile_worker) as binary COPY, read in one REPEATABLE READ snapshot, plus the sequences.
 * The schema itself is not stored: restore applies the same migrations (up to the backup's schema
 * version) and the job queue's, then loads the rows.
 */

export const COPY_SCHEMAS = ['public', 'graphile_worker'];
export const COPY_DIR = 'database';
const SEQUENCES = 'sequences.json';

const quote = (id: string) => `"${id.replace(/"/g, '""')}"`;

export interface CopiedTable {
  schema: string;
  table: string;
  file: string;
}

interface SequenceValue {
  schema: string;
  name: string;
  value: string | null;
}

/** Write every table and the sequences into `dir/database/`; returns the files (relative to dir). */
export async function dumpByCopy(ownerUrl: string, dir: string): Promise<string[]> {
  const sql = connect(ownerUrl, { max: 1, applicationName: 'steward-backup' });
  const files: string[] = [];
  try {
    await sql.begin('isolation level repeatable read read only', async (tx) => {
      const tables = await tx<{ schema: string; table: string }[]>`
        select n.nspname as schema, c.relname as table from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        where c.relkind = 'r' and n.nspname = any(${COPY_SCHEMAS}) order by 1, 2`;
      const listed: CopiedTable[] = [];
      for (const t of tables) {
        const rel = `${COPY_DIR}/${t.schema}.${t.table}.copy`;
        const readable = await tx
          .unsafe(`copy ${quote(t.schema)}.${quote(t.table)} to stdout (format binary)`)
          .readable();
        await pipeline(readable, createWriteStream(path.join(dir, rel)));
        listed.push({ ...t, file: rel });
        files.push(rel);
      }
      const sequences = await tx<SequenceValue[]>`
        select schemaname as schema, sequencename as name, last_value::text as value from pg_sequences
        where schemaname = any(${COPY_SCHEMAS}) order by 1, 2`;
      await writeFile(
        path.join(dir, COPY_DIR, SEQUENCES),
        JSON.stringify({ tables: listed, sequences }, null, 2),
      );
      files.push(`${COPY_DIR}/${SEQUENCES}`);
    });
  } finally {
    await sql.end();
  }
  return files;
}

/** Recreate the schema (migrations up to `schemaVersion`, the job queue) and load the rows. */
export async function restoreByCopy(ownerUrl: string, dir: string, schemaVersion: number): Promise<void> {
  const { tables, sequences } = JSON.parse(await readFile(path.join(dir, COPY_DIR, SEQUENCES), 'utf8')) as {
    tables: CopiedTable[];
    sequences: SequenceValue[];
  };
  const owner = connect(ownerUrl, { max: 1, applicationName: 'steward-restore' });
  try {
    await migrate(
      owner,
      (await loadMigrations()).filter((m) => m.version <= schemaVersion),
    );
    await migrateJobQueue(ownerUrl, owner);
    const [role] = await owner<{ superuser: boolean }[]>`
      select rolsuper as superuser from pg_roles where rolname = current_user`;
    await owner.begin(async (tx) => {
      // Rows go in as they were: no triggers, no foreign-key checks (a superuser can say so);
      // otherwise parents are loaded before the tables that reference them.
      if (role?.superuser) await tx`set local session_replication_role = replica`;
      const all = tables.map((t) => `${quote(t.schema)}.${quote(t.table)}`);
      if (all.length) await tx.unsafe(`truncate table ${all.join(', ')}`);
      for (const t of role?.superuser ? tables : await parentsFirst(tx as unknown as Sql, tables)) {
        const writable = await tx
          .unsafe(`copy ${quote(t.schema)}.${quote(t.table)} from stdin (format binary)`)
          .writable();
        await pipeline(createReadStream(path.join(dir, t.file)), writable);
      }
      for (const s of sequences) {
        const name = `${quote(s.schema)}.${quote(s.name)}`;
        if (s.value === null) await tx`select setval(${name}::regclass, 1, false)`;
        else await tx`select setval(${name}::regclass, ${s.value}::bigint, true)`;
      }
    });
  } finally {
    await owner.end();
  }
}

/** Tables ordered so that every referenced table comes before the tables that reference it. */
async function parentsFirst(tx: Sql, tables: CopiedTable[]) {
  const edges = await tx<{ child: string; parent: string }[]>`
    select (select nspname from pg_namespace where oid = c.relnamespace) || '.' || c.relname as child,
           (select nspname from pg_namespace where oid = p.relnamespace) || '.' || p.relname as parent
    from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_class p on p.oid = k.confrelid
    where k.contype = 'f' and k.conrelid <> k.confrelid`;
  const key = (t: CopiedTable) => `${t.schema}.${t.table}`;
  const ordered: CopiedTable[] = [];
  const done = new Set<string>();
  const visit = (t: CopiedTable, stack: Set<string>) => {
    if (done.has(key(t)) || stack.has(key(t))) return;
    stack.add(key(t));
    for (const e of edges.filter((x) => x.child === key(t))) {
      const parent = tables.find((x) => key(x) === e.parent);
      if (parent) visit(parent, stack);
    }
    done.add(key(t));
    ordered.push(t);
  };
  for (const t of tables) visit(t, new Set());
  return ordered;
}
