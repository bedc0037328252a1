import { createHmac, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MasterKey } from '@steward/core/crypto/master-key';
import { ACCESS_TOKEN_AUDIENCE, AccessTokens } from '@steward/core/identity/access-tokens';
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

/**
 * Forged, altered and stale access tokens: every one is refused with 401 and the standard error
 * shape. The real signing key is used (from the master key) to build tokens that are wrong in
 * exactly one way, next to a control token built the same way that is accepted.
 */

let t: TestApp;
let a: TenantFixture;
let b: TenantFixture;
let signingKey: KeyObject;
/** Claims of a real, valid token of A's owner. */
let claims: Record<string, unknown>;
let header: Record<string, unknown>;
let dual: { userId: string; sessionId: string; token: string };

const b64url = (value: Buffer | string) => Buffer.from(value).toString('base64url');
const part = (value: unknown) => b64url(JSON.stringify(value));
const decode = (segment: string) => JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));

function signEd25519(h: Record<string, unknown>, p: Record<string, unknown>, key = signingKey): string {
  const input = `${part(h)}.${part(p)}`;
  return `${input}.${b64url(sign(null, Buffer.from(input), key))}`;
}

function signHs256(h: Record<string, unknown>, p: Record<string, unknown>, secret: Buffer): string {
  const input = `${part(h)}.${part(p)}`;
  return `${input}.${b64url(createHmac('sha256', secret).update(input).digest())}`;
}

const now = () => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'forge-a');
  b = await createTenantFixture(t, 'forge-b');
  signingKey = t.res.master.signingKeyPair('access-tokens').privateKey;
  const [h, p] = a.token.split('.');
  header = decode(h!);
  claims = decode(p!);
  // A user who belongs to A and B, signed in to A.
  const member = await addUser(t, a.tenant.id, 'dual@forge.test', 'admin');
  await addUser(t, b.tenant.id, 'dual@forge.test', 'admin');
  const session = await loginAs(t, 'dual@forge.test', 'forge-a');
  const sessionClaims = decode(session.accessToken.split('.')[1]!);
  dual = { userId: member.id, sessionId: sessionClaims.sid, token: session.accessToken };
});
afterAll(() => t?.close());

async function call(token: string, url = '/api/v1/me') {
  return t.app.inject({ url, headers: { authorization: `Bearer ${token}` } });
}

/** 401 with exactly the standard error shape, on an `authenticated` and on a permission route. */
async function expectRefused(token: string) {
  for (const url of ['/api/v1/me', '/api/v1/users']) {
    const r = await call(token, url);
    expect(r.statusCode, `${url}: ${r.body}`).toBe(401);
    expect(r.json()).toEqual({
      error: { code: 'UNAUTHENTICATED', message: expect.any(String), requestId: r.headers['x-request-id'] },
    });
    expect(r.body).not.toMatch(/at .+:\d+:\d+|node_modules|\.ts\b/);
  }
}

describe('control', () => {
  it('a token built here with the real key and valid claims is accepted', async () => {
    expectStatus(await call(a.token), 200);
    const rebuilt = signEd25519(header, { ...claims, iat: now(), exp: now() + 600 });
    const me = expectStatus(await call(rebuilt), 200).json();
    expect(me.tenant.id).toBe(a.tenant.id);
  });
});

describe('forged tokens', () => {
  it('alg "none" (unsigned), in any spelling, with or without a signature part', async () => {
    const signature = a.token.split('.')[2]!;
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      const unsigned = `${part({ ...header, alg })}.${part(claims)}`;
      await expectRefused(`${unsigned}.`);
      await expectRefused(`${unsigned}.${signature}`);
    }
  });

  it('HS256 signed with the public key (algorithm confusion), in every encoding of it', async () => {
    const pem = t.res.tokens.publicKeyPem();
    const publicKey = createPublicKey(pem);
    const der = publicKey.export({ type: 'spki', format: 'der' });
    const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
    for (const secret of [Buffer.from(pem), Buffer.from(pem.trim()), der, raw]) {
      for (const alg of ['HS256', 'HS384', 'HS512']) {
        await expectRefused(signHs256({ ...header, alg }, claims, secret));
      }
    }
  });

  it('signed by another key: an attacker key (also embedded as jwk), or another installation', async () => {
    const attacker = generateKeyPairSync('ed25519');
    const jwk = attacker.publicKey.export({ format: 'jwk' });
    await expectRefused(signEd25519(header, claims, attacker.privateKey));
    await expectRefused(signEd25519({ ...header, jwk }, claims, attacker.privateKey));
    await expectRefused(
      signEd25519({ ...header, kid: 'attacker', jku: 'http://evil.test/jwks' }, claims, attacker.privateKey),
    );
    const elsewhere = new AccessTokens(new MasterKey(Buffer.alloc(32, 7)), { issuer: t.config.baseUrl });
    const other = await elsewhere.issue({
      userId: String(claims.sub),
      tenantId: a.tenant.id,
      sessionId: String(claims.sid),
    });
    await expectRefused(other);
  });

  it('expired, or not yet valid', async () => {
    await expectRefused(signEd25519(header, { ...claims, iat: now() - 7200, exp: now() - 3600 }));
    await expectRefused(signEd25519(header, { ...claims, iat: now() - 120, exp: now() - 60 }));
    await expectRefused(signEd25519(header, { ...claims, nbf: now() + 3600 }));
  });

  it('wrong or missing audience', async () => {
    await expectRefused(signEd25519(header, { ...claims, aud: 'another-api' }));
    await expectRefused(signEd25519(header, { ...claims, aud: [`${ACCESS_TOKEN_AUDIENCE}-x`] }));
    const { aud: _aud, ...noAudience } = claims;
    await expectRefused(signEd25519(header, noAudience));
  });

  it('wrong or missing issuer', async () => {
    await expectRefused(signEd25519(header, { ...claims, iss: 'https://evil.example' }));
    await expectRefused(signEd25519(header, { ...claims, iss: `${String(claims.iss)}/x` }));
    const { iss: _iss, ...noIssuer } = claims;
    await expectRefused(signEd25519(header, noIssuer));
  });

  it('wrong token type, missing or malformed claims', async () => {
    await expectRefused(signEd25519({ ...header, typ: 'JWT' }, claims));
    for (const claim of ['sub', 'tid', 'sid', 'exp', 'iat']) {
      const { [claim]: _gone, ...rest } = claims;
      await expectRefused(signEd25519(header, rest));
    }
    await expectRefused(signEd25519(header, { ...claims, tid: 'forge-b' }));
    await expectRefused(signEd25519(header, { ...claims, sub: "' or 1=1 --" }));
    await expectRefused(signEd25519(header, { ...claims, tid: [b.tenant.id] }));
  });
});

describe('swapped tenant claim', () => {
  it("tampered to B's tenant id, keeping A's signature", async () => {
    const [h, , s] = a.token.split('.');
    await expectRefused(`${h}.${part({ ...claims, tid: b.tenant.id })}.${s}`);
  });

  it("validly signed for B, on A's session of a user who is not in B", async () => {
    const token = await t.res.tokens.issue({
      userId: String(claims.sub),
      tenantId: b.tenant.id,
      sessionId: String(claims.sid),
    });
    await expectRefused(token);
  });

  it('validly signed for B, on the A session of a user who IS in B (the session decides, not the claim)', async () => {
    expectStatus(await call(dual.token), 200);
    const token = await t.res.tokens.issue({
      userId: dual.userId,
      tenantId: b.tenant.id,
      sessionId: dual.sessionId,
    });
    await expectRefused(token);
    // Switching properly is the way in.
    const switched = expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/auth/switch-tenant',
        headers: bearer(dual.token),
        payload: { tenant: 'forge-b' },
      }),
      200,
    ).json();
    const me = expectStatus(await call(switched.accessToken), 200).json();
    expect(me.tenant.id).toBe(b.tenant.id);
    // ...after which a token of the same session for A no longer works.
    await expectRefused(dual.token);
  });

  it("validly signed with B's owner as subject on A's owner session", async () => {
    const bOwner = expectStatus(await call(b.token), 200).json().user.id as string;
    await expectRefused(
      await t.res.tokens.issue({ userId: bOwner, tenantId: b.tenant.id, sessionId: String(claims.sid) }),
    );
    await expectRefused(
      await t.res.tokens.issue({ userId: bOwner, tenantId: a.tenant.id, sessionId: String(claims.sid) }),
    );
  });
});

describe('tampered payload', () => {
  it('any change to the claims breaks the signature', async () => {
    const [h, , s] = a.token.split('.');
    const bOwner = expectStatus(await call(b.token), 200).json().user.id as string;
    for (const changed of [
      { ...claims, sub: bOwner },
      { ...claims, exp: Number(claims.exp) + 3600 },
      { ...claims, sid: '00000000-0000-4000-8000-000000000000' },
      { ...claims, admin: true },
    ]) {
      await expectRefused(`${h}.${part(changed)}.${s}`);
    }
    // A flipped bit in the signature, and a signature from another token.
    const flipped = Buffer.from(s!, 'base64url');
    flipped[0] = flipped[0]! ^ 1;
    await expectRefused(`${h}.${a.token.split('.')[1]}.${b64url(flipped)}`);
    await expectRefused(`${h}.${a.token.split('.')[1]}.${b.token.split('.')[2]}`);
    // The header is signed too.
    await expectRefused(`${part({ ...header, kid: 'x' })}.${a.token.split('.')[1]}.${s}`);
  });
});

describe('garbage', () => {
  it('is refused without a crash', async () => {
    for (const token of [
      'garbage',
      'a.b.c',
      'a.b',
      '...',
      '....',
      'eyJhbGciOiJFZERTQSJ9',
      `${a.token}.`,
      `${a.token}x`,
      a.token.split('.').slice(0, 2).join('.'),
      'x'.repeat(8000),
      `${part({ alg: 'EdDSA' })}.${b64url('not json')}.${b64url('sig')}`,
      `${part('a string')}.${part(claims)}.${b64url('sig')}`,
      `${part(null)}.${part(null)}.`,
      'stw_garbage',
      `stw_${'A'.repeat(12)}_${'B'.repeat(40)}`,
      `${a.apiKey.slice(0, -1)}${a.apiKey.endsWith('A') ? 'B' : 'A'}`,
      'rt_' + 'x'.repeat(48),
      '\u00e9\u00e9\u00e9',
    ]) {
      await expectRefused(token);
    }
  });

  it('a missing or non-bearer Authorization header is 401 as well', async () => {
    for (const authorization of [
      '',
      'Bearer',
      'Bearer ',
      `Basic ${b64url('a:b')}`,
      `Token ${a.token}`,
      a.token,
    ]) {
      const r = await t.app.inject({ url: '/api/v1/me', headers: { authorization } });
      expect(r.statusCode, authorization).toBe(401);
      expect(r.json().error).toEqual({
        code: 'UNAUTHENTICATED',
        message: expect.any(String),
        requestId: r.headers['x-request-id'],
      });
    }
  });
});
