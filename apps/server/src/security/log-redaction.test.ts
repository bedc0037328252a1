import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import { Guard } from '@steward/core/guard/guard';
import { setIpAllowList } from '@steward/core/guard/guard-settings-service';
import { createTestPki } from '@steward/core/guard/testing/test-certificates';
import { SYSTEM_ACTOR } from '@steward/core/resources';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

/**
 * Canary secrets go through sign-in, refresh, API keys and bad requests; none may appear in the
 * logs or in any error answer.
 */

const hex = () => randomBytes(8).toString('hex');
const CANARY_PASSWORD = `canary-password-${hex()}`;
const CANARY_WRONG_PASSWORD = `canary-wrong-${hex()}`;

let t: TestApp;
let a: TenantFixture;
/** Every secret seen, with the parts of it that are secret on their own. */
const canaries = new Map<string, string>();
const requestIds: string[] = [];
const errorBodies: string[] = [];
/** Answers that must not carry any secret (everything but the answers that issue one). */
const otherBodies: string[] = [];
let n = 0;

function remember(label: string, value: string, ...parts: string[]) {
  canaries.set(value, label);
  for (const p of parts) canaries.set(p, `${label} (part)`);
}

function rememberAccessToken(label: string, token: string) {
  remember(label, token, token.split('.')[2]!);
}
function rememberRefreshToken(label: string, token: string) {
  remember(label, token, token.slice(3));
}
function rememberApiKey(label: string, key: string) {
  remember(label, key, key.split('_')[2]!);
}

async function send(opts: {
  method?: string;
  url: string;
  payload?: unknown;
  headers?: Record<string, string>;
}): Promise<LightMyRequestResponse> {
  const id = `redaction-${++n}`;
  requestIds.push(id);
  const r = await t.app.inject({
    method: (opts.method ?? 'GET') as 'GET',
    url: opts.url,
    headers: { ...opts.headers, 'x-request-id': id },
    ...(opts.payload === undefined ? {} : { payload: opts.payload as string }),
  });
  if (r.statusCode >= 400) errorBodies.push(r.body);
  return r;
}

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'redact-a');
  remember('password', CANARY_PASSWORD);
  remember('wrong password', CANARY_WRONG_PASSWORD);
  rememberAccessToken('fixture access token', a.token);
  rememberRefreshToken('fixture refresh token', a.refreshToken);
  rememberApiKey('fixture API key', a.apiKey);
});
afterAll(() => t?.close());

describe('secrets through the API', () => {
  it('are exercised (sign-in, refresh, keys, bad requests)', async () => {
    const owner = bearer(a.token);
    // A user with the canary password, who signs in.
    expectStatus(
      await send({
        method: 'POST',
        url: '/api/v1/users',
        headers: owner,
        payload: { email: 'canary@redact-a.test', password: CANARY_PASSWORD, role: 'admin' },
      }),
      201,
    );
    const login = expectStatus(
      await send({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { email: 'canary@redact-a.test', password: CANARY_PASSWORD },
      }),
      200,
    ).json();
    rememberAccessToken('access token', login.accessToken);
    rememberRefreshToken('refresh token', login.refreshToken);
    expectStatus(
      await send({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { email: 'canary@redact-a.test', password: CANARY_WRONG_PASSWORD },
      }),
      401,
    );
    expectStatus(
      await send({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { email: 'nobody@redact-a.test', password: CANARY_PASSWORD },
      }),
      401,
    );

    // Refresh, then replay the spent refresh token (reuse detection revokes the family).
    const refreshed = expectStatus(
      await send({
        method: 'POST',
        url: '/api/v1/auth/refresh',
        payload: { refreshToken: login.refreshToken },
      }),
      200,
    ).json();
    rememberAccessToken('refreshed access token', refreshed.accessToken);
    rememberRefreshToken('refreshed refresh token', refreshed.refreshToken);
    expectStatus(await send({ url: '/api/v1/me', headers: bearer(refreshed.accessToken) }), 200);
    expectStatus(
      await send({
        method: 'POST',
        url: '/api/v1/auth/refresh',
        payload: { refreshToken: login.refreshToken },
      }),
      401,
    );
    expectStatus(await send({ url: '/api/v1/me', headers: bearer(refreshed.accessToken) }), 401);

    // An API key: created, used, used wrongly, revoked, used again.
    const created = expectStatus(
      await send({
        method: 'POST',
        url: '/api/v1/api-keys',
        headers: owner,
        payload: { name: 'canary', role: 'admin' },
      }),
      201,
    ).json();
    rememberApiKey('API key', created.key);
    expectStatus(await send({ url: '/api/v1/users', headers: bearer(created.key) }), 200);
    expectStatus(await send({ url: '/api/v1/users', headers: { 'x-api-key': created.key } }), 401);
    expectStatus(await send({ url: '/api/v1/users', headers: bearer(`${created.key}x`) }), 401);
    expectStatus(
      await send({ method: 'DELETE', url: `/api/v1/api-keys/${created.id}`, headers: owner }),
      204,
    );
    expectStatus(await send({ url: '/api/v1/users', headers: bearer(created.key) }), 401);

    // Bad requests that carry secrets.
    const bad: { url: string; payload?: unknown; headers?: Record<string, string>; status: number }[] = [
      // an unknown field holding a secret
      {
        url: '/api/v1/auth/login',
        payload: { email: 'canary@redact-a.test', password: CANARY_PASSWORD, note: created.key },
        status: 400,
      },
      // a secret that is too long, or of the wrong type
      {
        url: '/api/v1/auth/login',
        payload: { email: 'canary@redact-a.test', password: CANARY_PASSWORD.repeat(20) },
        status: 400,
      },
      {
        url: '/api/v1/auth/login',
        payload: { email: CANARY_PASSWORD, password: CANARY_PASSWORD },
        status: 400,
      },
      {
        url: '/api/v1/auth/login',
        payload: { email: 'canary@redact-a.test', password: [CANARY_PASSWORD, CANARY_PASSWORD] },
        status: 400,
      },
      // broken JSON around a secret
      {
        url: '/api/v1/auth/login',
        payload: `{"email":"canary@redact-a.test","password":"${CANARY_PASSWORD}"`,
        headers: { 'content-type': 'application/json' },
        status: 400,
      },
      {
        url: '/api/v1/auth/refresh',
        payload: `{"refreshToken":${refreshed.refreshToken}}`,
        headers: { 'content-type': 'application/json' },
        status: 400,
      },
      // a secret in the wrong place or of the wrong kind
      { url: '/api/v1/auth/refresh', payload: { refreshToken: created.key }, status: 401 },
      { url: '/api/v1/auth/refresh', payload: { refreshToken: refreshed.accessToken }, status: 400 },
      { url: '/api/v1/auth/refresh', payload: { refreshToken: `${refreshed.refreshToken}x` }, status: 401 },
      { url: '/api/v1/auth/logout', headers: bearer(refreshed.refreshToken), status: 401 },
      { url: '/api/v1/auth/logout', headers: bearer(`${refreshed.accessToken}.x`), status: 401 },
      // a secret as a role name, and a new user's password that fails the policy
      {
        url: '/api/v1/users',
        headers: owner,
        payload: { email: 'other@redact-a.test', password: CANARY_PASSWORD, role: 'nope' },
        status: 400,
      },
    ];
    for (const b of bad) {
      const r = await send({ method: 'POST', ...b });
      expect(r.statusCode, `${b.url} ${JSON.stringify(b.payload)}`).toBe(b.status);
    }
    // The refreshed session still works until logout, which the access token then cannot survive.
    const second = expectStatus(
      await send({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { email: 'canary@redact-a.test', password: CANARY_PASSWORD },
      }),
      200,
    ).json();
    rememberAccessToken('second access token', second.accessToken);
    rememberRefreshToken('second refresh token', second.refreshToken);
    expectStatus(
      await send({ method: 'POST', url: '/api/v1/auth/logout', headers: bearer(second.accessToken) }),
      204,
    );
    expectStatus(await send({ url: '/api/v1/me', headers: bearer(second.accessToken) }), 401);
    expect(canaries.size).toBeGreaterThanOrEqual(20);
    expect(errorBodies.length).toBeGreaterThanOrEqual(15);
  });

  it('are exercised through connections, MCP servers, rate limits and the IP allow-list', async () => {
    const owner = bearer(a.token);
    const connectionSecret = `Bearer canary-connection-${hex()}`;
    const rotatedSecret = `canary-rotated-${hex()}`;
    const mcpSecret = `Bearer canary-mcp-${hex()}`;
    const pki = await createTestPki();
    remember('connection secret', connectionSecret, connectionSecret.slice(7));
    remember('rotated connection secret', rotatedSecret);
    remember('MCP secret', mcpSecret, mcpSecret.slice(7));
    remember('mTLS client key', pki.client.key, pki.client.key.split('\n')[1]!);
    const keep = (r: LightMyRequestResponse) => {
      otherBodies.push(r.body);
      return r;
    };
    const conn = keep(
      expectStatus(
        await send({
          method: 'POST',
          url: '/api/v1/connections',
          headers: owner,
          payload: {
            kind: 'http',
            name: 'canary-api',
            config: { baseUrl: 'https://api.example.com/', clientCertificate: pki.client.cert },
            secret: connectionSecret,
            clientKey: pki.client.key,
          },
        }),
        201,
      ),
    ).json();
    keep(expectStatus(await send({ url: `/api/v1/connections/${conn.id}`, headers: owner }), 200));
    keep(expectStatus(await send({ url: '/api/v1/connections', headers: owner }), 200));
    keep(
      expectStatus(
        await send({
          method: 'PATCH',
          url: `/api/v1/connections/${conn.id}`,
          headers: owner,
          payload: { secret: rotatedSecret, clientKey: pki.client.key },
        }),
        200,
      ),
    );
    // Refused writes that carry the secrets.
    const other = await createTestPki();
    remember('mismatched client key', other.client.key, other.client.key.split('\n')[1]!);
    for (const payload of [
      { kind: 'http', name: 'bad', config: { baseUrl: 'ftp://x' }, secret: connectionSecret },
      {
        kind: 'http',
        name: 'bad',
        config: { baseUrl: 'https://x.example/', clientCertificate: pki.client.cert },
        clientKey: other.client.key,
      },
      { kind: 'http', name: 'bad', config: { baseUrl: 'https://x.example/' }, clientKey: 'not a key' },
    ]) {
      keep(
        expectStatus(
          await send({ method: 'POST', url: '/api/v1/connections', headers: owner, payload }),
          400,
        ),
      );
    }
    const mcp = keep(
      expectStatus(
        await send({
          method: 'POST',
          url: '/api/v1/mcp-servers',
          headers: owner,
          payload: {
            name: 'canary-mcp',
            transport: 'http',
            url: 'https://mcp.example.com/mcp',
            secret: { authorization: mcpSecret },
          },
        }),
        201,
      ),
    ).json();
    keep(expectStatus(await send({ url: `/api/v1/mcp-servers/${mcp.id}`, headers: owner }), 200));

    // Sign-ins refused by the brute-force limit, with the canary password.
    const guard = t.res.guard;
    t.res.guard = new Guard(t.res.db, { limits: { loginFailuresPerAccount: 2 } });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) {
        const r = keep(
          await send({
            method: 'POST',
            url: '/api/v1/auth/login',
            payload: { email: 'canary@redact-a.test', password: CANARY_WRONG_PASSWORD },
          }),
        );
        statuses.push(r.statusCode);
      }
      expect(statuses).toEqual([401, 401, 429, 429]);
    } finally {
      t.res.guard = guard;
    }

    // An API key and a session refused by the IP allow-list.
    keep(
      expectStatus(
        await send({
          method: 'PUT',
          url: '/api/v1/tenant/ip-allow-list',
          headers: owner,
          payload: { entries: ['10.0.0.0/8'], force: true },
        }),
        200,
      ),
    );
    for (const credential of [a.apiKey, a.token]) {
      const r = keep(await send({ url: '/api/v1/users', headers: bearer(credential) }));
      expect(r.statusCode).toBe(403);
      expect(r.json().error.code).toBe('IP_NOT_ALLOWED');
    }
    await setIpAllowList(t.res, a.tenant.id, SYSTEM_ACTOR, { entries: [] });
    expect(otherBodies.length).toBeGreaterThanOrEqual(15);
  });

  it('never appear in answers that do not issue them', () => {
    for (const body of otherBodies) {
      for (const [value, label] of canaries) {
        expect(body.includes(value), `the ${label} is in ${body.slice(0, 200)}`).toBe(false);
      }
    }
  });

  it('never reach the logs, which do hold every request', () => {
    const logs = t.logs();
    for (const id of requestIds) expect(logs, `request ${id} was not logged`).toContain(`"${id}"`);
    for (const [value, label] of canaries) {
      expect(logs.includes(value), `the ${label} is in the logs`).toBe(false);
    }
  });

  it('never appear in an error answer', () => {
    for (const body of errorBodies) {
      expect(body).toMatch(/^\{"error":\{"code":"[A-Z_]+","message":/);
      for (const [value, label] of canaries) {
        expect(body.includes(value), `the ${label} is in ${body}`).toBe(false);
      }
    }
  });

  it('never reach the audit log', async () => {
    const audit = expectStatus(
      await t.app.inject({ url: '/api/v1/audit?limit=200', headers: bearer(a.apiKey) }),
      200,
    );
    expect(audit.json().items.length).toBeGreaterThan(10);
    for (const [value, label] of canaries) {
      expect(audit.body.includes(value), `the ${label} is in the audit log`).toBe(false);
    }
  });
});

describe('the log redaction rules', () => {
  it('hide secret fields wherever a log line carries them', () => {
    const secret = `canary-field-${hex()}`;
    const marker = `redaction-probe-${hex()}`;
    const log = t.app.log;
    log.info({ password: secret }, marker);
    log.info(
      { body: { password: secret, newPassword: secret, refreshToken: secret, accessToken: secret } },
      marker,
    );
    log.info({ body: { token: secret, key: secret, secret } }, marker);
    log.info({ token: secret, key: secret, secret, refreshToken: secret, accessToken: secret }, marker);
    // The request and response serializers keep no headers at all.
    log.info({ res: { headers: { 'set-cookie': secret } } }, marker);
    log.info(
      { req: { headers: { authorization: `Bearer ${secret}`, cookie: secret, 'x-api-key': secret } } },
      marker,
    );
    const lines = t
      .logs()
      .split('\n')
      .filter((l) => l.includes(marker));
    expect(lines).toHaveLength(6);
    for (const line of lines) expect(line).not.toContain(secret);
    for (const line of lines.slice(0, 4)) expect(line).toContain('[redacted]');
  });
});
