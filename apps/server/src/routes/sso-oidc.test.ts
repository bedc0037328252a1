import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { decodeJwt, exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import Provider from 'oidc-provider';
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
 * OpenID Connect against a real provider (oidc-provider) on a loopback port. The failure cases
 * rewrite the ID token in the provider's token response (re-signed with the provider's own key, or
 * with another key), so each validation is exercised on its own.
 */

const CLIENT_SECRET = 'oidc-client-secret-canary-7f3a';
const KID = 'test-key-1';

let t: TestApp;
let a: TenantFixture;
let server: Server;
let issuer: string;
let connectionId: string;
let callbackUrl: string;
let providerKey: CryptoKey;
let account = 'alice';
/** Rewrites the ID token of the next token responses (undefined: untouched). */
let mutate: ((idToken: string) => Promise<string>) | undefined;

const accounts: Record<string, Record<string, unknown>> = {
  alice: {
    sub: 'alice',
    email: 'alice@idp.example',
    email_verified: true,
    name: 'Alice Example',
    groups: ['steward-approvers', 'everyone'],
  },
  bob: { sub: 'bob', email: 'bob@idp.example', email_verified: true, name: 'Bob', groups: ['everyone'] },
  // Claims the address of another tenant's owner.
  mallory: { sub: 'mallory', email: 'owner@sso-elsewhere.test', email_verified: true, name: 'M', groups: [] },
  unverified: { sub: 'unverified', email: 'new@idp.example', email_verified: false, name: 'U', groups: [] },
};

async function resign(idToken: string, change: Record<string, unknown>, key: CryptoKey = providerKey) {
  const claims = { ...decodeJwt(idToken), ...change };
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: KID, typ: 'JWT' }).sign(key);
}

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'sso-oidc');
  server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  // The connection first: its id is part of the redirect URI the provider must know.
  const created = expectStatus(
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/sso-connections',
      headers: bearer(a.token),
      payload: {
        protocol: 'oidc',
        name: 'Test IdP',
        config: { issuer, clientId: 'steward', scopes: 'openid email profile groups' },
        clientSecret: CLIENT_SECRET,
        defaultRole: 'viewer',
        groupsAttribute: 'groups',
        roleMapping: { 'steward-approvers': 'approver' },
      },
    }),
    201,
  ).json();
  connectionId = created.id;
  callbackUrl = created.callbackUrl;
  expect(created.hasSecret).toBe(true);
  expect(JSON.stringify(created)).not.toContain(CLIENT_SECRET);

  const pair = await generateKeyPair('RS256', { extractable: true });
  providerKey = pair.privateKey as CryptoKey;
  const jwk: JWK = { ...(await exportJWK(pair.privateKey)), kid: KID, alg: 'RS256', use: 'sig' };
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'steward',
        client_secret: CLIENT_SECRET,
        redirect_uris: [callbackUrl],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [jwk as never] },
    pkce: { methods: ['S256'], required: () => true },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
    scopes: ['openid', 'email', 'profile', 'groups'],
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false } },
    cookies: { keys: ['oidc-test-cookie-key'] },
    ttl: { Interaction: 600, Grant: 600, Session: 600, AccessToken: 600, IdToken: 600 },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: (_ctx, id) => ({ accountId: id, claims: () => accounts[id] as { sub: string } }),
    loadExistingGrant: async (ctx) => {
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client!.clientId,
        accountId: ctx.oidc.session!.accountId!,
      });
      grant.addOIDCScope('openid email profile groups');
      await grant.save();
      return grant;
    },
  });
  provider.use(async (ctx, next) => {
    await next();
    const body = ctx.body as { id_token?: string } | undefined;
    if (ctx.path === '/token' && mutate && body?.id_token)
      ctx.body = { ...body, id_token: await mutate(body.id_token) };
  });
  const handler = provider.callback();
  server.on('request', (req, res) => {
    if (req.url?.startsWith('/interaction/')) {
      // The "user" signs in at once as the current test account.
      void provider
        .interactionFinished(req, res, { login: { accountId: account } }, { mergeWithLastSubmission: false })
        .catch((e: unknown) => {
          res.statusCode = 500;
          res.end(String(e));
        });
      return;
    }
    void handler(req, res);
  });
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await t?.close();
});
beforeEach(() => {
  account = 'alice';
  mutate = undefined;
});

/** Follow the browser's redirects from our start URL to the provider and back to our callback. */
async function signInAtProvider(): Promise<URL> {
  const start = await t.app.inject({ url: `/api/v1/sso/sso-oidc/${connectionId}/start` });
  expect(start.statusCode, start.body).toBe(302);
  let next = String(start.headers.location);
  const authUrl = new URL(next);
  expect(authUrl.origin).toBe(issuer);
  expect(authUrl.searchParams.get('code_challenge_method')).toBe('S256');
  expect(authUrl.searchParams.get('nonce')).toBeTruthy();
  expect(authUrl.searchParams.get('state')).toBeTruthy();
  const jar = new Map<string, string>();
  for (let hop = 0; hop < 10; hop++) {
    if (next.startsWith(callbackUrl)) return new URL(next);
    const r = await fetch(next, {
      redirect: 'manual',
      headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') },
    });
    for (const c of r.headers.getSetCookie()) {
      const kv = c.split(';')[0]!;
      jar.set(kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1));
    }
    const location = r.headers.get('location');
    if (!location) throw new Error(`no redirect from ${next}: ${r.status} ${await r.text()}`);
    next = new URL(location, next).href;
  }
  throw new Error('too many redirects');
}

const callback = (url: URL) =>
  t.app.inject({ url: `/api/v1/sso/sso-oidc/${connectionId}/callback${url.search}` });

async function failureAudited(requestIdHint: string) {
  const rows = await t.db.owner<{ action: string; outcome: string; details: { reason: string } }[]>`
    select action, outcome, details from audit_log
    where tenant_id = ${a.tenant.id} and action = 'auth.sso_login' and outcome = 'failure'
    order by seq desc limit 1`;
  expect(rows[0]?.details.reason, requestIdHint).toBeTruthy();
  return rows[0]!.details.reason;
}

describe('OIDC sign-in', () => {
  it('signs a new user in with PKCE, provisions them and maps their group to a role', async () => {
    const back = await signInAtProvider();
    expect(back.searchParams.get('code')).toBeTruthy();
    const r = expectStatus(await callback(back), 303);
    const location = new URL(String(r.headers.location));
    expect(location.hash).toMatch(/^#\/sso\?code=ssx_/);
    expect(String(r.headers.location)).not.toContain('eyJ'); // no token in the URL
    const code = new URLSearchParams(location.hash.split('?')[1]).get('code')!;

    const tokens = expectStatus(
      await t.app.inject({ method: 'POST', url: '/api/v1/auth/sso/exchange', payload: { code } }),
      200,
    ).json();
    expect(tokens.user.email).toBe('alice@idp.example');
    expect(tokens.tenant.slug).toBe('sso-oidc');
    const me = expectStatus(
      await t.app.inject({ url: '/api/v1/me', headers: bearer(tokens.accessToken) }),
      200,
    );
    expect(me.json().user.email).toBe('alice@idp.example');
    const member = expectStatus(
      await t.app.inject({ url: `/api/v1/users/${tokens.user.id}`, headers: bearer(a.token) }),
      200,
    ).json();
    expect(member.role).toBe('approver');
    expect(member.name).toBe('Alice Example');

    // The exchange code works once.
    const again = await t.app.inject({ method: 'POST', url: '/api/v1/auth/sso/exchange', payload: { code } });
    expect(again.statusCode).toBe(401);

    const audit = await t.db.owner<{ action: string }[]>`
      select action from audit_log where tenant_id = ${a.tenant.id}
        and (target_id = ${tokens.user.id} or actor_id = ${tokens.user.id})`;
    expect(audit.map((x) => x.action)).toEqual(
      expect.arrayContaining(['user.provisioned', 'auth.sso_login', 'auth.login']),
    );
  });

  it('gives the default role without a mapped group, and links the same subject next time', async () => {
    account = 'bob';
    const first = new URL(
      String(expectStatus(await callback(await signInAtProvider()), 303).headers.location),
    );
    const code = new URLSearchParams(first.hash.split('?')[1]).get('code')!;
    const tokens = expectStatus(
      await t.app.inject({ method: 'POST', url: '/api/v1/auth/sso/exchange', payload: { code } }),
      200,
    ).json();
    const member = expectStatus(
      await t.app.inject({ url: `/api/v1/users/${tokens.user.id}`, headers: bearer(a.token) }),
      200,
    ).json();
    expect(member.role).toBe('viewer');
    expectStatus(await callback(await signInAtProvider()), 303);
    const [n] = await t.db.owner<{ n: string }[]>`
      select count(*) as n from users where email = 'bob@idp.example'`;
    expect(Number(n!.n)).toBe(1);
  });

  it('refuses an ID token signed by another key', async () => {
    const other = (await generateKeyPair('RS256')).privateKey as CryptoKey;
    mutate = (idToken) => resign(idToken, {}, other);
    const r = await callback(await signInAtProvider());
    expect(r.statusCode, r.body).toBe(401);
    expect(r.json().error.message).toContain('single sign-on failed');
    expect(await failureAudited('bad signature')).toMatch(/signature verification failed/);
  });

  it('refuses an ID token for another audience', async () => {
    mutate = (idToken) => resign(idToken, { aud: 'someone-else' });
    const r = await callback(await signInAtProvider());
    expect(r.statusCode, r.body).toBe(401);
    expect(await failureAudited('audience')).toMatch(/claim aud$/);
  });

  it('refuses an expired ID token', async () => {
    const now = Math.floor(Date.now() / 1000);
    mutate = (idToken) => resign(idToken, { iat: now - 1200, exp: now - 600 });
    const r = await callback(await signInAtProvider());
    expect(r.statusCode, r.body).toBe(401);
    expect(await failureAudited('expired')).toMatch(/claim exp$/);
  });

  it('refuses an ID token with a nonce from another sign-in', async () => {
    mutate = (idToken) => resign(idToken, { nonce: 'a-nonce-from-elsewhere' });
    const r = await callback(await signInAtProvider());
    expect(r.statusCode, r.body).toBe(401);
    expect(await failureAudited('nonce')).toMatch(/claim nonce$/);
  });

  it('refuses a replayed callback (state and code used once)', async () => {
    const back = await signInAtProvider();
    expectStatus(await callback(back), 303);
    const replay = await callback(back);
    expect(replay.statusCode).toBe(401);
    expect(replay.json().error.message).toContain('already used');
    // A forged state is refused the same way.
    const forged = new URL(back);
    forged.searchParams.set('state', 'x'.repeat(43));
    expect((await callback(forged)).statusCode).toBe(401);
  });

  it('a HEAD request to the callback (a link scanner) does not consume the login state', async () => {
    const back = await signInAtProvider();
    for (let i = 0; i < 2; i++) {
      const head = await t.app.inject({
        method: 'HEAD',
        url: `/api/v1/sso/sso-oidc/${connectionId}/callback${back.search}`,
      });
      expect(head.statusCode).toBe(204);
      expect(head.headers['cache-control']).toBe('no-store');
      expect(head.body).toBe('');
    }
    // The browser's GET that follows still signs in, once.
    expectStatus(await callback(back), 303);
    expect((await callback(back)).statusCode).toBe(401);
  });

  it('never links an address whose account belongs to another tenant', async () => {
    await createTenantFixture(t, 'sso-elsewhere');
    account = 'mallory';
    const r = await callback(await signInAtProvider());
    expect(r.statusCode, r.body).toBe(401);
    expect(await failureAudited('takeover')).toMatch(/outside this tenant/);
    const [row] = await t.db.owner<{ n: string }[]>`
      select count(*) as n from memberships m join users u on u.id = m.user_id
      where m.tenant_id = ${a.tenant.id} and u.email = 'owner@sso-elsewhere.test'`;
    expect(Number(row!.n)).toBe(0);
  });

  it('refuses an address the provider has not verified', async () => {
    account = 'unverified';
    const r = await callback(await signInAtProvider());
    expect(r.statusCode, r.body).toBe(401);
    expect(await failureAudited('unverified')).toMatch(/not verified/);
  });

  it('sends browsers back to the web app with an error code instead of JSON', async () => {
    const back = await signInAtProvider();
    back.searchParams.set('state', 'y'.repeat(43));
    const r = await t.app.inject({
      url: `/api/v1/sso/sso-oidc/${connectionId}/callback${back.search}`,
      headers: { accept: 'text/html' },
    });
    expect(r.statusCode).toBe(303);
    expect(String(r.headers.location)).toMatch(/#\/sso\?error=UNAUTHENTICATED$/);
  });

  it('refuses bad exchange codes', async () => {
    for (const code of ['nope', `ssx_${a.tenant.id.replaceAll('-', '')}_${'A'.repeat(43)}`]) {
      const r = await t.app.inject({ method: 'POST', url: '/api/v1/auth/sso/exchange', payload: { code } });
      expect(r.statusCode).toBe(401);
    }
  });

  it('validates connections: https issuers, roles that exist and are not owner, SAML without secret', async () => {
    const post = (payload: Record<string, unknown>) =>
      t.app.inject({ method: 'POST', url: '/api/v1/sso-connections', headers: bearer(a.token), payload });
    const oidc = { protocol: 'oidc', config: { issuer: 'https://idp.example.com', clientId: 'c' } };
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...oidc, name: 'v1', config: { issuer: 'http://idp.example.com', clientId: 'c' } }, /https/],
      [{ ...oidc, name: 'v2', config: { issuer: 'https://idp.example.com' } }, /clientId/],
      [{ ...oidc, name: 'v3', roleMapping: { admins: 'owner' } }, /owner/],
      [{ ...oidc, name: 'v4', defaultRole: 'no-such-role' }, /does not exist/],
      [
        {
          protocol: 'saml',
          name: 'v5',
          config: { entryPoint: 'https://idp.example.com/sso', idpCert: 'M'.repeat(200) },
          clientSecret: 'x',
        },
        /OIDC connections only/,
      ],
    ];
    for (const [payload, message] of cases) {
      const r = await post(payload);
      expect(r.statusCode, JSON.stringify(payload)).toBe(400);
      expect(r.json().error.message).toMatch(message);
    }
    // A disabled connection cannot be used to sign in.
    const id = expectStatus(await post({ ...oidc, name: 'disabled one', enabled: false }), 201).json().id;
    expect((await t.app.inject({ url: `/api/v1/sso/sso-oidc/${id}/start` })).statusCode).toBe(404);
    const rotated = expectStatus(
      await t.app.inject({
        method: 'PATCH',
        url: `/api/v1/sso-connections/${connectionId}`,
        headers: bearer(a.token),
        payload: { clientSecret: CLIENT_SECRET },
      }),
      200,
    ).json();
    expect(rotated.hasSecret).toBe(true);
  });

  it("keeps an SSO session in its tenant (the IdP cannot reach the user's other tenants)", async () => {
    const second = await createTenantFixture(t, 'sso-second');
    await addUser(t, second.tenant.id, 'alice@idp.example', 'viewer');
    const back = new URL(
      String(expectStatus(await callback(await signInAtProvider()), 303).headers.location),
    );
    const code = new URLSearchParams(back.hash.split('?')[1]).get('code')!;
    const tokens = expectStatus(
      await t.app.inject({ method: 'POST', url: '/api/v1/auth/sso/exchange', payload: { code } }),
      200,
    ).json();
    const r = await t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/switch-tenant',
      headers: bearer(tokens.accessToken),
      payload: { tenant: 'sso-second' },
    });
    expect(r.statusCode, r.body).toBe(403);
    // Its refresh tokens still work, in its own tenant.
    const refreshed = expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/auth/refresh',
        payload: { refreshToken: tokens.refreshToken },
      }),
      200,
    ).json();
    expect(refreshed.tenant.slug).toBe('sso-oidc');
  });

  it('never returns or logs the client secret', async () => {
    const list = expectStatus(
      await t.app.inject({ url: '/api/v1/sso-connections', headers: bearer(a.token) }),
      200,
    );
    expect(list.body).not.toContain(CLIENT_SECRET);
    expect(list.json().items[0].hasSecret).toBe(true);
    expect(t.logs()).not.toContain(CLIENT_SECRET);
    const audit = await t.db.owner`select details::text as d from audit_log where tenant_id = ${a.tenant.id}`;
    expect(JSON.stringify(audit)).not.toContain(CLIENT_SECRET);
  });
});
