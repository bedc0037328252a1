import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { connect } from '../database.ts';
import { startEmbeddedPostgres, withDatabase, type EmbeddedPostgres } from '../embedded-postgres.ts';
import { migrateJobQueue } from '../job-queue-schema.ts';
import { migrate } from '../migrate.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    pg: { adminUrl: string; template: string; external: boolean };
  }
}

let embedded: EmbeddedPostgres | undefined;
let dataDir: string | undefined;
let adminUrl = '';
let template = '';

/**
 * One PostgreSQL for the whole run: the machine's (TEST_DATABASE_URL or DATABASE_URL) or an
 * embedded one in a temporary directory. A template database is migrated once; each test file
 * clones it (CREATE DATABASE ... TEMPLATE), which takes milliseconds.
 */
export async function setup(project: TestProject): Promise<void> {
  const external = process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL;
  if (external) {
    adminUrl = external;
  } else {
    dataDir = await mkdtemp(path.join(tmpdir(), 'steward-test-pg-'));
    embedded = await startEmbeddedPostgres({ dataDir, port: 0 });
    adminUrl = embedded.url;
  }
  template = `steward_test_tpl_${process.pid}`;
  const admin = connect(withDatabase(adminUrl, 'postgres'), { max: 1 });
  try {
    await admin.unsafe(`drop database if exists ${template}`);
    await admin.unsafe(`create database ${template}`);
  } finally {
    await admin.end();
  }
  const owner = connect(withDatabase(adminUrl, template), { max: 1 });
  try {
    await migrate(owner);
    await migrateJobQueue(withDatabase(adminUrl, template), owner);
  } finally {
    await owner.end();
  }
  process.stdout.write(
    `test database: ${external ? 'external PostgreSQL' : 'embedded PostgreSQL'} (template ${template})\n`,
  );
  project.provide('pg', { adminUrl, template, external: !!external });
}

export async function teardown(): Promise<void> {
  const admin = connect(withDatabase(adminUrl, 'postgres'), { max: 1 });
  try {
    const dbs = await admin<{ datname: string }[]>`
      select datname from pg_database where datname like ${`steward_test_%${process.pid}%`}`;
    for (const { datname } of dbs) await admin.unsafe(`drop database if exists ${datname} with (force)`);
  } finally {
    await admin.end();
  }
  await embedded?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
}
