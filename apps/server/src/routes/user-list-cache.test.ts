/**
 * GET /api/v1/users served from the page cache, end to end on a real PostgreSQL. The TTL is a
 * minute here, so every fresh page below is the work of an invalidation, never of expiry.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase } from '@steward/db/database';
import { runtimeUrl } from '@steward/db/testing/test-database';
import { PageCache } from '@steward/core/cache/page-cache';
import { listMembers, type Member } from '@steward/core/identity/user-service';
import {
  addUser,
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  loginAs,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

let t: TestApp;
let a: TenantFixture;
let b: TenantFixture;
let pages: PageCache;

beforeAll(async () => {
  t = await createTestApp({ env: { STEWARD_PAGE_CACHE_TTL_MS: '60000' } });
  pages = t.res.pages!;
  a = await createTenantFixture(t, 'cache-a');
  b = await createTenantFixture(t, 'cache-b');
  await addUser(t, a.tenant.id, 'ann@cache-a.test', 'viewer');
  await addUser(t, b.tenant.id, 'bob@cache-b.test', 'viewer');
});
afterAll(() => t?.close());

type Page = { items: Member[]; nextCursor: string | null };

async function list(key: string, query = 'limit=50'): Promise<Page> {
  return expectStatus(
    await t.app.inject({ url: `/api/v1/users?${query}`, headers: bearer(key) }),
    200,
  ).json() as Page;
}

/** List until `check` holds (at most 1 s: a NOTIFY arrives within milliseconds). */
async function eventually(key: string, check: (p: Page) => boolean): Promise<Page> {
  const end = Date.now() + 1000;
  for (;;) {
    const p = await list(key);
    if (check(p) || Date.now() > end) return p;
    await new Promise((r) => setTimeout(r, 20));
  }
}

const emails = (p: Page) => p.items.map((m) => m.email).sort();
const member = (p: Page, email: string) => p.items.find((m) => m.email === email);

describe('GET /api/v1/users with the page cache', () => {
  it('is on, listening, and answers repeated pages from the cache with the same body', async () => {
    expect(pages.isLive).toBe(true);
    const first = await t.app.inject({ url: '/api/v1/users?limit=50', headers: bearer(a.apiKey) });
    const hits = pages.stats().hits;
    const second = await t.app.inject({ url: '/api/v1/users?limit=50', headers: bearer(a.apiKey) });
    expect(pages.stats().hits).toBe(hits + 1);
    expect(second.body).toBe(first.body);
    expect(second.headers['content-type']).toBe(first.headers['content-type']);
    expect(second.headers['content-type']).toMatch(/^application\/json/);
    const metrics = (await t.app.inject({ url: '/metrics' })).body;
    expect(metrics).toContain('steward_page_cache_live 1');
    expect(metrics).toMatch(new RegExp(`steward_page_cache_hits ${pages.stats().hits}\\b`));
  });

  it('keeps tenants apart: the same query of two tenants gives each its own members', async () => {
    for (let i = 0; i < 2; i++) {
      expect(emails(await list(a.apiKey))).toEqual(['ann@cache-a.test', 'owner@cache-a.test']);
      expect(emails(await list(b.apiKey))).toEqual(['bob@cache-b.test', 'owner@cache-b.test']);
      expect(emails(await list(b.token))).toEqual(['bob@cache-b.test', 'owner@cache-b.test']);
    }
  });

  it('keys the normalized query: limit, role filter and cursor are separate pages', async () => {
    expect((await list(a.apiKey, 'limit=1')).items).toHaveLength(1);
    expect(emails(await list(a.apiKey, 'role=viewer'))).toEqual(['ann@cache-a.test']);
    expect(emails(await list(a.apiKey, 'role=owner'))).toEqual(['owner@cache-a.test']);
    const p1 = await list(a.apiKey, 'limit=1');
    const p2 = await list(a.apiKey, `limit=1&cursor=${encodeURIComponent(p1.nextCursor!)}`);
    expect(p2.items[0]!.email).not.toBe(p1.items[0]!.email);
    // bad input is still refused, and not cached
    for (let i = 0; i < 2; i++) {
      expectStatus(
        await t.app.inject({ url: '/api/v1/users?cursor=nonsense', headers: bearer(a.apiKey) }),
        400,
      );
    }
  });

  it('builds pages through the tenant-scoped read (RLS): a page never holds another tenant’s member', async () => {
    const before = pages.stats().stores;
    pages.flush();
    const page = await list(a.token, 'limit=200');
    expect(pages.stats().stores).toBe(before + 1);
    expect(page.items.some((m) => m.email.endsWith('@cache-b.test'))).toBe(false);
    // the same rows the domain function reads under withTenant/readTenant
    const direct = await listMembers(t.res, a.tenant.id, { limit: 200 });
    expect(page).toEqual(JSON.parse(JSON.stringify(direct)));
  });

  it('shows a write made through the API at once (this process invalidates before it answers)', async () => {
    const ann = member(await list(a.apiKey), 'ann@cache-a.test')!;
    // Which path invalidated: the commit of this process's own transaction, or a NOTIFY.
    const calls: { announcement: string; byCommit: boolean }[] = [];
    const invalidate = pages.invalidate.bind(pages);
    pages.invalidate = (announcement) => {
      calls.push({ announcement, byCommit: new Error().stack!.includes('database.ts') });
      invalidate(announcement);
    };
    try {
      expectStatus(
        await t.app.inject({
          method: 'PATCH',
          url: `/api/v1/users/${ann.id}`,
          headers: bearer(a.token),
          payload: { name: 'Ann Synchronous' },
        }),
        200,
      );
    } finally {
      pages.invalidate = invalidate;
    }
    expect(calls.filter((c) => c.byCommit).map((c) => c.announcement)).toContain(a.tenant.id);
    expect(member(await list(a.apiKey), 'ann@cache-a.test')?.name).toBe('Ann Synchronous');

    expectStatus(
      await t.app.inject({
        method: 'PATCH',
        url: `/api/v1/users/${ann.id}`,
        headers: bearer(a.token),
        payload: { name: 'Ann Renamed', role: 'approver' },
      }),
      200,
    );
    const after = member(await list(a.apiKey), 'ann@cache-a.test')!;
    expect(after).toMatchObject({ name: 'Ann Renamed', role: 'approver' });

    expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/users',
        headers: bearer(a.token),
        payload: { email: 'new@cache-a.test', password: 'correct horse battery', role: 'viewer' },
      }),
      201,
    );
    expect(emails(await list(a.apiKey))).toContain('new@cache-a.test');
    const added = member(await list(a.apiKey), 'new@cache-a.test')!;
    expectStatus(
      await t.app.inject({ method: 'DELETE', url: `/api/v1/users/${added.id}`, headers: bearer(a.token) }),
      204,
    );
    expect(emails(await list(a.apiKey))).not.toContain('new@cache-a.test');
  });

  it('shows a login (last_login_at) of a member of two tenants in both tenants', async () => {
    await addUser(t, b.tenant.id, 'ann@cache-a.test', 'viewer');
    const inB = member(await list(b.apiKey), 'ann@cache-a.test')!;
    const inA = member(await list(a.apiKey), 'ann@cache-a.test')!;
    await loginAs(t, 'ann@cache-a.test', 'cache-a');
    const afterB = member(await list(b.apiKey), 'ann@cache-a.test')!;
    const afterA = member(await list(a.apiKey), 'ann@cache-a.test')!;
    expect(afterA.lastLoginAt).not.toBe(inA.lastLoginAt);
    expect(afterB.lastLoginAt).toBe(afterA.lastLoginAt);
    expect(afterB.lastLoginAt).not.toBe(inB.lastLoginAt);
  });

  it('shows a write made by another connection (plain SQL as the owner) within the NOTIFY delivery', async () => {
    await list(a.apiKey);
    await list(a.apiKey); // cached
    await t.db.owner`update users set name = 'Changed Outside' where email = 'ann@cache-a.test'`;
    const p = await eventually(a.apiKey, (x) => member(x, 'ann@cache-a.test')?.name === 'Changed Outside');
    expect(member(p, 'ann@cache-a.test')?.name).toBe('Changed Outside');
    // the same user in tenant B as well
    expect(member(await list(b.apiKey), 'ann@cache-a.test')?.name).toBe('Changed Outside');
  });

  it('shows a write made by a second Database instance (another Steward process) within the NOTIFY delivery', async () => {
    const other = createDatabase({ url: await runtimeUrl(t.db), max: 1 });
    try {
      expect(member(await list(a.apiKey), 'ann@cache-a.test')?.role).toBe('approver');
      await other.withTenant(
        a.tenant.id,
        (tx) => tx`update roles set name = 'checker' where name = 'approver'`,
      );
      const p = await eventually(a.apiKey, (x) => member(x, 'ann@cache-a.test')?.role === 'checker');
      expect(member(p, 'ann@cache-a.test')?.role).toBe('checker');
      // tenant B's roles are untouched
      expect(member(await list(b.apiKey), 'ann@cache-a.test')?.role).toBe('viewer');
    } finally {
      await other.withTenant(
        a.tenant.id,
        (tx) => tx`update roles set name = 'approver' where name = 'checker'`,
      );
      await other.close();
    }
  });

  it('does not store a page read before a concurrent write committed (build-vs-write race)', async () => {
    const key = 'users?limit=50&role=&cursor=';
    const ann = member(await list(a.apiKey), 'ann@cache-a.test')!;
    // same process: the build reads, then a write commits, then the build tries to store
    let ticket = pages.begin(a.tenant.id, key)!;
    let stale = await listMembers(t.res, a.tenant.id, { limit: 50 });
    expectStatus(
      await t.app.inject({
        method: 'PATCH',
        url: `/api/v1/users/${ann.id}`,
        headers: bearer(a.token),
        payload: { name: 'Race One' },
      }),
      200,
    );
    expect(pages.store(ticket, Buffer.from(JSON.stringify(stale)))).toBe(false);
    expect(member(await list(a.apiKey), 'ann@cache-a.test')?.name).toBe('Race One');

    // another process: its NOTIFY arrives while the build is in flight
    ticket = pages.begin(a.tenant.id, key)!;
    stale = await listMembers(t.res, a.tenant.id, { limit: 50 });
    const seen = pages.stats().invalidations;
    await t.db.owner`update users set name = 'Race Two' where id = ${ann.id}`;
    await until(() => pages.stats().invalidations > seen);
    expect(pages.store(ticket, Buffer.from(JSON.stringify(stale)))).toBe(false);
    expect(member(await list(a.apiKey), 'ann@cache-a.test')?.name).toBe('Race Two');

    // another process, stored before its NOTIFY arrives: the NOTIFY then removes it
    ticket = pages.begin(a.tenant.id, key)!;
    stale = await listMembers(t.res, a.tenant.id, { limit: 50 });
    const seen2 = pages.stats().invalidations;
    await t.db.owner`update users set name = 'Race Three' where id = ${ann.id}`;
    pages.store(ticket, Buffer.from(JSON.stringify(stale)));
    await until(() => pages.stats().invalidations > seen2);
    expect(pages.get(a.tenant.id, key)).toBeUndefined();
    expect(member(await list(a.apiKey), 'ann@cache-a.test')?.name).toBe('Race Three');
  });

  it('honours revocation: a role without users:read and a revoked API key are refused despite a cached page', async () => {
    await list(a.apiKey);
    await list(a.apiKey); // cached for tenant A
    // a member whose role loses users:read
    await addUser(t, a.tenant.id, 'auditor@cache-a.test', 'auditor');
    const { accessToken } = await loginAs(t, 'auditor@cache-a.test', 'cache-a');
    await list(accessToken);
    const auditor = member(await list(a.apiKey), 'auditor@cache-a.test')!;
    expectStatus(
      await t.app.inject({
        method: 'PATCH',
        url: `/api/v1/users/${auditor.id}`,
        headers: bearer(a.token),
        payload: { role: 'viewer' },
      }),
      200,
    );
    expectStatus(await t.app.inject({ url: '/api/v1/users', headers: bearer(accessToken) }), 403);

    // an API key, revoked
    const created = expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/api-keys',
        headers: bearer(a.token),
        payload: { name: 'short-lived', role: 'auditor' },
      }),
      201,
    ).json() as { id: string; key: string };
    await list(created.key);
    expectStatus(
      await t.app.inject({
        method: 'DELETE',
        url: `/api/v1/api-keys/${created.id}`,
        headers: bearer(a.token),
      }),
      204,
    );
    expectStatus(await t.app.inject({ url: '/api/v1/users', headers: bearer(created.key) }), 401);
    // a key of tenant B never gets tenant A's page, nor a missing key any page
    expect(emails(await list(b.apiKey))).not.toContain('auditor@cache-a.test');
    expectStatus(await t.app.inject({ url: '/api/v1/users' }), 401);
  });

  it('bypasses the cache while its LISTEN connection is lost, and caches again once it is back', async () => {
    await list(a.apiKey);
    await t.db.owner`select pg_terminate_backend(pid) from pg_stat_activity
      where application_name = 'steward-page-cache' and datname = current_database()`;
    await until(() => !pages.isLive);
    // a change whose NOTIFY nobody receives is still seen at once: nothing is served from the cache
    await t.db.owner`update users set name = 'While Deaf' where email = 'ann@cache-a.test'`;
    const bypassed = pages.stats().bypassed;
    expect(member(await list(a.apiKey), 'ann@cache-a.test')?.name).toBe('While Deaf');
    expect(pages.stats().bypassed).toBeGreaterThan(bypassed);
    expect(pages.stats().entries).toBe(0);
    await until(() => pages.isLive, 5000);
    await list(a.apiKey);
    const hits = pages.stats().hits;
    await list(a.apiKey);
    expect(pages.stats().hits).toBe(hits + 1);
  });
});

describe('negative control: a cache without invalidation', () => {
  it('is caught by the same checks (the owner’s write stays invisible)', async () => {
    const wired = t.res.pages;
    const deaf = new PageCache({ ttlMs: 60_000 });
    deaf.setLive(true); // live, but fed by nothing: no NOTIFY, no commit watch
    t.res.pages = deaf;
    try {
      await list(a.apiKey);
      await t.db.owner`update users set name = 'Never Seen' where email = 'ann@cache-a.test'`;
      const p = await eventually(a.apiKey, (x) => member(x, 'ann@cache-a.test')?.name === 'Never Seen');
      expect(member(p, 'ann@cache-a.test')?.name).not.toBe('Never Seen');
      // and the API write of this very process is not seen either
      const ann = member(p, 'ann@cache-a.test')!;
      expectStatus(
        await t.app.inject({
          method: 'PATCH',
          url: `/api/v1/users/${ann.id}`,
          headers: bearer(a.token),
          payload: { name: 'Also Never Seen' },
        }),
        200,
      );
      expect(member(await list(a.apiKey), 'ann@cache-a.test')?.name).not.toBe('Also Never Seen');
    } finally {
      t.res.pages = wired;
    }
    expect(member(await list(a.apiKey), 'ann@cache-a.test')?.name).toBe('Also Never Seen');
  });
});

async function until(check: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}
