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

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'acme');
});
afterAll(() => t?.close());

const login = (payload: Record<string, unknown>) =>
  t.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload });
const refresh = (refreshToken: string) =>
  t.app.inject({ method: 'POST', url: '/api/v1/auth/refresh', payload: { refreshToken } });

describe('login', () => {
  it('gives tokens, the user and the tenant', async () => {
    const r = expectStatus(await login({ email: a.ownerEmail, password: 'correct horse battery' }), 200);
    const body = r.json();
    expect(body.tenant.slug).toBe('acme');
    expect(body.user.email).toBe(a.ownerEmail);
    expect(body.expiresIn).toBe(900);
    const me = expectStatus(
      await t.app.inject({ url: '/api/v1/me', headers: bearer(body.accessToken) }),
      200,
    ).json();
    expect(me.role).toBe('owner');
    expect(me.permissions).toContain('tenant:owner');
  });

  it('answers a wrong password and an unknown account the same way, and audits both', async () => {
    const wrong = await login({ email: a.ownerEmail, password: 'not the password', tenant: 'acme' });
    const unknown = await login({ email: 'nobody@acme.test', password: 'not the password' });
    expect(wrong.statusCode).toBe(401);
    expect(unknown.statusCode).toBe(401);
    expect(wrong.json().error.message).toBe(unknown.json().error.message);
    const audit = expectStatus(
      await t.app.inject({
        url: '/api/v1/audit?action=auth.login&outcome=failure',
        headers: bearer(a.token),
      }),
      200,
    ).json();
    expect(audit.items.some((e: { details: { email: string } }) => e.details.email === a.ownerEmail)).toBe(
      true,
    );
  });

  it('rejects unknown fields, naming them', async () => {
    const r = expectStatus(await login({ email: a.ownerEmail, password: 'x', admin: true }), 400);
    expect(r.json().error.code).toBe('VALIDATION_FAILED');
    expect(r.json().error.message).toContain('admin');
  });

  it('names a missing field', async () => {
    const r = expectStatus(await login({ email: a.ownerEmail }), 400);
    expect(r.json().error.message).toContain('password');
  });

  it('refuses a tenant the user is not in with the same 401', async () => {
    const r = expectStatus(
      await login({ email: a.ownerEmail, password: 'correct horse battery', tenant: 'other' }),
      401,
    );
    expect(r.json().error.code).toBe('UNAUTHENTICATED');
  });
});

describe('refresh tokens', () => {
  it('rotate: the new pair works and the old refresh token is spent', async () => {
    const first = expectStatus(
      await login({ email: a.ownerEmail, password: 'correct horse battery' }),
      200,
    ).json();
    const second = expectStatus(await refresh(first.refreshToken), 200).json();
    expect(second.refreshToken).not.toBe(first.refreshToken);
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(second.accessToken) }), 200);
    const third = expectStatus(await refresh(second.refreshToken), 200).json();
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(third.accessToken) }), 200);
  });

  it('reuse of a spent token revokes the whole family', async () => {
    const first = expectStatus(
      await login({ email: a.ownerEmail, password: 'correct horse battery' }),
      200,
    ).json();
    const second = expectStatus(await refresh(first.refreshToken), 200).json();
    // An attacker replays the first token: refused, and the session is revoked.
    expectStatus(await refresh(first.refreshToken), 401);
    // The legitimate holder's newer refresh token and access token stop working too.
    expectStatus(await refresh(second.refreshToken), 401);
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(second.accessToken) }), 401);
    const audit = expectStatus(
      await t.app.inject({ url: '/api/v1/audit?action=auth.refresh_reuse', headers: bearer(a.token) }),
      200,
    ).json();
    expect(audit.items.length).toBeGreaterThan(0);
  });

  it('rejects garbage', async () => {
    expectStatus(await refresh('rt_' + 'x'.repeat(48)), 401);
    expectStatus(await refresh('nope'), 401);
  });
});

describe('logout', () => {
  it('revokes the access token and the refresh token at once', async () => {
    const s = expectStatus(
      await login({ email: a.ownerEmail, password: 'correct horse battery' }),
      200,
    ).json();
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(s.accessToken) }), 200);
    expectStatus(
      await t.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: bearer(s.accessToken) }),
      204,
    );
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(s.accessToken) }), 401);
    expectStatus(await refresh(s.refreshToken), 401);
  });

  it('is for sessions, not API keys', async () => {
    expectStatus(
      await t.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: bearer(a.apiKey) }),
      403,
    );
  });
});
