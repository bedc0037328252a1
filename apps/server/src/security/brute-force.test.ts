import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Guard, HOUR_MS } from '@steward/core/guard/guard';
import { redisMissing, TEST_REDIS_URL } from '@steward/core/guard/testing/redis-available';
import { createTestDatabase, type TestDatabase } from '@steward/db/testing/test-database';
import {
  addUser,
  createTenantFixture,
  createTestApp,
  TEST_PASSWORD,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

// Count every argon2 verification, to show that known and unknown accounts take the same path.
const argon = vi.hoisted(() => ({ verifications: 0 }));
vi.mock('@node-rs/argon2', async (importOriginal) => {
  const original = await importOriginal<typeof import('@node-rs/argon2')>();
  return {
    ...original,
    verify: (...args: Parameters<typeof original.verify>) => {
      argon.verifications++;
      return original.verify(...args);
    },
  };
});

const missing = await redisMissing();
if (missing) console.warn(`SKIPPING the shared (Redis) brute-force test: ${missing}`);

const WRONG = 'wrong password!';

function login(
  t: TestApp,
  email: string,
  password: string,
  headers: Record<string, string> = {},
  remoteAddress = '127.0.0.1',
) {
  return t.app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { email, password },
    headers,
    remoteAddress,
  });
}

describe('credential stuffing with forged X-Forwarded-For', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  it('from an untrusted peer, 50 forged X-Forwarded-For values gain zero extra attempts', async () => {
    const t = await createTestApp({ database: db, env: { STEWARD_LOGIN_FAILURES_PER_IP: '10' } });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 50; i++) {
        // A different account each time, so only the per-address limit can stop it.
        const r = await login(
          t,
          `victim${i}@stuffing.test`,
          WRONG,
          { 'x-forwarded-for': `198.51.100.${i}` },
          '203.0.113.7',
        );
        statuses.push(r.statusCode);
        if (r.statusCode === 429) {
          expect(r.headers['retry-after']).toMatch(/^\d+$/);
          expect(r.json().error.code).toBe('RATE_LIMITED');
        }
      }
      expect(statuses.filter((s) => s === 401)).toHaveLength(10);
      expect(statuses.slice(10).every((s) => s === 429)).toBe(true);
      // Another address is not affected.
      expect((await login(t, 'someone@stuffing.test', WRONG, {}, '203.0.113.8')).statusCode).toBe(401);
    } finally {
      await t.close();
    }
  });

  it('behind a trusted proxy each client address has its own limit, and a forged prefix changes nothing', async () => {
    const t = await createTestApp({
      database: db,
      env: { STEWARD_LOGIN_FAILURES_PER_IP: '10', STEWARD_TRUST_PROXY: '127.0.0.1' },
    });
    try {
      // 30 different clients through the proxy: one failure each, none refused.
      for (let i = 0; i < 30; i++) {
        const r = await login(t, `c${i}@proxy.test`, WRONG, { 'x-forwarded-for': `198.51.100.${i}` });
        expect(r.statusCode).toBe(401);
      }
      // One client forging 20 different left-most values: the proxy appended its real address.
      const statuses: number[] = [];
      for (let i = 0; i < 20; i++) {
        const r = await login(t, `f${i}@proxy.test`, WRONG, {
          'x-forwarded-for': `10.9.9.${i}, 192.0.2.44`,
        });
        statuses.push(r.statusCode);
      }
      expect(statuses.filter((s) => s === 401)).toHaveLength(10);
      expect(statuses.filter((s) => s === 429)).toHaveLength(10);
      // The same forged header from a peer that is not the proxy counts against that peer.
      expect(
        (await login(t, 'x@proxy.test', WRONG, { 'x-forwarded-for': '192.0.2.45' }, '203.0.113.9'))
          .statusCode,
      ).toBe(401);
    } finally {
      await t.close();
    }
  });
});

describe('a hop count as trusted proxy', () => {
  it('STEWARD_TRUST_PROXY=1: the client is the right-most X-Forwarded-For entry, whatever precedes it', async () => {
    const t = await createTestApp({ env: { STEWARD_LOGIN_FAILURES_PER_IP: '2', STEWARD_TRUST_PROXY: '1' } });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await login(t, `h${i}@hops.test`, WRONG, { 'x-forwarded-for': `10.0.0.${i}, 192.0.2.60` });
        statuses.push(r.statusCode);
      }
      expect(statuses).toEqual([401, 401, 429]);
      expect((await login(t, 'h@hops.test', WRONG, { 'x-forwarded-for': '192.0.2.61' })).statusCode).toBe(
        401,
      );
    } finally {
      await t.close();
    }
  });
});

describe('per-account limit', () => {
  let t: TestApp;
  let f: TenantFixture;
  let clock = Date.UTC(2030, 0, 1, 10, 0, 0);
  beforeAll(async () => {
    t = await createTestApp();
    f = await createTenantFixture(t, 'acct');
    t.res.guard = new Guard(t.res.db, {
      limits: { loginFailuresPerAccount: 20, loginFailuresPerIp: 1000 },
      now: () => clock,
    });
  });
  afterAll(() => t.close());

  it('refuses the 21st failure in an hour (even with the right password), then lets the owner in after the window', async () => {
    for (let i = 0; i < 20; i++) {
      clock += 60_000; // one a minute
      expect((await login(t, f.ownerEmail, WRONG, {}, `192.0.2.${i}`)).statusCode).toBe(401);
    }
    const refused = await login(t, f.ownerEmail, WRONG, {}, '192.0.2.100');
    expect(refused.statusCode).toBe(429);
    expect(refused.json().error).toMatchObject({ code: 'RATE_LIMITED', details: { scope: 'login_account' } });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    // While refused, even the right password is not checked.
    expect((await login(t, f.ownerEmail, TEST_PASSWORD)).statusCode).toBe(429);
    // Refused attempts do not extend the lock: after the window the right password works.
    for (let i = 0; i < 30; i++) await login(t, f.ownerEmail, WRONG);
    clock += Number(refused.headers['retry-after']) * 1000 + 1000;
    expect((await login(t, f.ownerEmail, TEST_PASSWORD)).statusCode).toBe(200);
    // Two hours later the account has its full allowance again.
    clock += 2 * HOUR_MS;
    for (let i = 0; i < 20; i++) expect((await login(t, f.ownerEmail, WRONG)).statusCode).toBe(401);
  });

  it('successful sign-ins do not count', async () => {
    clock += 3 * HOUR_MS;
    await addUser(t, f.tenant.id, 'busy@acct.test', 'member');
    for (let i = 0; i < 25; i++)
      expect((await login(t, 'busy@acct.test', TEST_PASSWORD)).statusCode).toBe(200);
  });

  it('verifies a password hash for known and unknown accounts alike', async () => {
    clock += 3 * HOUR_MS;
    const timings: Record<string, number[]> = { known: [], unknown: [] };
    for (let i = 0; i < 4; i++) {
      for (const [kind, email] of [
        ['known', f.ownerEmail],
        ['unknown', `nobody${i}@acct.test`],
      ] as const) {
        const before = argon.verifications;
        const started = performance.now();
        const r = await login(t, email, WRONG);
        timings[kind]!.push(performance.now() - started);
        expect(r.statusCode).toBe(401);
        expect(r.json().error.message).toBe('email or password is incorrect');
        expect(argon.verifications - before).toBe(1);
      }
    }
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!.toFixed(1);
    console.info(
      `login failure, median ms: known ${median(timings.known!)}, unknown ${median(timings.unknown!)}`,
    );
  });
});

describe.skipIf(!!missing)('limits shared through Redis', () => {
  it('two app instances share the per-account limit', async () => {
    const db = await createTestDatabase();
    const env = { REDIS_URL: TEST_REDIS_URL, STEWARD_LOGIN_FAILURES_PER_ACCOUNT: '6' };
    const a = await createTestApp({ database: db, env });
    const b = await createTestApp({ database: db, env });
    try {
      expect(a.res.guard?.shared).toBe(true);
      const email = `${randomUUID()}@shared.test`;
      const ip = () => `10.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}.1`;
      for (let i = 0; i < 3; i++) expect((await login(a, email, WRONG, {}, ip())).statusCode).toBe(401);
      for (let i = 0; i < 3; i++) expect((await login(b, email, WRONG, {}, ip())).statusCode).toBe(401);
      expect((await login(a, email, WRONG, {}, ip())).statusCode).toBe(429);
      expect((await login(b, email, WRONG, {}, ip())).statusCode).toBe(429);
    } finally {
      await a.close();
      await b.close();
      await db.drop();
    }
  });
});
