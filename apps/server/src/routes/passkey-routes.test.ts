import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SoftAuthenticator } from '../testing/soft-authenticator.ts';
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
let origin: string;

beforeAll(async () => {
  t = await createTestApp({ env: { STEWARD_BASE_URL: 'https://steward.example.com' } });
  fx = await createTenantFixture(t, 'pk-acme');
  origin = 'https://steward.example.com';
});
afterAll(() => t?.close());

const post = (url: string, payload: unknown, token?: string) =>
  t.app.inject({ method: 'POST', url, payload: payload as object, headers: token ? bearer(token) : {} });

async function register(token: string, name?: string, auth = new SoftAuthenticator(origin)) {
  const options = expectStatus(await post('/api/v1/passkeys/options', {}, token), 200).json() as {
    challenge: string;
    rp: { id: string };
    user: { id: string };
  };
  expect(options.rp.id).toBe('steward.example.com');
  const r = await post(
    '/api/v1/passkeys',
    { response: auth.register(options), ...(name ? { name } : {}) },
    token,
  );
  return { auth, r };
}

async function audit(tenantId: string, action: string) {
  return t.res.db.withTenant(
    tenantId,
    (tx) => tx<{ outcome: string; actor_id: string | null; details: Record<string, unknown> }[]>`
      select outcome, actor_id, details from audit_log where tenant_id = ${tenantId} and action = ${action} order by seq`,
  );
}

async function passkeyFailures(): Promise<number> {
  const failures = await t.res.db.withTenant(
    '00000000-0000-0000-0000-000000000000',
    (tx) => tx<{ n: string }[]>`
        select count(*) as n from audit_log where action = 'auth.login' and outcome = 'failure' and details->>'method' = 'passkey'`,
  );
  return Number(failures[0]!.n);
}

describe('passkeys', () => {
  let email: string;
  let userId: string;
  let auth: SoftAuthenticator;
  let token: string;

  beforeAll(async () => {
    email = 'pk@pk-acme.test';
    userId = (await addUser(t, fx.tenant.id, email, 'member')).id;
    token = (await loginAs(t, email, 'pk-acme')).accessToken;
    const reg = await register(token, 'Laptop');
    auth = reg.auth;
    expect(expectStatus(reg.r, 201).json()).toMatchObject({ name: 'Laptop', lastUsedAt: null });
  });

  it('registration checks the challenge (once), the origin and the RP', async () => {
    const options = expectStatus(await post('/api/v1/passkeys/options', {}, token), 200).json() as {
      challenge: string;
    };
    const other = new SoftAuthenticator(origin);
    // Another origin.
    expectStatus(
      await post(
        '/api/v1/passkeys',
        { response: other.register(options, { origin: 'https://evil.example' }) },
        token,
      ),
      400,
    );
    // The challenge was spent by that attempt.
    expectStatus(await post('/api/v1/passkeys', { response: other.register(options) }, token), 400);
    // An unknown challenge.
    expectStatus(
      await post(
        '/api/v1/passkeys',
        { response: other.register({ challenge: 'bm90LWEtY2hhbGxlbmdl' }) },
        token,
      ),
      400,
    );
  });

  it('passwordless sign-in with a user-verified passkey gives tokens; the challenge works once', async () => {
    const options = expectStatus(
      await post('/api/v1/auth/passkey/options', { tenant: 'pk-acme' }),
      200,
    ).json() as {
      challenge: string;
      userVerification: string;
    };
    expect(options.userVerification).toBe('required');
    const assertion = auth.assert(options);
    const ok = expectStatus(
      await post('/api/v1/auth/passkey/verify', { response: assertion }),
      200,
    ).json() as {
      accessToken: string;
      tenant: { slug: string };
      user: { id: string };
    };
    expect(ok.tenant.slug).toBe('pk-acme');
    expect(ok.user.id).toBe(userId);
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(ok.accessToken) }), 200);
    // Replaying the same assertion: the challenge is spent.
    expectStatus(await post('/api/v1/auth/passkey/verify', { response: assertion }), 401);
    const sessions = expectStatus(
      await t.app.inject({ url: '/api/v1/sessions', headers: bearer(ok.accessToken) }),
      200,
    ).json().items as { current: boolean; method: string; mfa: boolean }[];
    expect(sessions.find((s) => s.current)).toMatchObject({ method: 'passkey', mfa: true });
    expect((await audit(fx.tenant.id, 'auth.login')).at(-1)!.details).toMatchObject({ method: 'passkey' });
  });

  it('passwordless sign-in refuses no user verification, a wrong RP and an unknown key (audited)', async () => {
    const before = await passkeyFailures();
    const o1 = (await post('/api/v1/auth/passkey/options', {})).json() as { challenge: string };
    auth.userVerified = false;
    expectStatus(await post('/api/v1/auth/passkey/verify', { response: auth.assert(o1) }), 401);
    auth.userVerified = true;
    const o2 = (await post('/api/v1/auth/passkey/options', {})).json() as { challenge: string };
    expectStatus(
      await post('/api/v1/auth/passkey/verify', { response: auth.assert(o2, { rpId: 'evil.example' }) }),
      401,
    );
    const o3 = (await post('/api/v1/auth/passkey/options', {})).json() as { challenge: string };
    expectStatus(
      await post('/api/v1/auth/passkey/verify', { response: new SoftAuthenticator(origin).assert(o3) }),
      401,
    );
    expect(await passkeyFailures()).toBe(before + 3);
  });

  it('is a second factor after a password: methods list webauthn, the assertion gives tokens', async () => {
    const login = expectStatus(
      await post('/api/v1/auth/login', { email, password: TEST_PASSWORD, tenant: 'pk-acme' }),
      200,
    ).json() as { mfaRequired: boolean; mfaToken: string; methods: string[] };
    expect(login).toMatchObject({ mfaRequired: true, methods: ['webauthn'] });
    // Without options first there is no challenge to answer.
    const early = auth.assert({ challenge: 'c29tZXRoaW5n' });
    expectStatus(await post('/api/v1/auth/mfa', { mfaToken: login.mfaToken, webauthn: early }), 401);
    const options = expectStatus(
      await post('/api/v1/auth/mfa/webauthn/options', { mfaToken: login.mfaToken }),
      200,
    ).json() as { challenge: string; allowCredentials: { id: string }[] };
    expect(options.allowCredentials.map((c) => c.id)).toEqual([auth.id]);
    // Another user's key cannot answer.
    const ok = expectStatus(
      await post('/api/v1/auth/mfa', { mfaToken: login.mfaToken, webauthn: auth.assert(options) }),
      200,
    ).json() as { accessToken: string };
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(ok.accessToken) }), 200);
    expect((await audit(fx.tenant.id, 'auth.mfa')).at(-1)!.details).toMatchObject({ factor: 'webauthn' });
  });

  it("another user's passkey does not answer this user's MFA step", async () => {
    const otherEmail = 'pk-other@pk-acme.test';
    await addUser(t, fx.tenant.id, otherEmail, 'member');
    const otherToken = (await loginAs(t, otherEmail, 'pk-acme')).accessToken;
    const { auth: otherAuth, r } = await register(otherToken);
    expectStatus(r, 201);
    const login = (
      await post('/api/v1/auth/login', { email, password: TEST_PASSWORD, tenant: 'pk-acme' })
    ).json() as {
      mfaToken: string;
    };
    const options = (
      await post('/api/v1/auth/mfa/webauthn/options', { mfaToken: login.mfaToken })
    ).json() as {
      challenge: string;
    };
    expectStatus(
      await post('/api/v1/auth/mfa', { mfaToken: login.mfaToken, webauthn: otherAuth.assert(options) }),
      401,
    );
  });

  it('several per user: list, rename, delete (each audited; others cannot touch them)', async () => {
    const session = await post('/api/v1/auth/passkey/verify', {
      response: auth.assert((await post('/api/v1/auth/passkey/options', {})).json() as { challenge: string }),
    });
    const me = expectStatus(session, 200).json().accessToken as string;
    const second = await register(me, 'Phone');
    const phone = expectStatus(second.r, 201).json() as { id: string };
    const list = expectStatus(
      await t.app.inject({ url: '/api/v1/passkeys', headers: bearer(me) }),
      200,
    ).json().items as { id: string; name: string; lastUsedAt: string | null }[];
    expect(list.map((p) => p.name)).toEqual(['Laptop', 'Phone']);
    expect(list[0]!.lastUsedAt).not.toBeNull();
    const renamed = await t.app.inject({
      method: 'PATCH',
      url: `/api/v1/passkeys/${phone.id}`,
      headers: bearer(me),
      payload: { name: 'Work phone' },
    });
    expect(expectStatus(renamed, 200).json().name).toBe('Work phone');
    // Another member (even the owner) does not see it.
    expectStatus(
      await t.app.inject({
        method: 'DELETE',
        url: `/api/v1/passkeys/${phone.id}`,
        headers: bearer(fx.token),
      }),
      404,
    );
    expectStatus(
      await t.app.inject({ method: 'DELETE', url: `/api/v1/passkeys/${phone.id}`, headers: bearer(me) }),
      204,
    );
    const after = expectStatus(
      await t.app.inject({ url: '/api/v1/passkeys', headers: bearer(me) }),
      200,
    ).json().items;
    expect(after).toHaveLength(1);
    for (const action of ['passkey.registered', 'passkey.renamed', 'passkey.deleted']) {
      expect((await audit(fx.tenant.id, action)).some((e) => e.actor_id === userId)).toBe(true);
    }
  });

  it('answers malformed WebAuthn responses with 400 or 401, never 500', async () => {
    const options = (await post('/api/v1/passkeys/options', {}, token)).json() as { challenge: string };
    const good = new SoftAuthenticator(origin).register(options);
    const clientData = (challenge: unknown) =>
      Buffer.from(JSON.stringify({ type: 'webauthn.create', challenge, origin })).toString('base64url');
    const bodies = [
      { ...good, response: { ...good.response, clientDataJSON: 'not base64 json' } },
      { ...good, response: { ...good.response, clientDataJSON: clientData({ x: 1 }) } },
      {
        ...good,
        response: {
          ...good.response,
          clientDataJSON: clientData(options.challenge),
          attestationObject: 'AAAA',
        },
      },
      { ...good, response: { clientDataJSON: clientData(options.challenge) } },
      { ...good, id: 'x'.repeat(1400), rawId: 'y' },
    ];
    for (const response of bodies) {
      const r = await post('/api/v1/passkeys', { response }, token);
      expect([400, 401], r.body).toContain(r.statusCode);
      const v = await post('/api/v1/auth/passkey/verify', { response });
      expect([400, 401], v.body).toContain(v.statusCode);
    }
  });

  it('enrols a first passkey during a sign-in the tenant requires MFA for', async () => {
    const strict = await createTenantFixture(t, 'pk-strict');
    expectStatus(
      await t.app.inject({
        method: 'PATCH',
        url: '/api/v1/tenant',
        headers: bearer(strict.token),
        payload: { settings: { mfaRequired: true } },
      }),
      200,
    );
    const newEmail = 'first-key@pk-strict.test';
    const user = await addUser(t, strict.tenant.id, newEmail, 'member');
    const password = { email: newEmail, password: TEST_PASSWORD, tenant: 'pk-strict' };
    const login = expectStatus(await post('/api/v1/auth/login', password), 200).json() as {
      mfaToken: string;
      enrolmentRequired: boolean;
      methods: string[];
    };
    expect(login).toMatchObject({ enrolmentRequired: true, methods: ['totp', 'webauthn'] });
    const options = expectStatus(
      await post('/api/v1/auth/mfa/webauthn/options', { mfaToken: login.mfaToken }),
      200,
    ).json() as { challenge: string; user: { id: string }; rp: { id: string } };
    expect(options.rp.id).toBe('steward.example.com');
    const key = new SoftAuthenticator(origin);
    // A registration for another origin does not enrol (and counts as a failure).
    expectStatus(
      await post('/api/v1/auth/mfa', {
        mfaToken: login.mfaToken,
        webauthn: key.register(options, { origin: 'https://evil.example' }),
      }),
      401,
    );
    const done = expectStatus(
      await post('/api/v1/auth/mfa', { mfaToken: login.mfaToken, webauthn: key.register(options) }),
      200,
    ).json() as { accessToken: string; backupCodes?: string[] };
    expect(done.backupCodes).toBeUndefined();
    const keys = expectStatus(
      await t.app.inject({ url: '/api/v1/passkeys', headers: bearer(done.accessToken) }),
      200,
    ).json().items;
    expect(keys).toHaveLength(1);
    const entries = await t.res.db.withTenant(
      strict.tenant.id,
      (tx) => tx<{ action: string; outcome: string }[]>`
        select action, outcome from audit_log where tenant_id = ${strict.tenant.id} and actor_id = ${user.id} order by seq`,
    );
    expect(entries.map((e) => `${e.action}:${e.outcome}`)).toEqual(
      expect.arrayContaining([
        'auth.login:failure',
        'passkey.registered:success',
        'auth.mfa:success',
        'auth.login:success',
      ]),
    );
    // From now on the passkey is the second factor.
    const next = expectStatus(await post('/api/v1/auth/login', password), 200).json();
    expect(next).toMatchObject({ mfaRequired: true, enrolmentRequired: false, methods: ['webauthn'] });
    const assertOptions = (
      await post('/api/v1/auth/mfa/webauthn/options', { mfaToken: next.mfaToken })
    ).json();
    expectStatus(
      await post('/api/v1/auth/mfa', { mfaToken: next.mfaToken, webauthn: key.assert(assertOptions) }),
      200,
    );
  });
});
