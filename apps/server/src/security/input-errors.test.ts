import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { buildApp } from '../app.ts';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

/** Bad input answers a 4xx in the one error shape, naming the field, and never shows internals. */

const STACK = /\bat (?:async )?[\w.<>[\]]+ \(|\bat (?:file|node):|node_modules|\.[cm]?[jt]s:\d+:\d+/;

let t: TestApp;
let a: TenantFixture;
let userId: string;
let roleId: string;
/** Every answer in this file, to check the error shape and the absence of stack traces. */
const seen: LightMyRequestResponse[] = [];

async function call(opts: InjectOptions, app: FastifyInstance = t.app): Promise<LightMyRequestResponse> {
  const r = await app.inject(opts);
  seen.push(r);
  return r;
}

const owner = () => bearer(a.token);

function expectError(r: LightMyRequestResponse, status: number, code: string) {
  expect(r.statusCode, r.body).toBe(status);
  const body = r.json() as { error: { code: string; message: string; requestId: string } };
  expect(body.error.code).toBe(code);
  return body.error.message;
}

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'input-a');
  userId = expectStatus(await t.app.inject({ url: '/api/v1/me', headers: owner() }), 200).json().user.id;
  roleId = expectStatus(
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/roles',
      headers: owner(),
      payload: { name: 'custom', permissions: ['tenant:read'] },
    }),
    201,
  ).json().id;
});
afterAll(() => t?.close());

describe('validation', () => {
  it('rejects unknown fields with 400 VALIDATION_FAILED naming the field', async () => {
    const cases: [string, string, Record<string, unknown>][] = [
      ['POST', '/api/v1/auth/login', { email: 'x@input-a.test', password: 'whatever', isAdmin: true }],
      ['POST', '/api/v1/auth/refresh', { refreshToken: 'rt_x', tenantId: a.tenant.id }],
      ['POST', '/api/v1/auth/switch-tenant', { tenant: 'input-a', role: 'owner' }],
      ['POST', '/api/v1/users', { email: 'new@input-a.test', role: 'viewer', isPlatformAdmin: true }],
      ['PATCH', `/api/v1/users/${userId}`, { name: 'x', email: 'x@evil.test' }],
      ['POST', '/api/v1/roles', { name: 'r2', permissions: [], builtin: true }],
      ['PATCH', `/api/v1/roles/${roleId}`, { description: 'x', name: 'owner' }],
      ['POST', '/api/v1/api-keys', { name: 'k', role: 'viewer', tenantId: a.tenant.id }],
      ['PATCH', '/api/v1/tenant', { name: 'x', status: 'suspended' }],
      ['POST', '/api/v1/tenants', { slug: 'x1', name: 'x', ownerEmail: 'o@x.test', plan: 'free' }],
    ];
    for (const [method, url, payload] of cases) {
      const field = Object.keys(payload).at(-1)!;
      const headers = url.endsWith('/tenants') ? {} : owner();
      const r = await call({ method: method as 'POST', url, headers, payload });
      if (url.endsWith('/tenants')) {
        expect(r.statusCode).toBe(401); // platform-admin only: refused before the body is read
        continue;
      }
      const message = expectError(r, 400, 'VALIDATION_FAILED');
      expect(message, `${method} ${url}`).toContain(field);
    }
  });

  it('rejects unknown query parameters, naming them', async () => {
    for (const url of ['/api/v1/users?tenant=x', '/api/v1/roles?tenantId=x', '/api/v1/audit?sql=1']) {
      const message = expectError(await call({ url, headers: owner() }), 400, 'VALIDATION_FAILED');
      expect(message).toMatch(/querystring\/(tenant|tenantId|sql)\b/);
    }
  });

  it('names a missing field', async () => {
    const cases: [string, Record<string, unknown>, string][] = [
      ['/api/v1/auth/login', { email: 'x@input-a.test' }, 'password'],
      ['/api/v1/auth/refresh', {}, 'refreshToken'],
      ['/api/v1/users', { email: 'new@input-a.test' }, 'role'],
      ['/api/v1/roles', { name: 'r3' }, 'permissions'],
      ['/api/v1/api-keys', { role: 'viewer' }, 'name'],
    ];
    for (const [url, payload, field] of cases) {
      const message = expectError(
        await call({ method: 'POST', url, headers: owner(), payload }),
        400,
        'VALIDATION_FAILED',
      );
      expect(message, url).toContain(field);
    }
    // A new user needs a password (only an existing account may be added without one).
    const message = expectError(
      await call({
        method: 'POST',
        url: '/api/v1/users',
        headers: owner(),
        payload: { email: 'brand-new@input-a.test', role: 'viewer' },
      }),
      400,
      'VALIDATION_FAILED',
    );
    expect(message).toContain('password');
  });

  it('names a field of the wrong type or format', async () => {
    const cases: [string, string, Record<string, unknown>, string][] = [
      ['POST', '/api/v1/auth/login', { email: 'not an email', password: 'x' }, 'email'],
      [
        'POST',
        '/api/v1/users',
        { email: 'n@input-a.test', role: 'Not A Role!', password: 'x'.repeat(12) },
        'role',
      ],
      ['POST', '/api/v1/roles', { name: 'r4', permissions: ['root:everything'] }, 'permissions'],
      ['POST', '/api/v1/api-keys', { name: 'k', role: 'viewer', expiresAt: 'tomorrow' }, 'expiresAt'],
      ['PATCH', `/api/v1/users/${userId}`, { status: 'deleted' }, 'status'],
      ['PATCH', '/api/v1/tenant', { settings: 'nope' }, 'settings'],
      ['PATCH', '/api/v1/tenant', {}, 'body'],
    ];
    for (const [method, url, payload, field] of cases) {
      const message = expectError(
        await call({ method: method as 'POST', url, headers: owner(), payload }),
        400,
        'VALIDATION_FAILED',
      );
      expect(message, `${method} ${url}`).toContain(field);
    }
  });

  it('rejects bad paging parameters', async () => {
    // 1e309 is Infinity once coerced, which ajv lets through its integer and range checks.
    for (const q of [
      'limit=0',
      'limit=201',
      'limit=abc',
      'limit=1&limit=2',
      'limit=1e309',
      'cursor=not-a-cursor',
    ]) {
      const message = expectError(
        await call({ url: `/api/v1/users?${q}`, headers: owner() }),
        400,
        'VALIDATION_FAILED',
      );
      expect(message, q).toMatch(/limit|cursor/);
    }
  });

  it('answers 400 naming the parameter for an id that is not a uuid, on every route that takes one', async () => {
    const routes = t.app.routeTable.filter(
      (r) => r.url.startsWith('/api/v1/') && r.url.includes(':id') && r.method !== 'HEAD',
    );
    expect(routes.length).toBeGreaterThanOrEqual(7);
    for (const route of routes) {
      for (const bad of ['not-a-uuid', '1', "1'%20or%201=1", '00000000-0000-0000-0000-00000000000g']) {
        const r = await call({
          method: route.method as 'GET',
          url: route.url.replace(':id', bad),
          headers: owner(),
          ...(route.method === 'PATCH' ? { payload: { description: 'x' } } : {}),
        });
        const message = expectError(r, 400, 'VALIDATION_FAILED');
        expect(message, `${route.method} ${route.url} ${bad}`).toContain('params/id');
      }
    }
  });
});

describe('bodies', () => {
  const json = { 'content-type': 'application/json' };

  it('invalid JSON is 400 BAD_REQUEST', async () => {
    for (const payload of ['{', '{"email":', "{'a':1}", '{"a":1}}', 'undefined', '\u0000']) {
      expectError(
        await call({ method: 'POST', url: '/api/v1/auth/login', headers: json, payload }),
        400,
        'BAD_REQUEST',
      );
    }
  });

  it('an empty JSON body and prototype poisoning are 400 BAD_REQUEST', async () => {
    expectError(
      await call({ method: 'POST', url: '/api/v1/auth/login', headers: json, payload: '' }),
      400,
      'BAD_REQUEST',
    );
    for (const payload of [
      '{"email":"x@input-a.test","password":"x","__proto__":{"isPlatformAdmin":true}}',
      '{"email":"x@input-a.test","password":"x","constructor":{"prototype":{"isPlatformAdmin":true}}}',
    ]) {
      expectError(
        await call({ method: 'POST', url: '/api/v1/auth/login', headers: json, payload }),
        400,
        'BAD_REQUEST',
      );
    }
  });

  it('a body that is JSON but not an object is 400 VALIDATION_FAILED', async () => {
    for (const payload of ['[]', '"text"', '42', 'null', 'true']) {
      expectError(
        await call({ method: 'POST', url: '/api/v1/auth/login', headers: json, payload }),
        400,
        'VALIDATION_FAILED',
      );
    }
  });

  it('only JSON is accepted: any other content type is 415, including the ones a cross-site form can send', async () => {
    const body = JSON.stringify({ email: 'owner@input-a.test', password: 'correct horse battery' });
    for (const type of [
      'text/plain',
      'text/plain;charset=utf-8',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/xml',
      'application/jsonp',
    ]) {
      const login = await call({
        method: 'POST',
        url: '/api/v1/auth/login',
        headers: { 'content-type': type },
        payload: body,
      });
      expectError(login, 415, 'UNSUPPORTED_MEDIA_TYPE');
      // Also on a route that takes no body.
      const logout = await call({
        method: 'POST',
        url: '/api/v1/auth/logout',
        headers: { ...owner(), 'content-type': type },
        payload: 'x',
      });
      expectError(logout, 415, 'UNSUPPORTED_MEDIA_TYPE');
    }
    // The session survived the refused logouts.
    expectStatus(await call({ url: '/api/v1/me', headers: owner() }), 200);
    // JSON with a charset is fine.
    expectStatus(
      await call({
        method: 'POST',
        url: '/api/v1/auth/login',
        headers: { 'content-type': 'application/json; charset=utf-8' },
        payload: body,
      }),
      200,
    );
  });

  it('a body over the configured limit is 413', async () => {
    const small = await createTestApp({ env: { STEWARD_BODY_LIMIT: '2048' }, database: t.db });
    try {
      const big = JSON.stringify({ email: 'owner@input-a.test', password: 'x'.repeat(3000) });
      expectError(
        await call({ method: 'POST', url: '/api/v1/auth/login', headers: json, payload: big }, small.app),
        413,
        'PAYLOAD_TOO_LARGE',
      );
      const settings = JSON.stringify({ settings: { blob: 'y'.repeat(4000) } });
      expectError(
        await call(
          { method: 'PATCH', url: '/api/v1/tenant', headers: { ...json, ...owner() }, payload: settings },
          small.app,
        ),
        413,
        'PAYLOAD_TOO_LARGE',
      );
      // Under the limit the body is read (and here validated).
      const fits = JSON.stringify({ email: 'owner@input-a.test', password: 'x'.repeat(1500) });
      expectError(
        await call({ method: 'POST', url: '/api/v1/auth/login', headers: json, payload: fits }, small.app),
        400,
        'VALIDATION_FAILED',
      );
      // The default app takes the same 4 kB settings.
      expectStatus(
        await call({
          method: 'PATCH',
          url: '/api/v1/tenant',
          headers: { ...json, ...owner() },
          payload: settings,
        }),
        200,
      );
    } finally {
      await small.close();
    }
  });
});

describe('routes', () => {
  it('an unknown route is 404 in the error shape, without echoing the query string', async () => {
    for (const [method, url] of [
      ['GET', '/api/v1/nope'],
      ['GET', '/api/v2/users'],
      ['GET', '/nope?token=canary-query-secret'],
      ['PUT', '/api/v1/users'],
      ['POST', `/api/v1/users/${userId}/extra`],
      ['DELETE', '/api/v1/tenant'],
    ] as const) {
      const r = await call({ method, url, headers: owner() });
      expectError(r, 404, 'NOT_FOUND');
      expect(r.body).not.toContain('canary-query-secret');
    }
  });

  it('an unexpected failure is a 500 that tells nothing but the request id', async () => {
    const app = await buildApp(t.res, { expectedSchemaVersion: 1 });
    try {
      await app.register(
        async (api) => {
          api.get('/boom', { config: { access: 'public' } }, async () => {
            throw new Error('connect ECONNREFUSED postgres://steward:hunter2@db.internal:5432/x');
          });
          api.get('/boom-sync', { config: { access: 'public' } }, () => {
            throw new TypeError("Cannot read properties of undefined (reading 'password')");
          });
          api.get('/boom-db', { config: { access: 'public' } }, async () =>
            t.res.db.withSystemAccess((tx) => tx`select * from no_such_table_hunter2`),
          );
        },
        { prefix: '/api/v1' },
      );
      await app.ready();
      for (const url of ['/api/v1/boom', '/api/v1/boom-sync', '/api/v1/boom-db']) {
        const r = await call({ url }, app);
        const message = expectError(r, 500, 'INTERNAL');
        expect(message).toBe('internal error; quote the request id when reporting it');
        expect(r.body).not.toMatch(/hunter2|ECONNREFUSED|password|no_such_table|postgres/);
      }
    } finally {
      await app.close();
    }
  });
});

describe('every answer in this file', () => {
  it('has the error shape, the request id header, and no stack trace', () => {
    const errors = seen.filter((r) => r.statusCode >= 400);
    expect(errors.length).toBeGreaterThan(80);
    for (const r of seen) {
      expect(r.body, r.body).not.toMatch(STACK);
      expect(typeof r.headers['x-request-id']).toBe('string');
    }
    for (const r of errors) {
      const body = r.json() as { error: Record<string, unknown> };
      expect(Object.keys(body)).toEqual(['error']);
      expect(body.error).toEqual(
        expect.objectContaining({
          code: expect.stringMatching(/^[A-Z][A-Z_]+$/),
          message: expect.any(String),
          requestId: r.headers['x-request-id'],
        }),
      );
      expect(body.error.message).not.toBe('');
      expect(r.headers['content-type']).toMatch(/^application\/json/);
    }
  });
});

describe('request ids', () => {
  it('a well-formed incoming x-request-id is kept, anything else replaced', async () => {
    const kept = await call({ url: '/api/v1/nope', headers: { 'x-request-id': 'trace-123_abc.DEF' } });
    expect(kept.headers['x-request-id']).toBe('trace-123_abc.DEF');
    expect(kept.json().error.requestId).toBe('trace-123_abc.DEF');
    for (const bad of ['has space', 'x'.repeat(65), '<script>', 'a/b', '']) {
      const r = await call({ url: '/api/v1/nope', headers: { 'x-request-id': bad } });
      expect(r.headers['x-request-id']).not.toBe(bad);
      expect(r.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      expect(r.json().error.requestId).toBe(r.headers['x-request-id']);
    }
  });
});
