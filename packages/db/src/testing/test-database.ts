import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { connect, type Sql } from '../database.ts';
import { withDatabase } from '../embedded-postgres.ts';

export interface TestDatabase {
  /** Owner (superuser) URL of this file's own database. */
  ownerUrl: string;
  name: string;
  /** An owner connection, for setting up and for tampering in tests. */
  owner: Sql;
  drop(): Promise<void>;
}

/** A fresh, migrated database for one test file, cloned from the run's template. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const { adminUrl, template } = inject('pg');
  const pid = template.replace('steward_test_tpl_', '');
  const name = `steward_test_${pid}_${randomBytes(4).toString('hex')}`;
  const admin = connect(withDatabase(adminUrl, 'postgres'), { max: 1 });
  try {
    await admin.unsafe(`create database ${name} template ${template}`);
  } finally {
    await admin.end();
  }
  const ownerUrl = withDatabase(adminUrl, name);
  const owner = connect(ownerUrl, { max: 2 });
  return {
    ownerUrl,
    name,
    owner,
    async drop() {
      await owner.end();
      const a = connect(withDatabase(adminUrl, 'postgres'), { max: 1 });
      try {
        await a.unsafe(`drop database if exists ${name} with (force)`);
      } finally {
        await a.end();
      }
    },
  };
}
