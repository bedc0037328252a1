import { describe, expect, it } from 'vitest';
import { PageCache } from './page-cache.ts';

const A = '00000000-0000-4000-8000-00000000000a';
const B = '00000000-0000-4000-8000-00000000000b';
const body = (s: string) => Buffer.from(s);

function live(opts: Partial<ConstructorParameters<typeof PageCache>[0]> = {}) {
  let now = 1_000;
  const cache = new PageCache({ ttlMs: 1000, now: () => now, ...opts });
  cache.setLive(true);
  return { cache, advance: (ms: number) => (now += ms) };
}

function put(cache: PageCache, tenant: string, key: string, value: string): boolean {
  const ticket = cache.begin(tenant, key);
  if (!ticket) throw new Error('bypassed');
  return cache.store(ticket, body(value));
}

describe('PageCache', () => {
  it('keys by tenant: the same key of two tenants holds two pages', () => {
    const { cache } = live();
    put(cache, A, 'users?limit=50', 'a');
    put(cache, B, 'users?limit=50', 'b');
    expect(cache.get(A, 'users?limit=50')?.toString()).toBe('a');
    expect(cache.get(B, 'users?limit=50')?.toString()).toBe('b');
    expect(cache.get(A, 'users?limit=10')).toBeUndefined();
  });

  it('serves nothing and stores nothing until it is live, and is emptied when it stops', () => {
    const cache = new PageCache({ ttlMs: 1000 });
    expect(cache.begin(A, 'k')).toBeUndefined();
    cache.setLive(true);
    put(cache, A, 'k', 'a');
    const inFlight = cache.begin(A, 'k2')!;
    cache.setLive(false);
    expect(cache.get(A, 'k')).toBeUndefined();
    expect(cache.stats()).toMatchObject({ entries: 0, bytes: 0, live: false });
    cache.setLive(true);
    expect(cache.get(A, 'k')).toBeUndefined();
    // a build that began before the connection was lost is not stored after it is back
    expect(cache.store(inFlight, body('old'))).toBe(false);
  });

  it('expires an entry ttlMs after its build began, however late it was stored', () => {
    const { cache, advance } = live();
    const ticket = cache.begin(A, 'k')!;
    advance(600);
    expect(cache.store(ticket, body('a'))).toBe(true);
    advance(399);
    expect(cache.get(A, 'k')?.toString()).toBe('a');
    advance(1);
    expect(cache.get(A, 'k')).toBeUndefined();
    const late = cache.begin(A, 'k')!;
    advance(1000);
    expect(cache.store(late, body('a'))).toBe(false);
  });

  it('drops only the invalidated tenants', () => {
    const { cache } = live();
    put(cache, A, 'k', 'a');
    put(cache, B, 'k', 'b');
    cache.invalidate(A.toUpperCase());
    expect(cache.get(A, 'k')).toBeUndefined();
    expect(cache.get(B, 'k')?.toString()).toBe('b');
    put(cache, A, 'k', 'a');
    cache.invalidate(`${A},${B}`);
    expect(cache.stats().entries).toBe(0);
  });

  it("flushes on '*' and on anything that is not a list of tenant ids", () => {
    const { cache } = live();
    for (const announcement of ['*', 'garbage', `${A},not-a-uuid`, '']) {
      put(cache, A, 'k', 'a');
      put(cache, B, 'k', 'b');
      cache.invalidate(announcement);
      expect(cache.stats().entries).toBe(0);
    }
  });

  it('refuses a page whose tenant was invalidated while it was built (read before a write)', () => {
    const { cache } = live();
    const ticketA = cache.begin(A, 'k')!;
    const ticketB = cache.begin(B, 'k')!;
    cache.invalidate(A);
    expect(cache.store(ticketA, body('stale'))).toBe(false);
    expect(cache.get(A, 'k')).toBeUndefined();
    expect(cache.store(ticketB, body('b'))).toBe(true);
    // a build that began after the invalidation is stored
    expect(put(cache, A, 'k', 'fresh')).toBe(true);
    expect(cache.stats().refused).toBe(1);
  });

  it('refuses every build in flight after a flush', () => {
    const { cache } = live();
    const ticket = cache.begin(A, 'k')!;
    cache.flush();
    expect(cache.store(ticket, body('a'))).toBe(false);
  });

  it('evicts the least recently used beyond maxEntries and maxBytes', () => {
    const { cache } = live({ maxEntries: 2, maxBytes: 10 });
    put(cache, A, 'k1', '1');
    put(cache, A, 'k2', '2');
    expect(cache.get(A, 'k1')?.toString()).toBe('1'); // k1 is now the most recent
    put(cache, A, 'k3', '3');
    expect(cache.get(A, 'k2')).toBeUndefined();
    expect(cache.get(A, 'k1')?.toString()).toBe('1');
    put(cache, B, 'big', '123456789'); // three entries: k3, now the least recent, goes
    expect(cache.get(A, 'k3')).toBeUndefined();
    expect(cache.get(A, 'k1')?.toString()).toBe('1');
    expect(cache.stats()).toMatchObject({ entries: 2, bytes: 10 });
    put(cache, B, 'k4', '4'); // 11 bytes > 10: big, the least recent, goes
    expect(cache.get(B, 'big')).toBeUndefined();
    expect(cache.stats()).toMatchObject({ entries: 2, bytes: 2, evictions: 3 });
    expect(put(cache, B, 'huge', '12345678901')).toBe(false);
  });

  it('keeps its byte count when a page is replaced or invalidated', () => {
    const { cache } = live();
    put(cache, A, 'k', 'aaaa');
    put(cache, A, 'k', 'bb');
    expect(cache.stats().bytes).toBe(2);
    cache.invalidateTenant(A);
    expect(cache.stats()).toMatchObject({ entries: 0, bytes: 0 });
  });

  it('load: concurrent misses of one page build it once', async () => {
    const { cache } = live();
    let builds = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const build = async () => {
      builds++;
      await gate;
      return body('page');
    };
    const all = Promise.all([1, 2, 3].map(() => cache.load(A, 'k', build)));
    release();
    expect((await all).map(String)).toEqual(['page', 'page', 'page']);
    expect(builds).toBe(1);
    expect(cache.stats()).toMatchObject({ joined: 2, stores: 1 });
    expect((await cache.load(A, 'k', build)).toString()).toBe('page');
    expect(builds).toBe(1);
  });

  it('load: a request after an invalidation never joins a build that began before it', async () => {
    const { cache } = live();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const old = cache.load(A, 'k', async () => {
      await gate;
      return body('old');
    });
    cache.invalidate(A); // a write committed while the old build was in flight
    const fresh = cache.load(A, 'k', async () => body('new'));
    release();
    expect((await fresh).toString()).toBe('new');
    expect((await old).toString()).toBe('old'); // its own request was concurrent with the write
    expect(cache.get(A, 'k')?.toString()).toBe('new');
    expect(cache.stats()).toMatchObject({ joined: 0, refused: 1 });
  });

  it('load: builds every time while bypassed, and a failed build fails the requests that joined it', async () => {
    const cache = new PageCache({ ttlMs: 1000 });
    let builds = 0;
    const build = async () => body(String(++builds));
    await cache.load(A, 'k', build);
    await cache.load(A, 'k', build);
    expect(builds).toBe(2);
    cache.setLive(true);
    const failing = async () => {
      await new Promise((r) => setTimeout(r, 5));
      throw new Error('database down');
    };
    const results = await Promise.allSettled([cache.load(A, 'k', failing), cache.load(A, 'k', failing)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect((await cache.load(A, 'k', build)).toString()).toBe('3');
  });

  it('needs a positive ttl', () => {
    expect(() => new PageCache({ ttlMs: 0 })).toThrow(RangeError);
  });
});
