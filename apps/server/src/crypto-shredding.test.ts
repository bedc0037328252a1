import { existsSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createConnection, resolveConnection, vaultFor } from '@steward/core/connections/connection-service';
import { KEYSTORE_DIR } from '@steward/core/keys/tenant-keystore';
import { SYSTEM_ACTOR } from '@steward/core/resources';
import { SecretUnreadableError } from '@steward/core/secrets/envelope';
import { createBackup, restoreBackup } from '@steward/db/backup';
import { connect } from '@steward/db/database';
import { withDatabase } from '@steward/db/embedded-postgres';
import { testDatabaseName } from '@steward/db/testing/test-database';
import { loadConfig } from './config.ts';
import { openRuntime } from './runtime.ts';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  TEST_MASTER_KEY,
  type TenantFixture,
  type TestApp,
} from './testing/test-app.ts';

/**
 * Crypto-shredding against database backups with the default (local) key provider: a backup taken
 * before a tenant's erasure, restored into a fresh database with the installation's master key and
 * its (separately kept) keystore, does not decrypt the erased tenant's data; another tenant's does.
 */

let t: TestApp;
let work: string;
let gone: TenantFixture;
let kept: TenantFixture;
let targetName = '';
const { adminUrl } = inject('pg');

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'steward-shred-test-'));
  t = await createTestApp();
  gone = await createTenantFixture(t, 'shred-gone');
  kept = await createTenantFixture(t, 'shred-kept');
  for (const fx of [gone, kept]) {
    await createConnection(t.res, fx.tenant.id, SYSTEM_ACTOR, {
      kind: 'smtp',
      name: 'mail',
      config: { host: 'smtp.example.com', port: 587, from: 'robot@example.com', username: 'robot' },
      secret: `secret-of-${fx.tenant.slug}`,
    });
  }
  targetName = testDatabaseName();
  const admin = connect(withDatabase(adminUrl, 'postgres'), { max: 1 });
  try {
    await admin.unsafe(`create database ${targetName}`);
  } finally {
    await admin.end();
  }
});
afterAll(async () => {
  await t?.close();
  await rm(work, { recursive: true, force: true });
  const admin = connect(withDatabase(adminUrl, 'postgres'), { max: 1 });
  await admin.unsafe(`drop database if exists ${targetName} with (force)`).catch(() => {});
  await admin.end();
});

describe('crypto-shredding covers database backups', () => {
  it('a backup restored after an erasure does not decrypt the erased tenant, and does the other', async () => {
    const keystore = path.join(t.config.dataDir, KEYSTORE_DIR);
    const keyFile = (id: string) => path.join(keystore, `${id}.key`);
    expect(existsSync(keyFile(gone.tenant.id))).toBe(true);
    const [row] = await t.db.owner<{ tenant_kek: string | null }[]>`
      select tenant_kek from tenant_keys where tenant_id = ${gone.tenant.id}`;
    expect(row?.tenant_kek).toBe('file:v1');

    // 1. A backup, as an operator takes it: the archive has the database and data files, no tenant keys.
    const archive = path.join(work, 'before-erasure.tar.gz');
    const backup = await createBackup({
      ownerUrl: t.db.ownerUrl,
      dataDir: t.config.dataDir,
      out: archive,
      includeMasterKey: true,
      stewardVersion: '0.0.0-test',
    });
    expect(backup.manifest.files.some((f) => f.path.includes(KEYSTORE_DIR))).toBe(false);
    expect(backup.warnings.join('\n')).toContain('tenant keys');

    // 2. The tenant is erased: its KEK in the keystore is destroyed.
    const erased = expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/tenant/erase',
        headers: bearer(gone.token),
        payload: { confirm: 'shred-gone' },
      }),
      200,
    ).json() as { dataKeyDestroyed: boolean; tenantKekDestroyed: boolean };
    expect(erased).toMatchObject({ dataKeyDestroyed: true, tenantKekDestroyed: true });
    expect(existsSync(keyFile(gone.tenant.id))).toBe(false);
    expect(existsSync(keyFile(kept.tenant.id))).toBe(true);

    // 3. Disaster: the old backup is restored into a fresh database and data directory, with the
    // keystore as it is kept now (backed up separately, after the erasure) and the same master key.
    const freshDir = path.join(work, 'restored');
    await cp(keystore, path.join(freshDir, KEYSTORE_DIR), { recursive: true });
    const targetUrl = withDatabase(t.db.ownerUrl, targetName);
    await restoreBackup({ file: archive, ownerUrl: targetUrl, dataDir: freshDir, force: false });
    const rt = await openRuntime(
      loadConfig({
        DATABASE_URL: targetUrl,
        STEWARD_DATA_DIR: freshDir,
        STEWARD_MASTER_KEY: TEST_MASTER_KEY,
      }),
    );
    try {
      const vault = vaultFor(rt.res.master);
      // The erased tenant is back, rows, wrapped data key and ciphertext included: none of it opens.
      const [wrapped] = await rt.res.db.withTenant(
        gone.tenant.id,
        (tx) =>
          tx<{ n: number }[]>`select count(*)::int as n from tenant_keys where tenant_id = ${gone.tenant.id}`,
      );
      expect(wrapped!.n).toBe(1);
      await expect(
        rt.res.db.withTenant(gone.tenant.id, (tx) =>
          resolveConnection(vault, tx, gone.tenant.id, 'smtp', 'mail'),
        ),
      ).rejects.toBeInstanceOf(SecretUnreadableError);
      const survivor = await rt.res.db.withTenant(kept.tenant.id, (tx) =>
        resolveConnection(vault, tx, kept.tenant.id, 'smtp', 'mail'),
      );
      expect(survivor.secret).toBe('secret-of-shred-kept');
    } finally {
      await rt.close();
    }
  }, 120_000);
});
