import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
let other: TenantFixture;

beforeAll(async () => {
  t = await createTestApp();
  fx = await createTenantFixture(t, 'inv-acme');
  other = await createTenantFixture(t, 'inv-other');
});
afterAll(() => t?.close());

const invite = async (email: string, role = 'approver', token = fx.token) =>
  expectStatus(
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/invitations',
      headers: bearer(token),
      payload: { email, role },
    }),
    201,
  ).json() as { id: string; token: string; status: string; expiresAt: string };

const accept = (payload: Record<string, unknown>, token?: string) =>
  t.app.inject({
    method: 'POST',
    url: '/api/v1/invitations/accept',
    ...(token ? { headers: bearer(token) } : {}),
    payload,
  });

const pending = async () =>
  (
    expectStatus(
      await t.app.inject({ url: '/api/v1/invitations', headers: bearer(fx.token) }),
      200,
    ).json() as {
      items: { id: string; email: string; role: string }[];
    }
  ).items;

describe('invitations', () => {
  it('a new address: the link creates the account with its password, once; the token is stored hashed', async () => {
    const inv = await invite('New.Person@inv.test');
    expect(inv.token).toMatch(/^inv_[0-9a-f]{32}_[A-Za-z0-9]{43}$/);
    expect(inv.status).toBe('pending');
    const days = (new Date(inv.expiresAt).getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(6.99);
    expect(days).toBeLessThanOrEqual(7);
    expect((await pending()).map((i) => i.email)).toContain('new.person@inv.test');
    const stored = await t.db.owner<
      { token_hash: Buffer }[]
    >`select token_hash from invitations where id = ${inv.id}`;
    expect(stored[0]!.token_hash.toString('latin1')).not.toContain(inv.token.slice(40));
    expect(
      JSON.stringify(
        (await t.app.inject({ url: '/api/v1/invitations?all=true', headers: bearer(fx.token) })).json(),
      ),
    ).not.toContain(inv.token);

    expectStatus(await accept({ token: inv.token, password: 'short' }), 400);
    const r = expectStatus(
      await accept({ token: inv.token, name: 'New Person', password: TEST_PASSWORD }),
      200,
    );
    expect(r.json()).toMatchObject({ email: 'new.person@inv.test', tenant: { slug: 'inv-acme' } });
    const session = await loginAs(t, 'new.person@inv.test', 'inv-acme');
    const me = expectStatus(
      await t.app.inject({ url: '/api/v1/me', headers: bearer(session.accessToken) }),
      200,
    ).json() as {
      role?: string;
    };
    expect(JSON.stringify(me)).toContain('approver');
    // Used once.
    expectStatus(await accept({ token: inv.token, password: TEST_PASSWORD }), 404);
    expect((await pending()).map((i) => i.id)).not.toContain(inv.id);
    const audit = await t.db.owner<{ action: string }[]>`
      select action from audit_log where tenant_id = ${fx.tenant.id} and target_id = ${inv.id} order by seq`;
    expect(audit.map((a) => a.action)).toEqual(['invitation.created', 'invitation.accepted']);
  });

  it('an existing account: the same answer without signing in, nothing changes; signed in, it joins', async () => {
    await addUser(t, other.tenant.id, 'known@inv.test', 'viewer');
    const inv = await invite('known@inv.test', 'member');
    const fresh = await invite('unknown@inv.test', 'member');
    const a = expectStatus(await accept({ token: inv.token, password: 'attacker password 1' }), 200);
    const b = expectStatus(await accept({ token: fresh.token, password: 'attacker password 1' }), 200);
    expect(Object.keys(a.json() as object)).toEqual(Object.keys(b.json() as object));
    // The existing account's password did not change, and it is not a member yet.
    expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { email: 'known@inv.test', password: 'attacker password 1' },
      }),
      401,
    );
    expect((await pending()).map((i) => i.id)).toContain(inv.id);
    // Another signed-in account cannot take it.
    const stranger = await loginAs(t, other.ownerEmail);
    expectStatus(await accept({ token: inv.token }, stranger.accessToken), 403);
    // An API key cannot accept.
    expectStatus(await accept({ token: inv.token }, fx.apiKey), 403);
    const session = await loginAs(t, 'known@inv.test');
    expectStatus(await accept({ token: inv.token }, session.accessToken), 200);
    const mine = await loginAs(t, 'known@inv.test', 'inv-acme');
    expect(mine.accessToken).toBeTruthy();
  });

  it('revoked, expired and forged tokens are refused alike; revoking twice is a conflict', async () => {
    const inv = await invite('revoked@inv.test');
    const del = () =>
      t.app.inject({ method: 'DELETE', url: `/api/v1/invitations/${inv.id}`, headers: bearer(fx.token) });
    expectStatus(await del(), 204);
    expectStatus(await del(), 409);
    expectStatus(await accept({ token: inv.token, password: TEST_PASSWORD }), 404);
    const old = await invite('late@inv.test');
    await t.db.owner`update invitations set expires_at = now() - interval '1 second' where id = ${old.id}`;
    expectStatus(await accept({ token: old.token, password: TEST_PASSWORD }), 404);
    const forged = old.token.slice(0, -4) + 'AAAA';
    expectStatus(await accept({ token: forged, password: TEST_PASSWORD }), 404);
    expectStatus(await accept({ token: 'nonsense', password: TEST_PASSWORD }), 404);
  });

  it('needs users:manage, and no one grants a role above their own', async () => {
    await addUser(t, fx.tenant.id, 'approver@inv.test', 'approver');
    const s = await loginAs(t, 'approver@inv.test', 'inv-acme');
    expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/invitations',
        headers: bearer(s.accessToken),
        payload: { email: 'x@inv.test', role: 'viewer' },
      }),
      403,
    );
    await addUser(t, fx.tenant.id, 'admin@inv.test', 'admin');
    const admin = await loginAs(t, 'admin@inv.test', 'inv-acme');
    expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/invitations',
        headers: bearer(admin.accessToken),
        payload: { email: 'y@inv.test', role: 'owner' },
      }),
      403,
    );
    expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/invitations',
        headers: bearer(fx.token),
        payload: { email: 'not an email', role: 'viewer' },
      }),
      400,
    );
  });
});
