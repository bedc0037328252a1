import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import { createApiKey } from '@steward/core/identity/api-key-service';
import { createRole } from '@steward/core/identity/role-service';
import { SYSTEM_ACTOR } from '@steward/core/resources';
import {
  addUser,
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

/**
 * Tenant A's owner token and admin API key against tenant B's objects: every route that takes an
 * id must answer 404 exactly as for an id that does not exist, and leave B's data as it was.
 */

const MISSING_ID = '9b2f4e61-0c3a-4d5e-8f70-112233445566';

interface Tenant {
  fx: TenantFixture;
  memberId: string;
  customRoleId: string;
  viewerRoleId: string;
  extraKeyId: string;
  extraKeyPrefix: string;
}

let t: TestApp;
let A: Tenant;
let B: Tenant;

async function seed(slug: string): Promise<Tenant> {
  const fx = await createTenantFixture(t, slug);
  const member = await addUser(t, fx.tenant.id, `member@${slug}.test`, 'member');
  const custom = await createRole(t.res, fx.tenant.id, SYSTEM_ACTOR, new Set(['tenant:read', 'tasks:read']), {
    name: 'custom',
    permissions: ['tenant:read', 'tasks:read'],
  });
  const roles = expectStatus(
    await t.app.inject({ url: '/api/v1/roles', headers: bearer(fx.token) }),
    200,
  ).json().items as { id: string; name: string }[];
  const extra = await createApiKey(t.res, fx.tenant.id, SYSTEM_ACTOR, { name: 'extra', role: 'viewer' });
  return {
    fx,
    memberId: member.id,
    customRoleId: custom.id,
    viewerRoleId: roles.find((r) => r.name === 'viewer')!.id,
    extraKeyId: extra.apiKey.id,
    extraKeyPrefix: extra.apiKey.prefix,
  };
}

beforeAll(async () => {
  t = await createTestApp();
  A = await seed('xt-alpha');
  B = await seed('xt-bravo');
});
afterAll(() => t?.close());

interface IdCase {
  /** Tenant B's objects this route is tried on. */
  targets: () => string[];
  /** A valid body, so that a 404 cannot hide behind a 400. */
  payload?: Record<string, unknown>;
  /** The URL for one target, for routes with parameters other than a single `:id`. */
  url?: (id: string) => string;
}

/**
 * One entry per route that takes an id. A new route with a parameter and no entry here fails the
 * first test below: add its case (and B's object for it to `seed`).
 */
const CASES: Record<string, IdCase> = {
  'GET /api/v1/users/:id': { targets: () => [B.memberId, bOwnerId] },
  'PATCH /api/v1/users/:id': {
    targets: () => [B.memberId, bOwnerId],
    payload: { name: 'taken over', role: 'viewer', status: 'disabled' },
  },
  'DELETE /api/v1/users/:id': { targets: () => [B.memberId, bOwnerId] },
  'GET /api/v1/roles/:id': { targets: () => [B.customRoleId, B.viewerRoleId] },
  'PATCH /api/v1/roles/:id': {
    targets: () => [B.customRoleId, B.viewerRoleId],
    payload: { description: 'taken over', permissions: ['tenant:read'] },
  },
  'DELETE /api/v1/roles/:id': { targets: () => [B.customRoleId, B.viewerRoleId] },
  'DELETE /api/v1/api-keys/:id': { targets: () => [B.extraKeyId, B.fx.apiKeyId] },
};

/** Tenant B's owner (its user id, from B's /me). */
let bOwnerId = '';

function paramRoutes() {
  return t.app.routeTable.filter((r) => r.url.startsWith('/api/v1/') && r.url.includes(':'));
}

/** Everything tenant B can see about itself, through its own API. */
async function snapshotB() {
  const get = async (url: string) =>
    expectStatus(await t.app.inject({ url, headers: bearer(B.fx.token) }), 200).json() as unknown;
  return {
    tenant: await get('/api/v1/tenant'),
    users: await get('/api/v1/users?limit=200'),
    member: await get(`/api/v1/users/${B.memberId}`),
    owner: await get(`/api/v1/users/${bOwnerId}`),
    roles: await get('/api/v1/roles?limit=200'),
    customRole: await get(`/api/v1/roles/${B.customRoleId}`),
    apiKeys: await get('/api/v1/api-keys?limit=200&includeRevoked=true'),
    audit: await get('/api/v1/audit?limit=200'),
    auditVerify: await get('/api/v1/audit/verify'),
  };
}

function errorWithoutRequestId(r: LightMyRequestResponse) {
  if (r.body === '') return { status: r.statusCode };
  const { code, message } = (r.json() as { error: { code: string; message: string } }).error;
  return { status: r.statusCode, code, message };
}

describe('routes that take an id', () => {
  beforeAll(async () => {
    const me = expectStatus(
      await t.app.inject({ url: '/api/v1/me', headers: bearer(B.fx.token) }),
      200,
    ).json();
    bOwnerId = me.user.id;
  });

  it('each has a cross-tenant case (add one for every new route with a parameter)', () => {
    const routes = paramRoutes();
    expect(routes.length).toBeGreaterThanOrEqual(7);
    const missing = routes
      .map((r) => `${r.method === 'HEAD' ? 'GET' : r.method} ${r.url}`)
      .filter((key) => !CASES[key]);
    expect(missing).toEqual([]);
    for (const key of Object.keys(CASES)) {
      expect(
        routes.some((r) => `${r.method} ${r.url}` === key),
        `${key} is no longer a route`,
      ).toBe(true);
    }
  });

  it("answer 404 to A's token and A's API key on B's objects, exactly like a missing id, and change nothing in B", async () => {
    const before = await snapshotB();
    // Mutations last, so that a leak in one route cannot hide a leak in a read.
    const order = ['GET', 'HEAD', 'PATCH', 'DELETE'];
    const routes = [...paramRoutes()].sort((x, y) => order.indexOf(x.method) - order.indexOf(y.method));
    let attempts = 0;
    for (const route of routes) {
      const c = CASES[`${route.method === 'HEAD' ? 'GET' : route.method} ${route.url}`]!;
      for (const [who, credential] of [
        ['token', A.fx.token],
        ['api key', A.fx.apiKey],
      ] as const) {
        const request = (id: string) =>
          t.app.inject({
            method: route.method as 'GET',
            url: c.url ? c.url(id) : route.url.replace(':id', id),
            headers: bearer(credential),
            ...(c.payload ? { payload: c.payload } : {}),
          });
        const missing = await request(MISSING_ID);
        expect(missing.statusCode, `${route.method} ${route.url} (${who}, missing id)`).toBe(404);
        for (const id of c.targets()) {
          const r = await request(id);
          attempts++;
          expect(r.statusCode, `${route.method} ${route.url} (${who}) on B's ${id}: ${r.body}`).toBe(404);
          expect(errorWithoutRequestId(r)).toEqual(errorWithoutRequestId(missing));
        }
      }
    }
    expect(attempts).toBeGreaterThanOrEqual(28);
    expect(await snapshotB()).toEqual(before);
    // B's credentials still work.
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(B.fx.apiKey) }), 200);
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(B.fx.token) }), 200);
  });

  it("still work on A's own objects (the 404s above are not a broken route)", async () => {
    const h = bearer(A.fx.token);
    expectStatus(await t.app.inject({ url: `/api/v1/users/${A.memberId}`, headers: h }), 200);
    expectStatus(await t.app.inject({ url: `/api/v1/roles/${A.customRoleId}`, headers: h }), 200);
    expectStatus(
      await t.app.inject({
        method: 'PATCH',
        url: `/api/v1/roles/${A.customRoleId}`,
        headers: bearer(A.fx.apiKey),
        payload: { description: 'changed by A' },
      }),
      200,
    );
    expectStatus(
      await t.app.inject({ method: 'DELETE', url: `/api/v1/api-keys/${A.extraKeyId}`, headers: h }),
      204,
    );
  });
});

describe('list endpoints', () => {
  it("never contain B's ids, emails or key prefixes", async () => {
    const bSecrets = async () => {
      const roles = expectStatus(
        await t.app.inject({ url: '/api/v1/roles?limit=200', headers: bearer(B.fx.token) }),
        200,
      ).json().items as { id: string }[];
      return [
        B.fx.tenant.id,
        B.fx.tenant.slug,
        B.fx.ownerEmail,
        'member@xt-bravo.test',
        bOwnerId,
        B.memberId,
        B.extraKeyId,
        B.extraKeyPrefix,
        B.fx.apiKeyId,
        B.fx.apiKey.slice(0, 16),
        ...roles.map((r) => r.id),
      ];
    };
    const forbidden = await bSecrets();
    expect(forbidden.length).toBeGreaterThan(15);

    const lists = t.app.routeTable.filter(
      (r) => r.method === 'GET' && r.url.startsWith('/api/v1/') && !r.url.includes(':'),
    );
    expect(lists.map((r) => r.url)).toEqual(
      expect.arrayContaining(['/api/v1/users', '/api/v1/roles', '/api/v1/api-keys', '/api/v1/audit']),
    );
    let answered = 0;
    for (const route of lists) {
      for (const credential of [A.fx.token, A.fx.apiKey]) {
        for (const query of ['', '?limit=200', '?limit=200&includeRevoked=true']) {
          const r = await t.app.inject({ url: route.url + query, headers: bearer(credential) });
          if (r.statusCode === 200) answered++;
          for (const secret of forbidden) {
            expect(r.body, `${route.url}${query} leaks ${secret}`).not.toContain(secret);
          }
        }
      }
    }
    expect(answered).toBeGreaterThan(20);
    // And A does see its own data there (the check above is not vacuous).
    const users = expectStatus(
      await t.app.inject({ url: '/api/v1/users', headers: bearer(A.fx.apiKey) }),
      200,
    ).body;
    expect(users).toContain(A.memberId);
    expect(users).toContain(A.fx.ownerEmail);
  });
});

describe('names that exist only in B', () => {
  it('a role of B answers like a role that does not exist', async () => {
    // B has a custom role named "b-only"; A has no such role.
    await createRole(t.res, B.fx.tenant.id, SYSTEM_ACTOR, new Set(['tenant:read']), {
      name: 'b-only',
      permissions: ['tenant:read'],
    });
    for (const [url, payload] of [
      ['/api/v1/api-keys', { name: 'k' }],
      ['/api/v1/users', { email: 'new@xt-alpha.test', password: 'long enough password' }],
    ] as const) {
      const bOnly = await t.app.inject({
        method: 'POST',
        url,
        headers: bearer(A.fx.token),
        payload: { ...payload, role: 'b-only' },
      });
      const none = await t.app.inject({
        method: 'POST',
        url,
        headers: bearer(A.fx.token),
        payload: { ...payload, role: 'no-such-role' },
      });
      expect(bOnly.statusCode).toBe(400);
      expect(none.statusCode).toBe(400);
      expect(bOnly.json().error.message.replace('b-only', 'X')).toBe(
        none.json().error.message.replace('no-such-role', 'X'),
      );
    }
  });

  it("switching to B's tenant answers like a tenant that does not exist", async () => {
    const toB = await t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/switch-tenant',
      headers: bearer(A.fx.token),
      payload: { tenant: 'xt-bravo' },
    });
    const toNothing = await t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/switch-tenant',
      headers: bearer(A.fx.token),
      payload: { tenant: 'xt-nothing' },
    });
    expect(toB.statusCode).toBe(404);
    expect(toNothing.statusCode).toBe(404);
    expect(toB.json().error.message.replace('xt-bravo', 'X')).toBe(
      toNothing.json().error.message.replace('xt-nothing', 'X'),
    );
  });
});
