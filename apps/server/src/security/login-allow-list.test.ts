import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '@steward/core/errors/app-error';
import { issueSession } from '@steward/core/identity/session-service';
import {
  addUser,
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  TEST_PASSWORD,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

/** A tenant's IP allow-list holds at sign-in too, without telling whether an account or password is right. */

let t: TestApp;
let walled: TenantFixture;
let open: TenantFixture;
const INSIDE = '10.9.1.2';
const OUTSIDE = '203.0.113.7';

beforeAll(async () => {
  t = await createTestApp();
  walled = await createTenantFixture(t, 'login-walled');
  open = await createTenantFixture(t, 'login-open');
  await addUser(t, walled.tenant.id, 'only@login-walled.test', 'member');
  await addUser(t, walled.tenant.id, 'both@login-walled.test', 'member');
  await addUser(t, open.tenant.id, 'both@login-walled.test', 'member');
  expectStatus(
    await t.app.inject({
      method: 'PUT',
      url: '/api/v1/tenant/ip-allow-list',
      headers: bearer(walled.token),
      payload: { entries: ['10.9.0.0/16'], force: true },
    }),
    200,
  );
});
afterAll(() => t?.close());

const login = (email: string, password: string, remoteAddress: string, tenant?: string) =>
  t.app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { email, password, ...(tenant ? { tenant } : {}) },
    remoteAddress,
  });

describe('IP allow-list at sign-in', () => {
  it('a sign-in into the tenant from outside its list is 403 IP_NOT_ALLOWED, whatever the account or password', async () => {
    const answers = [
      await login('only@login-walled.test', TEST_PASSWORD, OUTSIDE, 'login-walled'),
      await login('only@login-walled.test', 'wrong password', OUTSIDE, 'login-walled'),
      await login('nobody@login-walled.test', TEST_PASSWORD, OUTSIDE, 'login-walled'),
    ];
    for (const r of answers) {
      expect(r.statusCode, r.body).toBe(403);
      expect(r.json().error.code).toBe('IP_NOT_ALLOWED');
      expect(r.body).not.toContain('accessToken');
    }
    // The three answers are the same: nothing tells the right password or the known account apart.
    const shape = (r: (typeof answers)[number]) => {
      const { requestId: _, ...rest } = r.json().error as Record<string, unknown>;
      return JSON.stringify(rest);
    };
    expect(new Set(answers.map(shape)).size).toBe(1);
  });

  it('from inside the list, sign-in works as usual (and a wrong password is 401)', async () => {
    const ok = expectStatus(
      await login('only@login-walled.test', TEST_PASSWORD, INSIDE, 'login-walled'),
      200,
    );
    expect(ok.json().tenant.slug).toBe('login-walled');
    expectStatus(await login('only@login-walled.test', 'wrong password', INSIDE, 'login-walled'), 401);
  });

  it('with no tenant named: a tenant whose list admits the address is chosen; none: the wrong-password answer', async () => {
    const both = expectStatus(await login('both@login-walled.test', TEST_PASSWORD, OUTSIDE), 200);
    expect(both.json().tenant.slug).toBe('login-open');
    const only = await login('only@login-walled.test', TEST_PASSWORD, OUTSIDE);
    const wrong = await login('only@login-walled.test', 'wrong password', OUTSIDE);
    expect(only.statusCode).toBe(401);
    expect({ ...only.json().error, requestId: 'x' }).toEqual({ ...wrong.json().error, requestId: 'x' });
  });

  it('passkey, SSO and MFA sign-ins (all through issueSession) are refused the same way', async () => {
    const [user] = await t.db.owner<
      { id: string }[]
    >`select id from users where email = 'only@login-walled.test'`;
    const refused = await issueSession(
      t.res,
      { userId: user!.id, tenantId: walled.tenant.id },
      { ip: OUTSIDE, requestId: 'req-passkey' },
      { method: 'passkey', mfa: 'webauthn' },
    ).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(AppError);
    expect((refused as AppError).code).toBe('IP_NOT_ALLOWED');
    const fine = await issueSession(
      t.res,
      { userId: user!.id, tenantId: walled.tenant.id },
      { ip: INSIDE, requestId: 'req-passkey-2' },
      { method: 'passkey', mfa: 'webauthn' },
    );
    expect(fine).toHaveProperty('accessToken');
  });

  it('every refused sign-in is audited in the tenant, denied, with the reason', async () => {
    const rows = await t.db.owner<
      { outcome: string; ip: string; details: { reason: string; method: string } }[]
    >`
      select outcome, ip, details from audit_log
      where tenant_id = ${walled.tenant.id} and action = 'auth.login' and outcome = 'denied' order by seq`;
    expect(rows.length).toBeGreaterThanOrEqual(5);
    expect(rows.every((r) => r.details.reason === 'ip_not_allowed' && r.ip === OUTSIDE)).toBe(true);
    expect(new Set(rows.map((r) => r.details.method))).toEqual(new Set(['password', 'passkey']));
  });
});
