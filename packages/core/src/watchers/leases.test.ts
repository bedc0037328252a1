import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, createDatabase, type Database, type Sql } from '@steward/db/database';
import { createTestDatabase, runtimeUrl, type TestDatabase } from '@steward/db/testing/test-database';
import { spawnSync } from 'node:child_process';
import {
  acquireLease,
  holderIdFor,
  isDeadLocalHolder,
  leaseHolder,
  Leadership,
  processHolderId,
  releaseLease,
  renewLease,
} from './leases.ts';

let tdb: TestDatabase;
let db: Database;
let runtime: Sql;

beforeAll(async () => {
  tdb = await createTestDatabase();
  const url = await runtimeUrl(tdb);
  db = createDatabase({ url, max: 6 });
  runtime = connect(url, { max: 1 });
});
afterAll(async () => {
  await runtime?.end();
  await db?.close();
  await tdb?.drop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(25);
  }
}

describe('leases', () => {
  it('one holder at a time: the second is refused while the first holds it', async () => {
    expect(await acquireLease(db, 'one', 'holder-a', 10_000)).toBe(true);
    expect(await acquireLease(db, 'one', 'holder-b', 10_000)).toBe(false);
    expect(await renewLease(db, 'one', 'holder-b', 10_000)).toBe(false);
    expect(await releaseLease(db, 'one', 'holder-b')).toBe(false);
    expect(await leaseHolder(db, 'one')).toBe('holder-a');
    // Re-acquiring is a renewal for the holder.
    expect(await acquireLease(db, 'one', 'holder-a', 10_000)).toBe(true);
    expect(await renewLease(db, 'one', 'holder-a', 10_000)).toBe(true);
  });

  it('many contenders at once: exactly one wins', async () => {
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => acquireLease(db, 'race', `contender-${i}`, 10_000)),
    );
    expect(results.filter(Boolean)).toHaveLength(1);
    const winner = `contender-${results.indexOf(true)}`;
    expect(await leaseHolder(db, 'race')).toBe(winner);
  });

  it('an expired lease is taken over, and the old holder can no longer renew it', async () => {
    expect(await acquireLease(db, 'short', 'old', 300)).toBe(true);
    expect(await acquireLease(db, 'short', 'new', 10_000)).toBe(false);
    await until(async () => (await leaseHolder(db, 'short')) === null);
    expect(await acquireLease(db, 'short', 'new', 10_000)).toBe(true);
    expect(await renewLease(db, 'short', 'old', 10_000)).toBe(false);
    expect(await acquireLease(db, 'short', 'old', 10_000)).toBe(false);
    expect(await leaseHolder(db, 'short')).toBe('new');
  });

  it('a released lease is free at once', async () => {
    expect(await acquireLease(db, 'released', 'a', 60_000)).toBe(true);
    expect(await releaseLease(db, 'released', 'a')).toBe(true);
    expect(await acquireLease(db, 'released', 'b', 60_000)).toBe(true);
  });

  it('is not tenant data: invisible and unwritable outside system access', async () => {
    const rows = await runtime`select * from leases`;
    expect(rows).toHaveLength(0);
    const tenantRows = await db
      .withTenant('11111111-1111-4111-8111-111111111111', (tx) => tx`select * from leases`)
      .catch(() => []);
    expect(tenantRows).toHaveLength(0);
    await expect(
      runtime`insert into leases (name, holder, expires_at) values ('sneaky', 'x', now() + interval '1 hour')`,
    ).rejects.toMatchObject({ code: '42501' });
    expect(await leaseHolder(db, 'sneaky')).toBeNull();
  });
});

describe('leadership', () => {
  it('takes a lease at once from a holder on this machine that no longer runs, never from a live one', async () => {
    const gone = spawnSync(process.execPath, ['-e', '']).pid!;
    const deadHolder = holderIdFor(gone);
    expect(isDeadLocalHolder(deadHolder)).toBe(true);
    expect(isDeadLocalHolder(holderIdFor(process.pid))).toBe(false);
    expect(isDeadLocalHolder(holderIdFor(process.ppid))).toBe(false);
    expect(isDeadLocalHolder(deadHolder.replace(/^[^:]+/, 'another-host'))).toBe(false);
    expect(isDeadLocalHolder(`legacy:${gone}:abcd`)).toBe(false);

    expect(await acquireLease(db, 'orphaned', deadHolder, 3_600_000)).toBe(true);
    expect(await acquireLease(db, 'alive', processHolderId(), 3_600_000)).toBe(true);
    let started = 0;
    const make = (name: string) =>
      new Leadership({
        db,
        name,
        ttlMs: 3_600_000,
        lead: async () => {
          started++;
          return async () => {};
        },
      });
    const heir = make('orphaned');
    const patient = make('alive');
    heir.start();
    patient.start();
    await until(() => heir.isLeader);
    expect(await leaseHolder(db, 'orphaned')).toBe(heir.holder);
    await sleep(300);
    expect(patient.isLeader).toBe(false);
    expect(started).toBe(1);
    await heir.stop();
    await patient.stop();
  });

  it('runs the work in one contender only, and hands over when the leader stops or dies', async () => {
    const running = new Set<string>();
    let overlaps = 0;
    const contender = (holder: string) =>
      new Leadership({
        db,
        name: 'work',
        holder,
        ttlMs: 600,
        lead: async () => {
          running.add(holder);
          if (running.size > 1) overlaps++;
          return async () => {
            running.delete(holder);
          };
        },
      });
    const a = contender('a');
    const b = contender('b');
    a.start();
    b.start();
    await until(() => running.size === 1);
    await sleep(1000); // several renewals: still one leader
    expect(running.size).toBe(1);
    const [first] = [...running];
    const leader = first === 'a' ? a : b;
    const other = first === 'a' ? b : a;
    expect(leader.isLeader).toBe(true);
    expect(other.isLeader).toBe(false);

    // A graceful stop releases the lease: the other takes over on its next beat.
    await leader.stop();
    await until(() => running.size === 1 && !running.has(first!));
    expect(other.isLeader).toBe(true);

    // A leader whose lease is taken away (as after a pause longer than the lease) stops its work.
    await tdb.owner`update leases set holder = 'someone-else', expires_at = now() + interval '1 hour' where name = 'work'`;
    await until(() => running.size === 0);
    expect(other.isLeader).toBe(false);
    await other.stop();
    expect(overlaps).toBe(0);
  });
});
