import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenantFixture, createTestApp, type TenantFixture, type TestApp } from '../testing/test-app.ts';

/**
 * Cross-site request forgery needs a credential the browser sends on its own: a cookie (or HTTP
 * authentication). Steward authenticates with `Authorization: Bearer` only, which a cross-site form
 * or fetch cannot set, and the dashboard keeps its tokens out of cookies. This suite proves it for
 * every state-changing route: a forged request that carries the owner's valid credentials in
 * cookies, from another origin, changes nothing. If a route ever starts reading a cookie, it fails
 * here and must gain CSRF protection first.
 */

const RANDOM_ID = '3f1c2a9e-7b4d-4e21-9a0c-5d6e7f809a1b';
const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/**
 * Public routes that authenticate with something other than a session: the sign-in steps (which
 * take the password, a one-time code or an IdP-signed answer in the body, never a cookie) and the
 * inbound hooks (a per-hook secret or signature). They are covered by their own suites.
 */
const OWN_AUTHENTICATION = /^\/(api\/v1\/(auth|sso)\/|hooks\/|scim\/)/;

let t: TestApp;
let a: TenantFixture;

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'csrf-a');
});
afterAll(() => t?.close());

describe('cookies never authenticate (no CSRF surface)', () => {
  it('refuses every state-changing route called with the credentials only in cookies, from another site', async () => {
    const routes = t.app.routeTable.filter(
      (r) => STATE_CHANGING.has(r.method) && !OWN_AUTHENTICATION.test(r.url) && r.access !== 'public',
    );
    expect(routes.length).toBeGreaterThan(60);
    const cookie = [
      `access_token=${a.token}`,
      `token=${a.token}`,
      `session=${a.token}`,
      `steward_session=${a.token}`,
      `refresh_token=${a.refreshToken}`,
      `api_key=${a.apiKey}`,
      `authorization=Bearer%20${a.token}`,
    ].join('; ');
    const auditBefore = await t.db.owner<{ n: string }[]>`select count(*) as n from audit_log
      where tenant_id = ${a.tenant.id} and outcome = 'success'`;
    const accepted: string[] = [];
    for (const route of routes) {
      const r = await t.app.inject({
        method: route.method as 'POST',
        url: route.url.replace(/:[A-Za-z]+/g, RANDOM_ID),
        headers: {
          cookie,
          origin: 'https://evil.example',
          referer: 'https://evil.example/attack.html',
          'sec-fetch-site': 'cross-site',
          'content-type': 'application/json',
        },
        payload: route.method === 'DELETE' ? undefined : '{}',
      });
      if (r.statusCode !== 401) accepted.push(`${route.method} ${route.url} -> ${r.statusCode}`);
    }
    expect(accepted).toEqual([]);
    const auditAfter = await t.db.owner<{ n: string }[]>`select count(*) as n from audit_log
      where tenant_id = ${a.tenant.id} and outcome = 'success'`;
    expect(auditAfter[0]!.n).toBe(auditBefore[0]!.n);
  });

  it('sets no cookie when signing in', async () => {
    const r = await t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/refresh',
      payload: { refreshToken: a.refreshToken },
    });
    expect(r.statusCode).toBe(200);
    expect(r.headers['set-cookie']).toBeUndefined();
  });
});
