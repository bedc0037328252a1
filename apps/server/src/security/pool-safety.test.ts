import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  addUser,
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

/**
 * 10,000 requests alternating two tenants (and access tokens with API keys) over a pool of two
 * connections, 50 in flight: the tenant context is per transaction, so no answer may ever carry the
 * other tenant's data, even with failing requests (rolled back transactions) in the mix.
 */

const TOTAL = 10_000;
const IN_FLIGHT = 50;

let t: TestApp;
let tenants: { fx: TenantFixture; slug: string; otherUserId: string }[];

beforeAll(async () => {
  t = await createTestApp({ env: { STEWARD_DB_POOL_MAX: '2' } });
  const a = await createTenantFixture(t, 'pool-a');
  const b = await createTenantFixture(t, 'pool-b');
  const aUser = await addUser(t, a.tenant.id, 'member@pool-a.test', 'member');
  const bUser = await addUser(t, b.tenant.id, 'member@pool-b.test', 'member');
  // Each tenant's "other user" is the other tenant's member: asking for it must be a 404.
  tenants = [
    { fx: a, slug: 'pool-a', otherUserId: bUser.id },
    { fx: b, slug: 'pool-b', otherUserId: aUser.id },
  ];
});
afterAll(() => t?.close());

it('never answers with the other tenant’s data over a pool of 2', { timeout: 120_000 }, async () => {
  expect(t.res.db.stats().max).toBe(2);
  let maxInUse = 0;
  let maxWaiting = 0;
  const sample = () => {
    const s = t.res.db.stats();
    maxInUse = Math.max(maxInUse, s.inUse);
    maxWaiting = Math.max(maxWaiting, s.waiting);
  };
  const sampler = setInterval(sample, 5);

  const problems: string[] = [];
  const counts = { me: 0, users: 0, foreign: 0 };

  async function one(i: number): Promise<void> {
    const own = tenants[i % 2]!;
    const other = tenants[(i + 1) % 2]!;
    const credential = Math.floor(i / 2) % 2 === 0 ? own.fx.token : own.fx.apiKey;
    const kind = Math.floor(i / 4) % 5; // 2 of 5 /me, 2 of 5 users list, 1 of 5 a foreign id
    const url =
      kind < 2 ? '/api/v1/me' : kind < 4 ? '/api/v1/users?limit=10' : `/api/v1/users/${own.otherUserId}`;
    const r = await t.app.inject({ url, headers: bearer(credential) });
    sample();
    const fail = (why: string) =>
      problems.push(`#${i} ${url} as ${own.slug}: ${why}: ${r.body.slice(0, 200)}`);
    if (r.body.includes(other.slug) || r.body.includes(other.fx.tenant.id)) fail('other tenant in the body');
    if (kind < 2) {
      counts.me++;
      if (r.statusCode !== 200) return void fail(`status ${r.statusCode}`);
      const body = r.json();
      if (body.tenant.id !== own.fx.tenant.id || body.tenant.slug !== own.slug) fail('wrong tenant');
    } else if (kind < 4) {
      counts.users++;
      if (r.statusCode !== 200) return void fail(`status ${r.statusCode}`);
      const emails = (r.json().items as { email: string }[]).map((u) => u.email);
      if (emails.length !== 2 || emails.some((e) => !e.endsWith(`@${own.slug}.test`))) fail('wrong users');
    } else {
      counts.foreign++;
      if (r.statusCode !== 404) fail(`status ${r.statusCode}`);
    }
  }

  let next = 0;
  const workers = Array.from({ length: IN_FLIGHT }, async () => {
    while (next < TOTAL) await one(next++);
  });
  try {
    await Promise.all(workers);
  } finally {
    clearInterval(sampler);
  }

  expect(problems.slice(0, 10)).toEqual([]);
  expect(counts.me + counts.users + counts.foreign).toBe(TOTAL);
  expect(counts.foreign).toBeGreaterThan(1000);
  // The pool really was the bottleneck: at most two transactions at once, others queued.
  expect(maxInUse).toBeLessThanOrEqual(2);
  expect(maxWaiting).toBeGreaterThan(0);
  expect(t.res.db.stats()).toMatchObject({ max: 2, inUse: 0, waiting: 0 });

  expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(tenants[1]!.fx.token) }), 200);
});
