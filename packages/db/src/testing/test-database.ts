import { hkdfSync, randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { connect, type Sql } from '../database.ts';
import { withDatabase } from '../embedded-postgres.ts';
import { ensureRuntimeRole } from '../runtime-role.ts';

/** The master key every test uses (apps/server/src/testing/test-app.ts has the same value). */
export const TEST_MASTER_KEY = 'a'.repeat(64);

/**
 * The password openRuntime gives the cluster-wide runtime role under TEST_MASTER_KEY (see
 * runtimeRolePassword in apps/server/src/runtime.ts; apps/server/src/runtime.test.ts checks that they
 * agree). Every test must use this one: another password would lock out test files running alongside.
 */
export const TEST_RUNTIME_PASSWORD = Buffer.from(
  hkdfSync(
    'sha256',
    Buffer.from(TEST_MASTER_KEY, 'hex'),
    Buffer.alloc(0),
    'steward:database-runtime-role',
    32,
  ),
).toString('hex');

/** A database name that the run's teardown drops even when a test file does not. */
export function testDatabaseName(): string {
  const { template } = inject('pg');
  const pid = template.replace('steward_test_tpl_', '');
  return `steward_test_${pid}_${randomBytes(4).toString('hex')}`;
}

/** Runtime-role URL (steward_runtime, not owner, not superuser) of a test database. */
export function runtimeUrl(db: TestDatabase): Promise<string> {
  return ensureRuntimeRole(db.owner, db.ownerUrl, TEST_RUNTIME_PASSWORD);
}

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
  const name = testDatabaseName();
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
