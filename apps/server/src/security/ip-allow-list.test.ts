import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

let t: TestApp;
let a: TenantFixture;
let b: TenantFixture;

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'allow-a');
  b = await createTenantFixture(t, 'allow-b');
});
afterAll(() => t.close());

function get(token: string, remoteAddress: string) {
  return t.app.inject({ method: 'GET', url: '/api/v1/tenant', headers: bearer(token), remoteAddress });
}

function put(token: string, body: object, remoteAddress = '127.0.0.1') {
  return t.app.inject({
    method: 'PUT',
    url: '/api/v1/tenant/ip-allow-list',
    headers: bearer(token),
    payload: body,
    remoteAddress,
  });
}

describe('tenant IP allow-list', () => {
  it('starts empty (every address may call)', async () => {
    const r = expectStatus(
      await t.app.inject({ method: 'GET', url: '/api/v1/tenant/ip-allow-list', headers: bearer(a.token) }),
      200,
    );
    expect(r.json()).toEqual({ entries: [] });
    expectStatus(await get(a.apiKey, '203.0.113.50'), 200);
  });

  it('rejects malformed entries, naming them', async () => {
    const r = expectStatus(await put(a.token, { entries: ['10.0.0.0/33'] }), 400);
    expect(r.json().error.message).toContain('10.0.0.0/33');
    expectStatus(await put(a.token, { entries: ['not-an-ip'] }), 400);
    expectStatus(await put(a.token, { entries: ['2001:db8::/129'] }), 400);
  });

  it('refuses a list that would lock the caller out, unless forced', async () => {
    const r = expectStatus(await put(a.token, { entries: ['10.0.0.0/8'] }, '192.0.2.1'), 409);
    expect(r.json().error.message).toContain('192.0.2.1');
    expectStatus(await get(a.token, '192.0.2.1'), 200);
  });

  it('applies IPv4 and IPv6 CIDRs (and IPv4-mapped IPv6) to API keys and sessions', async () => {
    const saved = expectStatus(
      await put(a.token, { entries: ['127.0.0.1', '10.1.0.0/16', '2001:db8:abcd::/48'] }),
      200,
    ).json();
    expect(saved.entries).toEqual(['127.0.0.1/32', '10.1.0.0/16', '2001:db8:abcd::/48']);
    for (const token of [a.apiKey, a.token]) {
      expectStatus(await get(token, '10.1.200.3'), 200);
      expectStatus(await get(token, '::ffff:10.1.2.3'), 200);
      expectStatus(await get(token, '2001:db8:abcd:12::5'), 200);
      const refused = expectStatus(await get(token, '10.2.0.1'), 403);
      expect(refused.json().error.code).toBe('IP_NOT_ALLOWED');
      expect(expectStatus(await get(token, '2001:db8:abce::1'), 403).json().error.code).toBe(
        'IP_NOT_ALLOWED',
      );
      expect(expectStatus(await get(token, '::ffff:10.2.0.1'), 403).json().error.code).toBe('IP_NOT_ALLOWED');
    }
    // Another tenant is not affected.
    expectStatus(await get(b.apiKey, '10.2.0.1'), 200);
    expectStatus(await get(b.token, '2001:db8:ffff::1'), 200);
  });

  it('an IPv4-mapped IPv6 range works like its IPv4 range; force saves a list without the caller', async () => {
    expectStatus(await put(a.token, { entries: ['::ffff:172.16.0.0/108'], force: true }), 200);
    expectStatus(await get(a.apiKey, '172.16.5.5'), 200);
    expect(expectStatus(await get(a.apiKey, '127.0.0.1'), 403).json().error.code).toBe('IP_NOT_ALLOWED');
    // From an allowed address the owner clears it again.
    expect(expectStatus(await put(a.token, { entries: [] }, '172.16.0.9'), 200).json()).toEqual({
      entries: [],
    });
    expectStatus(await get(a.apiKey, '203.0.113.50'), 200);
  });

  it('every change is audited with before and after', async () => {
    const r = expectStatus(
      await t.app.inject({
        method: 'GET',
        url: '/api/v1/audit?action=tenant.ip_allow_list.updated&limit=10',
        headers: bearer(a.token),
      }),
      200,
    );
    const items = r.json().items as { details: { after: string[]; forced: boolean } }[];
    expect(items.length).toBeGreaterThanOrEqual(3);
    expect(items.some((i) => i.details.forced === true)).toBe(true);
  });

  it('refused requests are audited (at most once a minute per address)', async () => {
    const r = expectStatus(
      await t.app.inject({
        method: 'GET',
        url: '/api/v1/audit?action=access.ip_not_allowed&limit=50',
        headers: bearer(a.token),
      }),
      200,
    );
    const items = r.json().items as { outcome: string; ip: string | null; actorType: string }[];
    expect(items.length).toBeGreaterThanOrEqual(2);
    expect(items.every((i) => i.outcome === 'denied')).toBe(true);
    // 10.2.0.1 was refused for the key and the session, then again mapped: one entry.
    expect(items.filter((i) => i.ip === '10.2.0.1')).toHaveLength(1);
  });

  it('the list cannot be written through PATCH /tenant settings', async () => {
    const r = await t.app.inject({
      method: 'PATCH',
      url: '/api/v1/tenant',
      headers: bearer(a.token),
      payload: { settings: { ipAllowList: ['10.0.0.0/8'] } },
    });
    expectStatus(r, 400);
  });
});

describe('tenant and API key quotas', () => {
  it('answers 429 RATE_LIMITED with Retry-After once the tenant quota is used up', async () => {
    const set = expectStatus(
      await t.app.inject({
        method: 'PUT',
        url: '/api/v1/tenant/rate-limits',
        headers: bearer(b.token),
        payload: { apiKeyRequestsPerMinute: 5 },
      }),
      200,
    );
    expect(set.json()).toMatchObject({
      apiKeyRequestsPerMinute: 5,
      effective: { apiKeyRequestsPerMinute: 5 },
    });
    const statuses: number[] = [];
    let last;
    for (let i = 0; i < 8; i++) {
      last = await get(b.apiKey, '127.0.0.1');
      statuses.push(last.statusCode);
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
    expect(last!.headers['retry-after']).toMatch(/^\d+$/);
    expect(last!.json().error).toMatchObject({ code: 'RATE_LIMITED', details: { scope: 'api_key' } });
    // The owner's session is not an API key: not limited by that quota.
    expectStatus(await get(b.token, '127.0.0.1'), 200);
    // Tenant A is untouched.
    expectStatus(await get(a.apiKey, '127.0.0.1'), 200);
  });
});
