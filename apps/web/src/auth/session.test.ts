import { describe, expect, it } from 'vitest';
import type { Tokens } from '../api/types.ts';
import { Session, STORAGE_KEY, type KeyValueStore } from './session.ts';

function memoryStorage(): KeyValueStore & { data: Map<string, string> } {
  const data = new Map<string, string>();
  return {
    data,
    getItem: (k) => data.get(k) ?? null,
    setItem: (k, v) => void data.set(k, v),
    removeItem: (k) => void data.delete(k),
  };
}

const tokens = (n: number): Tokens => ({
  accessToken: `at${n}`,
  refreshToken: `rt${n}`,
  expiresIn: 900,
  user: { id: 'u', email: 'me@x.test', name: 'Me', isPlatformAdmin: false },
  tenant: { id: 't', slug: 'x', name: 'X' },
});

type Handler = (url: string, init: RequestInit) => Response | Promise<Response>;
const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

function fakeFetch(handler: Handler) {
  const calls: { url: string; body?: unknown; auth?: string | undefined }[] = [];
  const f = (async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = String(input);
    const headers = (init.headers ?? {}) as Record<string, string>;
    calls.push({
      url,
      body: init.body ? JSON.parse(String(init.body)) : undefined,
      auth: headers.authorization,
    });
    return handler(url, init);
  }) as typeof fetch;
  return { f, calls };
}

describe('session', () => {
  it('signs in, keeps the access token in memory and only the refresh token (and who) in storage', async () => {
    const storage = memoryStorage();
    const { f } = fakeFetch(() => json(200, tokens(1)));
    const s = new Session(storage, { fetch: f });
    await s.signIn('me@x.test', 'pw');
    expect(s.current).toMatchObject({ status: 'signed-in', tenant: { slug: 'x' } });
    const stored = storage.data.get(STORAGE_KEY)!;
    expect(JSON.parse(stored).refreshToken).toBe('rt1');
    expect(stored).not.toContain('at1');
  });

  it('asks for the second factor when the login answers mfaRequired, then takes the tokens', async () => {
    const { f, calls } = fakeFetch((url) =>
      url.endsWith('/auth/login')
        ? json(200, { mfaRequired: true, mfaToken: 'mt', methods: ['totp'] })
        : json(200, tokens(1)),
    );
    const s = new Session(memoryStorage(), { fetch: f });
    await s.signIn('me@x.test', 'pw');
    expect(s.current).toMatchObject({ status: 'mfa', challenge: { mfaToken: 'mt' } });
    await s.verifyMfa('123456');
    expect(calls[1]).toMatchObject({ url: '/api/v1/auth/mfa', body: { mfaToken: 'mt', code: '123456' } });
    expect(s.current.status).toBe('signed-in');
  });

  it('renews silently on a 401 and retries the request once', async () => {
    let now = 0;
    const { f, calls } = fakeFetch((url, init) => {
      if (url.endsWith('/auth/login')) return json(200, tokens(1));
      if (url.endsWith('/auth/refresh')) return json(200, tokens(2));
      const auth = (init.headers as Record<string, string>).authorization;
      return auth === 'Bearer at2'
        ? json(200, { items: [], nextCursor: null })
        : json(401, { error: { code: 'UNAUTHENTICATED', message: 'expired' } });
    });
    const s = new Session(memoryStorage(), { fetch: f, now: () => now });
    await s.signIn('me@x.test', 'pw');
    now = 1000; // still valid locally, but the server says no (revoked key rotation, clock skew…)
    await s.api.tasks();
    expect(calls.map((c) => c.url.replace('/api/v1', ''))).toEqual([
      '/auth/login',
      '/tasks?limit=200',
      '/auth/refresh',
      '/tasks?limit=200',
    ]);
    expect(calls[2]!.body).toEqual({ refreshToken: 'rt1' });
  });

  it('refreshes before the access token expires, one refresh for concurrent requests', async () => {
    let now = 0;
    let refreshes = 0;
    const { f } = fakeFetch(async (url) => {
      if (url.endsWith('/auth/login')) return json(200, tokens(1));
      if (url.endsWith('/auth/refresh')) {
        refreshes++;
        await new Promise((r) => setTimeout(r, 10));
        return json(200, tokens(2));
      }
      return json(200, { items: [], nextCursor: null });
    });
    const s = new Session(memoryStorage(), { fetch: f, now: () => now });
    await s.signIn('me@x.test', 'pw');
    now = 900_000;
    await Promise.all([s.api.tasks(), s.api.approvals(), s.api.tasks()]);
    expect(refreshes).toBe(1);
  });

  it('ends the session with a message when the refresh token is refused, and erases it', async () => {
    const storage = memoryStorage();
    storage.setItem(
      STORAGE_KEY,
      JSON.stringify({ refreshToken: 'old', user: tokens(1).user, tenant: tokens(1).tenant }),
    );
    const { f } = fakeFetch(() =>
      json(401, { error: { code: 'UNAUTHENTICATED', message: 'refresh token expired' } }),
    );
    const s = new Session(storage, { fetch: f });
    await s.start();
    expect(s.current).toEqual({
      status: 'signed-out',
      message: 'Your session expired. Please sign in again.',
    });
    expect(storage.data.has(STORAGE_KEY)).toBe(false);
  });

  it('starts offline with the stored identity when the server cannot be reached', async () => {
    const storage = memoryStorage();
    storage.setItem(
      STORAGE_KEY,
      JSON.stringify({ refreshToken: 'rt', user: tokens(1).user, tenant: tokens(1).tenant }),
    );
    const { f } = fakeFetch(() => {
      throw new TypeError('Failed to fetch');
    });
    const s = new Session(storage, { fetch: f });
    await s.start();
    expect(s.current).toMatchObject({ status: 'offline', tenant: { slug: 'x' } });
    expect(storage.data.has(STORAGE_KEY)).toBe(true);
  });
});
