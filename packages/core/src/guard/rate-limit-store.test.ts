import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { Guard } from './guard.ts';
import { MemoryRateLimitStore } from './memory-rate-limit-store.ts';
import { decide, type RateLimitStore } from './rate-limit-store.ts';
import { RedisRateLimitStore } from './redis-rate-limit-store.ts';
import { redisMissing, TEST_REDIS_URL } from './testing/redis-available.ts';

const missing = await redisMissing();
if (missing) console.warn(`SKIPPING the Redis rate-limit store tests: ${missing}`);

const HOUR = 3_600_000;
const T0 = Date.UTC(2030, 0, 1); // the start of a window

/** The same behaviour from every store. */
function storeContract(name: string, make: () => RateLimitStore) {
  describe(name, () => {
    const store = make();
    afterAll(() => store.close());
    const key = () => `test:${randomUUID()}`;

    it('allows up to the limit in a window, then refuses with a Retry-After', async () => {
      const k = key();
      for (let i = 0; i < 20; i++) expect((await store.consume(k, 20, HOUR, T0 + i)).allowed).toBe(true);
      const refused = await store.consume(k, 20, HOUR, T0 + 100);
      expect(refused).toMatchObject({ allowed: false, remaining: 0 });
      // 20 in this window: allowed again once the previous window's share has decayed below 20.
      expect(refused.retryAfterSeconds).toBeGreaterThan(3600);
      expect(refused.retryAfterSeconds).toBeLessThanOrEqual(2 * 3600);
    });

    it('a refused request does not count, and the window slides: no permanent lockout', async () => {
      const k = key();
      for (let i = 0; i < 5; i++) await store.consume(k, 5, HOUR, T0);
      for (let i = 0; i < 50; i++)
        expect((await store.consume(k, 5, HOUR, T0 + 10 * 60_000)).allowed).toBe(false);
      // Next window, 30 % in: 5 x 0.7 = 3.5 estimated, so one more is allowed.
      expect((await store.consume(k, 5, HOUR, T0 + HOUR + 0.3 * HOUR)).allowed).toBe(true);
      // Two windows later everything is forgotten.
      for (let i = 0; i < 5; i++) expect((await store.consume(k, 5, HOUR, T0 + 3 * HOUR)).allowed).toBe(true);
    });

    it('refund gives a request back', async () => {
      const k = key();
      const first = await store.consume(k, 2, HOUR, T0);
      await store.consume(k, 2, HOUR, T0);
      expect((await store.consume(k, 2, HOUR, T0)).allowed).toBe(false);
      await store.refund(k, HOUR, first.window);
      expect((await store.consume(k, 2, HOUR, T0)).allowed).toBe(true);
    });

    it('keys are independent', async () => {
      const a = key();
      const b = key();
      await store.consume(a, 1, HOUR, T0);
      expect((await store.consume(a, 1, HOUR, T0)).allowed).toBe(false);
      expect((await store.consume(b, 1, HOUR, T0)).allowed).toBe(true);
    });

    it('parallel requests never exceed the limit', async () => {
      const k = key();
      const results = await Promise.all(Array.from({ length: 40 }, () => store.consume(k, 15, HOUR, T0 + 5)));
      expect(results.filter((r) => r.allowed)).toHaveLength(15);
    });
  });
}

storeContract('in-memory store', () => new MemoryRateLimitStore());

describe.skipIf(!!missing)('Redis store', () => {
  storeContract('contract', () =>
    RedisRateLimitStore.connect(TEST_REDIS_URL, `steward-test:${randomUUID()}:`),
  );

  it('two clients (two instances) share one limit', async () => {
    const prefix = `steward-test:${randomUUID()}:`;
    const a = RedisRateLimitStore.connect(TEST_REDIS_URL, prefix);
    const b = RedisRateLimitStore.connect(TEST_REDIS_URL, prefix);
    try {
      await Promise.all([a.ready(), b.ready()]);
      for (let i = 0; i < 3; i++) expect((await a.consume('shared', 6, HOUR, T0)).allowed).toBe(true);
      for (let i = 0; i < 3; i++) expect((await b.consume('shared', 6, HOUR, T0)).allowed).toBe(true);
      expect((await a.consume('shared', 6, HOUR, T0)).allowed).toBe(false);
      expect((await b.consume('shared', 6, HOUR, T0)).allowed).toBe(false);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('decide', () => {
  it('weights the previous window by its overlap', () => {
    // Half-way through: 10 x 0.5 + 4 = 9 counted.
    expect(decide(10, HOUR, T0 + HOUR / 2, 4, 10)).toMatchObject({ allowed: true, remaining: 0 });
    expect(decide(10, HOUR, T0 + HOUR / 2, 5, 10)).toMatchObject({ allowed: false });
    // Allowed again when 10 x (1 - f) + 5 + 1 <= 10, i.e. at f = 0.6: 0.1 h = 360 s from now.
    expect(decide(10, HOUR, T0 + HOUR / 2, 5, 10).retryAfterSeconds).toBe(360);
  });
});

describe('when Redis is unreachable', () => {
  it('counts in memory instead, reports it, and does not make requests wait', async () => {
    const errors: unknown[] = [];
    const store = RedisRateLimitStore.connect('redis://127.0.0.1:1', 'steward-test:');
    const guard = new Guard({} as never, {
      limits: { ipRequestsPerMinute: 3 },
      store,
      onStoreError: (e) => errors.push(e),
    });
    try {
      const outcomes: boolean[] = [];
      const started = Date.now();
      for (let i = 0; i < 5; i++) outcomes.push((await guard.checkAddress('192.0.2.1')) === undefined);
      expect(outcomes).toEqual([true, true, true, false, false]);
      expect(errors.length).toBe(5);
      // One wait for the first connection (at most a second), then failing at once.
      expect(Date.now() - started).toBeLessThan(2500);
    } finally {
      await guard.close();
    }
  });
});
