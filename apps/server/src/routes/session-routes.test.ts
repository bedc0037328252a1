import { generate } from 'otplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Authenticator } from '@steward/core/identity/authenticator';
import {
  addUser,
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  loginAs,
  TEST_PASSWORD,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

let t: TestApp;
let fx: TenantFixture;
let n = 0;

beforeAll(async () => {
  t = await createTestApp();
  fx = await createTenantFixture(t, 'sess-acme');
});
afterAll(() => t?.close());

const me = (token: string) => t.app.inject({ url: '/api/v1/me', headers: bearer(token) });
const sid = (token: string) =>
  (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { sid: string }).sid;

async function newUser(role = 'member') {
  const email = `u${++n}@sess-acme.test`;
  const user = await addUser(t, fx.tenant.id, email, role);
  return { email, id: user.id };
}

async function settings(s: Record<string, unknown>, token = fx.token) {
  expectStatus(
    await t.app.inject({
      method: 'PATCH',
      url: '/api/v1/tenant',
      headers: bearer(token),
      payload: { settings: s },
    }),
    200,
  );
}

async function audit(action: string, targetId?: string) {
  return t.res.db.withTenant(
    fx.tenant.id,
    (tx) => tx<
      {
        outcome: string;
        actor_id: string | null;
        target_id: string | null;
        details: Record<string, unknown>;
      }[]
    >`
      select outcome, actor_id, target_id, details from audit_log where tenant_id = ${fx.tenant.id} and action = ${action}
        ${targetId ? tx`and target_id = ${targetId}` : tx``}
      order by seq`,
  );
}

async function sessionRow(id: string) {
  const [row] = await t.res.db.withSystemAccess(
    (tx) => tx<{ revoked_reason: string | null }[]>`select revoked_reason from sessions where id = ${id}`,
  );
  return row!;
}

describe('sessions', () => {
  it('every sign-in gets a new session id (no fixation), never reusing one the caller holds', async () => {
    const u = await newUser();
    const a = await loginAs(t, u.email, 'sess-acme');
    // Signing in while holding a session still makes a new one; the old one is not carried over.
    const b = await t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: bearer(a.accessToken),
      payload: { email: u.email, password: TEST_PASSWORD, tenant: 'sess-acme' },
    });
    const bt = expectStatus(b, 200).json() as { accessToken: string; refreshToken: string };
    expect(sid(bt.accessToken)).not.toBe(sid(a.accessToken));
    expect(bt.refreshToken).not.toBe(a.refreshToken);
    const list = expectStatus(
      await t.app.inject({ url: '/api/v1/sessions', headers: bearer(bt.accessToken) }),
      200,
    ).json().items as { id: string; current: boolean }[];
    expect(list.map((s) => s.id).sort()).toEqual([sid(a.accessToken), sid(bt.accessToken)].sort());
    expect(list.find((s) => s.current)!.id).toBe(sid(bt.accessToken));
    // After an MFA step the session id is again new: the mfaToken is not a session.
    const ids = new Set([sid(a.accessToken), sid(bt.accessToken)]);
    for (let i = 0; i < 3; i++) ids.add(sid((await loginAs(t, u.email, 'sess-acme')).accessToken));
    expect(ids.size).toBe(5);
  });

  it('a user lists and revokes their own sessions; the revoked token stops at once, also elsewhere within a second', async () => {
    const u = await newUser();
    const a = await loginAs(t, u.email, 'sess-acme');
    const b = await loginAs(t, u.email, 'sess-acme');
    // Another server process: its own authenticator with its own cache, warm with the session.
    const other = new Authenticator(t.res.db, t.res.tokens);
    await other.authenticate(b.accessToken);
    expectStatus(
      await t.app.inject({
        method: 'DELETE',
        url: `/api/v1/sessions/${sid(b.accessToken)}`,
        headers: bearer(a.accessToken),
      }),
      204,
    );
    expectStatus(await me(b.accessToken), 401);
    await new Promise((r) => setTimeout(r, 1100));
    await expect(other.authenticate(b.accessToken)).rejects.toThrow(/no longer valid/);
    expectStatus(await me(a.accessToken), 200);
    // Not one's own: 404 like an unknown id.
    expectStatus(
      await t.app.inject({
        method: 'DELETE',
        url: `/api/v1/sessions/${sid(fx.token)}`,
        headers: bearer(a.accessToken),
      }),
      404,
    );
    expect((await audit('session.revoked', sid(b.accessToken))).length).toBe(1);
  });

  it('an administrator lists and revokes a member’s sessions in the tenant (audited)', async () => {
    const u = await newUser();
    const a = await loginAs(t, u.email, 'sess-acme');
    const b = await loginAs(t, u.email, 'sess-acme');
    const list = expectStatus(
      await t.app.inject({ url: `/api/v1/users/${u.id}/sessions`, headers: bearer(fx.token) }),
      200,
    ).json().items as { id: string }[];
    expect(list).toHaveLength(2);
    expectStatus(
      await t.app.inject({
        method: 'DELETE',
        url: `/api/v1/users/${u.id}/sessions/${sid(a.accessToken)}`,
        headers: bearer(fx.token),
      }),
      204,
    );
    expectStatus(await me(a.accessToken), 401);
    expectStatus(await me(b.accessToken), 200);
    const all = await t.app.inject({
      method: 'DELETE',
      url: `/api/v1/users/${u.id}/sessions`,
      headers: bearer(fx.token),
    });
    expect(expectStatus(all, 200).json()).toEqual({ revoked: 1 });
    expectStatus(await me(b.accessToken), 401);
    expect((await audit('session.revoked_all', u.id)).length).toBe(1);
    // A member may not.
    expectStatus(
      await t.app.inject({ url: `/api/v1/users/${u.id}/sessions`, headers: bearer(b.accessToken) }),
      401,
    );
    const c = await loginAs(t, u.email, 'sess-acme');
    expectStatus(
      await t.app.inject({ url: `/api/v1/users/${fx.tenant.id}/sessions`, headers: bearer(c.accessToken) }),
      403,
    );
  });

  it('the idle timeout ends an unused session; use keeps it alive', async () => {
    const tenant = await createTenantFixture(t, 'sess-idle');
    await settings({ sessionIdleMinutes: 5 }, tenant.token);
    const email = 'idle@sess-idle.test';
    await addUser(t, tenant.tenant.id, email, 'member');
    const s = await loginAs(t, email, 'sess-idle');
    const fresh = await loginAs(t, email, 'sess-idle');
    await t.res.db.withSystemAccess(
      (tx) =>
        tx`update sessions set last_used_at = now() - interval '6 minutes' where id = ${sid(s.accessToken)}`,
    );
    await t.res.db.withSystemAccess(
      (tx) =>
        tx`update sessions set last_used_at = now() - interval '4 minutes' where id = ${sid(fresh.accessToken)}`,
    );
    t.res.auth.invalidateSession(sid(s.accessToken));
    t.res.auth.invalidateSession(sid(fresh.accessToken));
    expectStatus(await me(s.accessToken), 401);
    const refresh = await t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/refresh',
      payload: { refreshToken: s.refreshToken },
    });
    expectStatus(refresh, 401);
    await new Promise((r) => setTimeout(r, 200));
    expect((await sessionRow(sid(s.accessToken))).revoked_reason).toBe('idle_timeout');
    // Used 4 minutes ago: still alive, and this use is recorded.
    expectStatus(await me(fresh.accessToken), 200);
    await new Promise((r) => setTimeout(r, 200));
    const [row] = await t.res.db.withSystemAccess(
      (tx) =>
        tx<
          { idle: number }[]
        >`select extract(epoch from now() - last_used_at)::int as idle from sessions where id = ${sid(fresh.accessToken)}`,
    );
    expect(row!.idle).toBeLessThan(5);
  });

  it('the absolute timeout ends a session however busy it is', async () => {
    const tenant = await createTenantFixture(t, 'sess-abs');
    await settings({ sessionAbsoluteHours: 2 }, tenant.token);
    const email = 'abs@sess-abs.test';
    await addUser(t, tenant.tenant.id, email, 'member');
    const s = await loginAs(t, email, 'sess-abs');
    const [row] = await t.res.db.withSystemAccess(
      (tx) =>
        tx<
          { hours: number }[]
        >`select round(extract(epoch from expires_at - created_at) / 3600)::int as hours from sessions where id = ${sid(s.accessToken)}`,
    );
    expect(row!.hours).toBe(2);
    await t.res.db.withSystemAccess(
      (tx) =>
        tx`update sessions set created_at = now() - interval '121 minutes', last_used_at = now() where id = ${sid(s.accessToken)}`,
    );
    t.res.auth.invalidateSession(sid(s.accessToken));
    expectStatus(await me(s.accessToken), 401);
    await new Promise((r) => setTimeout(r, 200));
    expect((await sessionRow(sid(s.accessToken))).revoked_reason).toBe('absolute_timeout');
  });

  it('the concurrent-session limit revokes the oldest sessions (audited)', async () => {
    const tenant = await createTenantFixture(t, 'sess-limit');
    await settings({ maxSessionsPerUser: 2 }, tenant.token);
    const email = 'many@sess-limit.test';
    const user = await addUser(t, tenant.tenant.id, email, 'member');
    const s1 = await loginAs(t, email, 'sess-limit');
    const s2 = await loginAs(t, email, 'sess-limit');
    expectStatus(await me(s1.accessToken), 200);
    const s3 = await loginAs(t, email, 'sess-limit');
    expectStatus(await me(s1.accessToken), 401);
    expectStatus(await me(s2.accessToken), 200);
    expectStatus(await me(s3.accessToken), 200);
    expect((await sessionRow(sid(s1.accessToken))).revoked_reason).toBe('session_limit');
    const [entry] = await t.res.db.withTenant(
      tenant.tenant.id,
      (tx) => tx<{ details: { sessions: string[] } }[]>`
        select details from audit_log where tenant_id = ${tenant.tenant.id} and action = 'session.limit_revoked' and target_id = ${user.id}`,
    );
    expect(entry!.details.sessions).toEqual([sid(s1.accessToken)]);
  });

  it('a password change revokes every other session of the user (audited); a wrong current password is refused', async () => {
    const u = await newUser();
    const a = await loginAs(t, u.email, 'sess-acme');
    const b = await loginAs(t, u.email, 'sess-acme');
    const post = (payload: object) =>
      t.app.inject({ method: 'POST', url: '/api/v1/me/password', headers: bearer(a.accessToken), payload });
    expectStatus(await post({ currentPassword: 'not it at all', newPassword: 'a new long password' }), 403);
    expectStatus(await me(b.accessToken), 200);
    expectStatus(await post({ currentPassword: TEST_PASSWORD, newPassword: 'short' }), 400);
    expectStatus(await post({ currentPassword: TEST_PASSWORD, newPassword: 'a new long password' }), 204);
    expectStatus(await me(b.accessToken), 401);
    expectStatus(await me(a.accessToken), 200);
    const login = await t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: u.email, password: 'a new long password', tenant: 'sess-acme' },
    });
    expectStatus(login, 200);
    expect((await sessionRow(sid(b.accessToken))).revoked_reason).toBe('password_changed');
    expect((await audit('user.password_changed', u.id)).map((e) => e.outcome)).toEqual(['denied', 'success']);
  });

  it('an MFA change (TOTP enabled) revokes the other sessions (audited)', async () => {
    const u = await newUser();
    const a = await loginAs(t, u.email, 'sess-acme');
    const b = await loginAs(t, u.email, 'sess-acme');
    const { secret } = expectStatus(
      await t.app.inject({ method: 'POST', url: '/api/v1/mfa/totp', headers: bearer(a.accessToken) }),
      200,
    ).json() as { secret: string };
    expectStatus(await me(b.accessToken), 200);
    expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/mfa/totp/confirm',
        headers: bearer(a.accessToken),
        payload: { code: await generate({ secret }) },
      }),
      200,
    );
    expectStatus(await me(b.accessToken), 401);
    expectStatus(await me(a.accessToken), 200);
    expect((await sessionRow(sid(b.accessToken))).revoked_reason).toBe('mfa_changed');
    expect((await audit('mfa.totp_enabled', u.id)).length).toBe(1);
  });

  it('deactivation (membership disabled, then removed) ends the sessions at once (audited)', async () => {
    const u = await newUser();
    const a = await loginAs(t, u.email, 'sess-acme');
    expectStatus(
      await t.app.inject({
        method: 'PATCH',
        url: `/api/v1/users/${u.id}`,
        headers: bearer(fx.token),
        payload: { status: 'disabled' },
      }),
      200,
    );
    expectStatus(await me(a.accessToken), 401);
    expect((await sessionRow(sid(a.accessToken))).revoked_reason).toBe('membership_disabled');
    expect((await audit('user.updated', u.id)).at(-1)!.details).toMatchObject({ status: 'disabled' });
    const login = await t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: u.email, password: TEST_PASSWORD, tenant: 'sess-acme' },
    });
    expectStatus(login, 401);

    const v = await newUser();
    const c = await loginAs(t, v.email, 'sess-acme');
    expectStatus(
      await t.app.inject({ method: 'DELETE', url: `/api/v1/users/${v.id}`, headers: bearer(fx.token) }),
      204,
    );
    expectStatus(await me(c.accessToken), 401);
    expect((await sessionRow(sid(c.accessToken))).revoked_reason).toBe('membership_removed');
    expect((await audit('user.removed', v.id)).length).toBe(1);
  });

  it('rejects malformed session settings naming the field', async () => {
    const r = await t.app.inject({
      method: 'PATCH',
      url: '/api/v1/tenant',
      headers: bearer(fx.token),
      payload: { settings: { sessionIdleMinutes: 0 } },
    });
    expectStatus(r, 400);
    expect(r.json().error.message).toContain('sessionIdleMinutes');
  });
});
