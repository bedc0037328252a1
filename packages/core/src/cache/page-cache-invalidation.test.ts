/**
 * Migration 0023's announcements, on a real PostgreSQL and as the runtime role (RLS applies): what
 * each change of memberships, roles and users announces, to the committing process (synchronously,
 * Database.watchCommits) and to every process (NOTIFY, PageCacheListener); and the listener's
 * behaviour when its connection is lost.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createDatabase, type Database } from '@steward/db/database';
import { createTestDatabase, runtimeUrl, type TestDatabase } from '@steward/db/testing/test-database';
import { PageCache } from './page-cache.ts';
import { PageCacheListener } from './page-cache-listener.ts';

const A = randomUUID();
const B = randomUUID();
const C = randomUUID();
const SHARED = randomUUID(); // a user in A and B
const ONLY_C = randomUUID();
const NOBODY = randomUUID(); // a user in no tenant

let tdb: TestDatabase;
let url: string;
let db: Database;
/** What this process's own commits announced, in order. */
let committed: string[] = [];
let cache: PageCache;
let listener: PageCacheListener;
/** What arrived by NOTIFY, in order. */
let notified: string[] = [];

const roleId: Record<string, string> = {};

beforeAll(async () => {
  tdb = await createTestDatabase();
  url = await runtimeUrl(tdb);
  const o = tdb.owner;
  for (const [id, slug] of [
    [A, 'cache-a'],
    [B, 'cache-b'],
    [C, 'cache-c'],
  ] as const) {
    await o`insert into tenants (id, slug, name) values (${id}, ${slug}, ${slug})`;
    const [r] = await o<{ id: string }[]>`
      insert into roles (tenant_id, name, builtin) values (${id}, 'viewer', true) returning id`;
    roleId[id] = r!.id;
  }
  await o`insert into users (id, email) values (${SHARED}, 'shared@cache.test'), (${ONLY_C}, 'c@cache.test'), (${NOBODY}, 'nobody@cache.test')`;
  await o`insert into memberships (tenant_id, user_id, role_id) values
    (${A}, ${SHARED}, ${roleId[A]!}), (${B}, ${SHARED}, ${roleId[B]!}), (${C}, ${ONLY_C}, ${roleId[C]!})`;
  db = createDatabase({ url, max: 2 });
  db.watchCommits('app.changed_tenants', (v) => committed.push(v));
  cache = new PageCache({ ttlMs: 60_000 });
  const invalidate = cache.invalidate.bind(cache);
  cache.invalidate = (announcement) => {
    notified.push(announcement);
    invalidate(announcement);
  };
  listener = new PageCacheListener(url, cache, { retryMs: 100 });
  expect(await listener.start()).toBe(true);
});

afterAll(async () => {
  await listener?.close();
  await db?.close();
  await tdb?.drop();
});

beforeEach(() => {
  committed = [];
  notified = [];
});

const sorted = (announcement: string | undefined) => announcement?.split(',').sort().join(',');

async function until(check: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The NOTIFY of a change arrives after its commit: wait for it (or fail when nothing comes). */
async function nextNotification(): Promise<string> {
  await until(() => notified.length > 0);
  return notified.shift()!;
}

describe('page cache announcements (migration 0023)', () => {
  it('a users change inside tenant A announces every tenant of that user, although RLS hides B from A', async () => {
    await db.withTenant(A, (tx) => tx`update users set name = 'Shared' where id = ${SHARED}`);
    expect(committed.map(sorted)).toEqual([[A, B].sort().join(',')]);
    expect(sorted(await nextNotification())).toBe([A, B].sort().join(','));
  });

  it('login churn (last_login_at) announces the user\u2019s tenants, under system access too', async () => {
    await db.withSystemAccess((tx) => tx`update users set last_login_at = now() where id = ${ONLY_C}`);
    expect(committed).toEqual([C]);
    expect(await nextNotification()).toBe(C);
  });

  it('a user in no tenant announces nothing; a read-only transaction announces nothing', async () => {
    await db.withSystemAccess((tx) => tx`update users set name = 'x' where id = ${NOBODY}`);
    await db.withTenant(A, (tx) => tx`select * from memberships`);
    await db.readTenant(A, (tx) => tx`select * from memberships`);
    expect(committed).toEqual([]);
    // a later announcement is the next thing to arrive: nothing was sent for the three above
    await db.withTenant(C, (tx) => tx`update roles set description = 'd' where tenant_id = ${C}`);
    expect(await nextNotification()).toBe(C);
  });

  it('memberships and roles: insert, update and delete announce their tenant', async () => {
    await db.withSystemAccess(
      (tx) =>
        tx`insert into memberships (tenant_id, user_id, role_id) values (${A}, ${ONLY_C}, ${roleId[A]!})`,
      { tenantId: A },
    );
    await db.withTenant(A, (tx) => tx`update memberships set status = 'disabled' where user_id = ${ONLY_C}`);
    await db.withTenant(A, (tx) => tx`delete from memberships where user_id = ${ONLY_C}`);
    await db.withTenant(B, (tx) => tx`update roles set description = 'x' where tenant_id = ${B}`);
    expect(committed).toEqual([A, A, A, B]);
    for (const t of [A, A, A, B]) expect(await nextNotification()).toBe(t);
  });

  it('accumulates over a transaction, and nothing is left for the next transaction on the connection', async () => {
    await db.withTenant(A, async (tx) => {
      await tx`update roles set description = 'y' where tenant_id = ${A}`;
      await tx`update users set name = 'Shared again' where id = ${SHARED}`;
    });
    expect(committed.map((v) => v.split(',').sort())).toEqual([[A, A, B].sort()]);
    // one NOTIFY per statement
    expect(await nextNotification()).toBe(A);
    expect(sorted(await nextNotification())).toBe([A, B].sort().join(','));
    await db.withTenant(A, (tx) => tx`select 1`);
    await db.withTenant(A, (tx) => tx`select 1`);
    expect(committed).toHaveLength(1);
  });

  it('a rolled-back transaction announces nothing, to either path', async () => {
    await expect(
      db.withTenant(A, async (tx) => {
        await tx`update roles set description = 'z' where tenant_id = ${A}`;
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    expect(committed).toEqual([]);
    await db.withTenant(C, (tx) => tx`update roles set description = 'e' where tenant_id = ${C}`);
    expect(await nextNotification()).toBe(C);
  });

  it('a statement touching more than 100 tenants announces every tenant', async () => {
    const many = Array.from({ length: 120 }, () => randomUUID());
    await tdb.owner`insert into tenants (id, slug, name) select id, 'many-' || left(id::text, 8), 'm' from unnest(${many}::uuid[]) id`;
    notified = [];
    await tdb.owner`insert into roles (tenant_id, name) select id, 'custom' from unnest(${many}::uuid[]) id`;
    expect(await nextNotification()).toBe('*');
  });

  it('a write by another connection (the owner, outside Steward) reaches the listener', async () => {
    await tdb.owner`update users set email = 'shared2@cache.test' where id = ${SHARED}`;
    expect(sorted(await nextNotification())).toBe([A, B].sort().join(','));
  });
});

describe('PageCacheListener', () => {
  it('bypasses and empties the cache when its connection is lost, and is live again after it reconnects', async () => {
    const put = () => cache.store(cache.begin(A, 'k')!, Buffer.from('page'));
    expect(cache.isLive).toBe(true);
    expect(put()).toBe(true);
    const inFlight = cache.begin(A, 'k2')!;
    const killed = await tdb.owner<{ ok: boolean }[]>`
      select pg_terminate_backend(pid) as ok from pg_stat_activity
      where application_name = 'steward-page-cache' and datname = current_database()`;
    expect(killed.map((k) => k.ok)).toEqual([true]);
    await until(() => !cache.isLive);
    expect(cache.get(A, 'k')).toBeUndefined();
    expect(cache.begin(A, 'k')).toBeUndefined();
    await until(() => cache.isLive, 5000);
    // what was cached or being built before the loss is gone for good
    expect(cache.get(A, 'k')).toBeUndefined();
    expect(cache.store(inFlight, Buffer.from('old'))).toBe(false);
    // and announcements arrive again
    await tdb.owner`update roles set description = 'back' where tenant_id = ${C}`;
    expect(await nextNotification()).toBe(C);
  });

  it('retries a LISTEN that fails, with the cache bypassed meanwhile', async () => {
    const other = new PageCache({ ttlMs: 1000 });
    const broken = new PageCacheListener(url.replace(/:\d+\//, ':1/'), other, { retryMs: 50 });
    try {
      expect(await broken.start()).toBe(false);
      expect(other.isLive).toBe(false);
      expect(other.begin(A, 'k')).toBeUndefined();
    } finally {
      await broken.close();
    }
  });
});
