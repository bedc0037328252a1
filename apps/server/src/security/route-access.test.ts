import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '@steward/core/identity/api-key-service';
import { isPermission } from '@steward/core/identity/permissions';
import { createRole } from '@steward/core/identity/role-service';
import { SYSTEM_ACTOR } from '@steward/core/resources';
import { buildApp } from '../app.ts';
import type { RouteRecord } from '../http/route-table.ts';
import {
  addUser,
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  loginAs,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

const SPECIAL_ACCESS = new Set(['public', 'authenticated', 'session', 'platform-admin']);
const RANDOM_ID = '3f1c2a9e-7b4d-4e21-9a0c-5d6e7f809a1b';

/** Routes under /api/v1 that declare no access, or an access level nobody can hold. */
function undeclaredApiRoutes(table: readonly RouteRecord[]): string[] {
  return table
    .filter((r) => r.url.startsWith('/api/'))
    .filter((r) => r.access === undefined || !(SPECIAL_ACCESS.has(r.access) || isPermission(r.access)))
    .map((r) => `${r.method} ${r.url}`);
}

const concrete = (url: string) => url.replace(/:[A-Za-z]+/g, RANDOM_ID);

function expectErrorShape(r: { statusCode: number; headers: Record<string, unknown>; json(): unknown }) {
  const body = r.json() as { error: { code: string; message: string; requestId: string } };
  expect(typeof body.error.code).toBe('string');
  expect(typeof body.error.message).toBe('string');
  expect(body.error.requestId).toBe(r.headers['x-request-id']);
  return body.error;
}

let t: TestApp;
let a: TenantFixture;
let powerless: { token: string; apiKey: string };

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'access-a');
  // A user and an API key whose role holds no permission at all.
  await createRole(t.res, a.tenant.id, SYSTEM_ACTOR, new Set(), { name: 'nothing', permissions: [] });
  await addUser(t, a.tenant.id, 'nobody@access-a.test', 'nothing');
  const session = await loginAs(t, 'nobody@access-a.test', 'access-a');
  const { key } = await createApiKey(t.res, a.tenant.id, SYSTEM_ACTOR, { name: 'nothing', role: 'nothing' });
  powerless = { token: session.accessToken, apiKey: key };
});
afterAll(() => t?.close());

describe('the route table', () => {
  it('records every route, with the access each declares', () => {
    const table = t.app.routeTable;
    const api = table.filter((r) => r.url.startsWith('/api/v1/'));
    // The walk below means nothing unless the table is really filled in.
    expect(api.length).toBeGreaterThan(20);
    expect(table).toContainEqual({ method: 'GET', url: '/api/v1/users/:id', access: 'users:read' });
    expect(table).toContainEqual({ method: 'POST', url: '/api/v1/auth/login', access: 'public' });
    expect(table).toContainEqual({ method: 'GET', url: '/healthz', access: undefined });
  });

  it('has no route under /api without a declared access (default deny is never the only guard)', () => {
    expect(undeclaredApiRoutes(t.app.routeTable)).toEqual([]);
  });

  it('has only the sign-in routes (password, MFA step, passkey, single sign-on) and refresh public under /api', () => {
    const publicRoutes = t.app.routeTable
      .filter((r) => r.url.startsWith('/api/') && r.access === 'public')
      .map((r) => `${r.method} ${r.url}`)
      .sort();
    expect(publicRoutes).toEqual([
      // Single sign-on: the flow authenticates with the identity provider's answer, then a one-time code.
      // The live stream authenticates with a single-use ticket in its query (EventSource sends no headers).
      'GET /api/v1/events/stream',
      'GET /api/v1/sso/:tenantSlug/:connectionId/callback',
      'GET /api/v1/sso/:tenantSlug/:connectionId/metadata',
      'GET /api/v1/sso/:tenantSlug/:connectionId/start',
      'HEAD /api/v1/events/stream',
      'HEAD /api/v1/sso/:tenantSlug/:connectionId/callback',
      'HEAD /api/v1/sso/:tenantSlug/:connectionId/metadata',
      'HEAD /api/v1/sso/:tenantSlug/:connectionId/start',
      'POST /api/v1/auth/login',
      'POST /api/v1/auth/mfa',
      'POST /api/v1/auth/mfa/enrol/totp',
      'POST /api/v1/auth/mfa/webauthn/options',
      'POST /api/v1/auth/passkey/options',
      'POST /api/v1/auth/passkey/verify',
      'POST /api/v1/auth/refresh',
      'POST /api/v1/auth/sso/exchange',
      // An invitation's token is its credential (a signed-in session is used when sent).
      'POST /api/v1/invitations/accept',
      'POST /api/v1/sso/:tenantSlug/:connectionId/callback',
    ]);
  });

  it('declares no access outside /api, where nothing is checked (so nothing there may need it)', () => {
    const misdeclared = t.app.routeTable.filter(
      (r) => !r.url.startsWith('/api/') && r.access !== undefined && r.access !== 'public',
    );
    expect(misdeclared).toEqual([]);
  });
});

describe('every declared route is enforced', () => {
  const protectedRoutes = () =>
    t.app.routeTable.filter((r) => r.url.startsWith('/api/') && r.access !== 'public');

  it('answers 401 without credentials', async () => {
    for (const route of protectedRoutes()) {
      const r = await t.app.inject({
        method: route.method as 'GET',
        url: concrete(route.url),
        ...(['POST', 'PATCH', 'PUT'].includes(route.method) ? { payload: {} } : {}),
      });
      expect(r.statusCode, `${route.method} ${route.url}`).toBe(401);
      if (route.method !== 'HEAD') expect(expectErrorShape(r).code).toBe('UNAUTHENTICATED');
    }
  });

  it('answers 403 to a user and an API key whose role lacks the permission', async () => {
    const needsPermission = protectedRoutes().filter((r) => r.access && isPermission(r.access));
    expect(needsPermission.length).toBeGreaterThan(15);
    for (const credential of [powerless.token, powerless.apiKey]) {
      for (const route of needsPermission) {
        const r = await t.app.inject({
          method: route.method as 'GET',
          url: concrete(route.url),
          headers: bearer(credential),
          ...(['POST', 'PATCH', 'PUT'].includes(route.method) ? { payload: {} } : {}),
        });
        expect(r.statusCode, `${route.method} ${route.url}`).toBe(403);
        if (route.method !== 'HEAD') expect(expectErrorShape(r).code).toBe('FORBIDDEN');
      }
    }
  });

  it('keeps platform-admin routes from tenant owners and session routes from API keys', async () => {
    for (const route of protectedRoutes()) {
      const payload = ['POST', 'PATCH', 'PUT'].includes(route.method) ? { payload: {} } : {};
      if (route.access === 'platform-admin') {
        const r = await t.app.inject({
          method: route.method as 'GET',
          url: concrete(route.url),
          headers: bearer(a.token),
          ...payload,
        });
        expect(r.statusCode, `${route.method} ${route.url}`).toBe(403);
      }
      if (route.access === 'session') {
        const r = await t.app.inject({
          method: route.method as 'GET',
          url: concrete(route.url),
          headers: bearer(a.apiKey),
          ...payload,
        });
        expect(r.statusCode, `${route.method} ${route.url}`).toBe(403);
      }
    }
  });

  it('audits denied requests in the caller tenant', async () => {
    const denied = expectStatus(
      await t.app.inject({
        url: '/api/v1/users',
        headers: { ...bearer(powerless.apiKey), 'x-request-id': 'denied-probe-1' },
      }),
      403,
    );
    expect(denied.json().error.message).toContain('users:read');
    const audit = expectStatus(
      await t.app.inject({ url: '/api/v1/audit?action=access.denied', headers: bearer(a.token) }),
      200,
    ).json() as { items: { requestId: string; outcome: string }[] };
    expect(audit.items).toContainEqual(
      expect.objectContaining({ requestId: 'denied-probe-1', outcome: 'denied' }),
    );
  });
});

describe('a route that forgets to declare its access', () => {
  it('is found by the walk and denied with 403, even with valid credentials', async () => {
    const app = await buildApp(t.res, { expectedSchemaVersion: 1 });
    try {
      let handlerRan = false;
      await app.register(
        async (api) => {
          api.get('/forgotten', async () => {
            handlerRan = true;
            return { secret: 'should never be served' };
          });
          api.post('/forgotten', async () => {
            handlerRan = true;
            return { ok: true };
          });
        },
        { prefix: '/api/v1' },
      );
      await app.ready();

      expect(undeclaredApiRoutes(app.routeTable)).toEqual(
        expect.arrayContaining(['GET /api/v1/forgotten', 'POST /api/v1/forgotten']),
      );
      for (const headers of [{}, bearer(a.token), bearer(a.apiKey)]) {
        const get = expectStatus(await app.inject({ url: '/api/v1/forgotten', headers }), 403);
        expect(expectErrorShape(get).code).toBe('FORBIDDEN');
        expect(get.body).not.toContain('should never be served');
        expectStatus(
          await app.inject({ method: 'POST', url: '/api/v1/forgotten', headers, payload: {} }),
          403,
        );
      }
      expect(handlerRan).toBe(false);
    } finally {
      await app.close();
    }
  });

  it('outside /api, declaring a permission fails closed instead of being silently ignored', async () => {
    const app = await buildApp(t.res, { expectedSchemaVersion: 1 });
    try {
      app.get('/not-api', { config: { access: 'users:read' } }, async () => ({ secret: 'leaked' }));
      await app.ready();
      const r = await app.inject({ url: '/not-api', headers: bearer(a.token) });
      expect(r.statusCode).toBe(500);
      expect(r.body).not.toContain('leaked');
      expect(expectErrorShape(r).code).toBe('INTERNAL');
    } finally {
      await app.close();
    }
  });
});

describe('SCIM routes (public to Fastify, guarded by their own SCIM token)', () => {
  it('answer 401 in the SCIM error format without a SCIM token, to users and to API keys alike', async () => {
    const scim = t.app.routeTable.filter((r) => r.url.startsWith('/scim/v2/'));
    expect(scim.length).toBeGreaterThanOrEqual(11);
    for (const route of scim) {
      expect(route.access, `${route.method} ${route.url}`).toBe('public');
      for (const headers of [
        {},
        bearer(a.token),
        bearer(a.apiKey),
        bearer('scim_AAAAAAAAAAAA_' + 'B'.repeat(40)),
      ]) {
        const r = await t.app.inject({
          method: route.method as 'GET',
          url: concrete(route.url),
          headers,
          ...(['POST', 'PATCH', 'PUT'].includes(route.method) ? { payload: {} } : {}),
        });
        expect(r.statusCode, `${route.method} ${route.url}`).toBe(401);
        if (route.method !== 'HEAD')
          expect(r.json().schemas).toEqual(['urn:ietf:params:scim:api:messages:2.0:Error']);
      }
    }
  });
});
