import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startVault } from '@steward/core/vault/vault-service';
import { leaseHolder } from '@steward/core/watchers/leases';
import { createTenantFixture, createTestApp, type TestApp } from './testing/test-app.ts';

let t: TestApp;

beforeAll(async () => {
  t = await createTestApp();
  await createTenantFixture(t, 'lease-vault');
});
afterAll(() => t?.close());

async function waitUntil(what: string, fn: () => Promise<boolean> | boolean, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the vault mirror under a lease', () => {
  it('runs in one of two processes and hands over when that one stops', async () => {
    const first = startVault(t.res, { leaseMs: 1000, intervalMs: 100, watch: false });
    const second = startVault(t.res, { leaseMs: 1000, intervalMs: 100, watch: false });
    const dashboard = path.join(t.config.dataDir, 'tenants/lease-vault/vault/Dashboard.md');
    await waitUntil('the dashboard', () => existsSync(dashboard));
    const holder = await leaseHolder(t.res.db, 'vault');
    expect(holder).toBeTruthy();
    await first.stop();
    await waitUntil('a holder again', async () => {
      const now = await leaseHolder(t.res.db, 'vault');
      return now !== null && now !== holder;
    }).catch(async () => {
      // The first one may not have been the holder: then the lease simply stays where it was.
      expect(await leaseHolder(t.res.db, 'vault')).toBe(holder);
    });
    await second.stop();
    await waitUntil('the lease to be free', async () => (await leaseHolder(t.res.db, 'vault')) === null);
  });
});
