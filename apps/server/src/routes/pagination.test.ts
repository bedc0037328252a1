import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addUser,
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

// Keyset cursors must carry the full (microsecond) timestamp: a millisecond cursor repeats the last
// item of every page.

let t: TestApp;
let a: TenantFixture;

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'pages');
  for (let i = 0; i < 6; i++) await addUser(t, a.tenant.id, `user${i}@pages.test`, 'viewer');
  for (let i = 0; i < 6; i++) {
    expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/events',
        headers: bearer(a.apiKey),
        payload: { source: 'api', type: 'note', subject: `note ${i}` },
      }),
      202,
    );
    expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/api-keys',
        headers: bearer(a.token),
        payload: { name: `key ${i}`, role: 'viewer' },
      }),
      201,
    );
  }
});
afterAll(() => t?.close());

async function walk(url: string): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 50; pages++) {
    const r = expectStatus(
      await t.app.inject({
        url: `${url}${url.includes('?') ? '&' : '?'}limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
        headers: bearer(a.token),
      }),
      200,
    ).json() as { items: { id: string }[]; nextCursor: string | null };
    ids.push(...r.items.map((x) => x.id));
    cursor = r.nextCursor;
    if (!cursor) return ids;
  }
  throw new Error('too many pages');
}

describe('paging through lists two at a time', () => {
  for (const [url, expected] of [
    ['/api/v1/users', 7],
    ['/api/v1/tasks', 6],
    ['/api/v1/api-keys', 7],
  ] as const) {
    it(`${url} returns every item exactly once`, async () => {
      const ids = await walk(url);
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids).toHaveLength(expected);
    });
  }
});
