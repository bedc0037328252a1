import { describe, expect, it } from 'vitest';
import type { Tokens } from '../api/types.ts';
import { Session, STORAGE_KEY, type KeyValueStore } from '../auth/session.ts';
import { BOARD_PAGE_SIZE, FIRST_LOAD_MAX_AGE_MS, FirstLoad } from './first-load.ts';

const tokens = (tenantId: string): Tokens => ({
  accessToken: 'at',
  refreshToken: 'rt2',
  expiresIn: 900,
  user: { id: 'u', email: 'me@x.test', name: 'Me', isPlatformAdmin: false },
  tenant: { id: tenantId, slug: tenantId, name: tenantId },
});

const stored = (tenantId: string) => {
  const { user, tenant } = tokens(tenantId);
  return JSON.stringify({ refreshToken: 'rt1', user, tenant });
};

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

/** A session resumed from storage, against a fake API; the clock is the test's. */
function setup(opts: { refresh?: () => Response; stored?: boolean } = {}) {
  const data = new Map<string, string>();
  if (opts.stored !== false) data.set(STORAGE_KEY, stored('t1'));
  const storage: KeyValueStore = {
    getItem: (k) => data.get(k) ?? null,
    setItem: (k, v) => void data.set(k, v),
    removeItem: (k) => void data.delete(k),
  };
  const calls: { url: string; auth: string | undefined }[] = [];
  const f = (async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = String(input);
    calls.push({ url, auth: (init.headers as Record<string, string>).authorization });
    if (url.endsWith('/auth/refresh')) return opts.refresh?.() ?? json(200, tokens('t1'));
    if (url.includes('/tasks?')) return json(200, { items: [{ id: 'task-1' }], nextCursor: null });
    return json(404, { error: { code: 'NOT_FOUND', message: 'no' } });
  }) as typeof fetch;
  let now = 1_000_000;
  const session = new Session(storage, { fetch: f });
  const firstLoad = new FirstLoad(session, () => now);
  return { session, firstLoad, calls, tick: (ms: number) => (now += ms) };
}

describe('first load', () => {
  it('asks for the board once the resumed session is signed in, with the new access token', async () => {
    const { session, firstLoad, calls } = setup();
    await session.start();
    const tasks = firstLoad.takeTasks('t1');
    expect(tasks).toBeDefined();
    expect((await tasks)!.items).toEqual([{ id: 'task-1' }]);
    const request = calls.find((c) => c.url.includes('/tasks?'))!;
    expect(request.url).toContain(`limit=${BOARD_PAGE_SIZE}`);
    expect(request.auth).toBe('Bearer at');
  });

  it('gives the list once, and only for the tenant it was asked for', async () => {
    const { session, firstLoad } = setup();
    await session.start();
    expect(firstLoad.takeTasks('t2')).toBeUndefined();
    // Taken (and dropped) by the wrong tenant: nothing left for anyone.
    expect(firstLoad.takeTasks('t1')).toBeUndefined();

    const again = setup();
    await again.session.start();
    expect(again.firstLoad.takeTasks('t1')).toBeDefined();
    expect(again.firstLoad.takeTasks('t1')).toBeUndefined();
  });

  it('does not hand out a list older than the limit', async () => {
    const { session, firstLoad, tick } = setup();
    await session.start();
    tick(FIRST_LOAD_MAX_AGE_MS + 1);
    expect(firstLoad.takeTasks('t1')).toBeUndefined();
  });

  it('asks for nothing when the session cannot be resumed, nor for a later sign-in', async () => {
    const { session, firstLoad, calls } = setup({
      refresh: () => json(401, { error: { code: 'UNAUTHORIZED', message: 'expired' } }),
    });
    await session.start();
    expect(session.current.status).toBe('signed-out');
    expect(firstLoad.takeTasks('t1')).toBeUndefined();
    expect(calls.some((c) => c.url.includes('/tasks?'))).toBe(false);
  });

  it('asks for nothing without a stored session', async () => {
    const { session, firstLoad, calls } = setup({ stored: false });
    await session.start();
    expect(firstLoad.takeTasks('t1')).toBeUndefined();
    expect(calls).toEqual([]);
  });

  it('a failed prefetch is reported to whoever takes it, not as an unhandled rejection', async () => {
    const data = new Map([[STORAGE_KEY, stored('t1')]]);
    const storage: KeyValueStore = {
      getItem: (k) => data.get(k) ?? null,
      setItem: (k, v) => void data.set(k, v),
      removeItem: (k) => void data.delete(k),
    };
    const f = (async (input: RequestInfo | URL) =>
      String(input).endsWith('/auth/refresh')
        ? json(200, tokens('t1'))
        : json(500, { error: { code: 'INTERNAL', message: 'boom' } })) as typeof fetch;
    const session = new Session(storage, { fetch: f });
    const firstLoad = new FirstLoad(session);
    await session.start();
    await new Promise((r) => setTimeout(r, 10));
    await expect(firstLoad.takeTasks('t1')).rejects.toMatchObject({ status: 500, code: 'INTERNAL' });
  });
});
