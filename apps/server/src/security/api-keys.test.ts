import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH_CACHE_TTL_MS } from '@steward/core/identity/authenticator';
import { createRole } from '@steward/core/identity/role-service';
import { SYSTEM_ACTOR } from '@steward/core/resources';
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

const KEY_FORMAT = /^stw_([A-Za-z0-9]{12})_([A-Za-z0-9]{40})$/;

interface Created {
  id: string;
  key: string;
  prefix: string;
  name: string;
  role: string;
}

let t: TestApp;
let a: TenantFixture;

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'keys-a');
});
afterAll(() => t?.close());

async function createKey(credential: string, body: Record<string, unknown>, app = t.app) {
  const r = await app.inject({
    method: 'POST',
    url: '/api/v1/api-keys',
    headers: bearer(credential),
    payload: body,
  });
  return r;
}

async function newKey(name: string, role = 'viewer'): Promise<Created> {
  return expectStatus(await createKey(a.token, { name, role }), 201).json() as Created;
}

const me = (key: string, app = t.app) => app.inject({ url: '/api/v1/me', headers: bearer(key) });

const list = async (query = '') =>
  expectStatus(await t.app.inject({ url: `/api/v1/api-keys${query}`, headers: bearer(a.token) }), 200);

describe('creating a key', () => {
  it('answers the key once, prefixed stw_, and the list never shows it', async () => {
    const created = await newKey('ci deploy');
    expect(created.key).toMatch(KEY_FORMAT);
    expect(created.key.startsWith(`${created.prefix}_`)).toBe(true);
    expect(created.prefix).toMatch(/^stw_[A-Za-z0-9]{12}$/);
    const secret = KEY_FORMAT.exec(created.key)![2]!;

    for (const query of ['', '?includeRevoked=true', '?limit=1']) {
      const r = await list(query);
      expect(r.body).not.toContain(created.key);
      expect(r.body).not.toContain(secret);
      for (const item of r.json().items) expect(item).not.toHaveProperty('key');
    }
    expect((await list()).json().items).toContainEqual(
      expect.objectContaining({ id: created.id, prefix: created.prefix, role: 'viewer' }),
    );
    // Nor does the audit log.
    const audit = expectStatus(
      await t.app.inject({ url: '/api/v1/audit?limit=200', headers: bearer(a.token) }),
      200,
    );
    expect(audit.body).toContain(created.prefix);
    expect(audit.body).not.toContain(secret);
  });

  it('works at once, with the permissions of its role only', async () => {
    const created = await newKey('reader', 'viewer');
    const who = expectStatus(await me(created.key), 200).json();
    expect(who).toMatchObject({ kind: 'api_key', apiKeyId: created.id, role: 'viewer', user: null });
    expect(who.tenant.id).toBe(a.tenant.id);
    expectStatus(await t.app.inject({ url: '/api/v1/tenant', headers: bearer(created.key) }), 200);
    expectStatus(await t.app.inject({ url: '/api/v1/users', headers: bearer(created.key) }), 403);
  });

  it('records when it was last used', async () => {
    const created = await newKey('usage');
    const before = (await list()).json().items.find((k: Created) => k.id === created.id);
    expect(before.lastUsedAt).toBeNull();
    const start = Date.now();
    expectStatus(await me(created.key), 200);
    // The write happens off the request path: wait for it (this is not a timing assertion).
    let lastUsedAt: string | null = null;
    for (let i = 0; i < 100 && !lastUsedAt; i++) {
      lastUsedAt = (await list()).json().items.find((k: Created) => k.id === created.id).lastUsedAt;
      if (!lastUsedAt) await sleep(50);
    }
    expect(lastUsedAt).not.toBeNull();
    expect(Date.parse(lastUsedAt!)).toBeGreaterThanOrEqual(start - 5_000);
  });

  it('cannot be given a role holding permissions the creator lacks', async () => {
    // An admin-role API key may not mint an owner key.
    const asKey = await createKey(a.apiKey, { name: 'escalate', role: 'owner' });
    expect(asKey.statusCode).toBe(403);
    expect(asKey.json().error.code).toBe('FORBIDDEN');

    // A user whose custom role manages keys and nothing else may create keys for a role that is a
    // subset of theirs, but not for a built-in role that holds more.
    await createRole(t.res, a.tenant.id, SYSTEM_ACTOR, new Set(['apikeys:read', 'apikeys:manage']), {
      name: 'keymaker',
      permissions: ['apikeys:read', 'apikeys:manage'],
    });
    await createRole(t.res, a.tenant.id, SYSTEM_ACTOR, new Set(['apikeys:read']), {
      name: 'key-reader',
      permissions: ['apikeys:read'],
    });
    await addUser(t, a.tenant.id, 'keymaker@keys-a.test', 'keymaker');
    const session = await loginAs(t, 'keymaker@keys-a.test', 'keys-a');
    for (const role of ['viewer', 'admin', 'owner', 'auditor']) {
      const r = await createKey(session.accessToken, { name: `try ${role}`, role });
      expect(r.statusCode, role).toBe(403);
      expect(r.json().error.code).toBe('FORBIDDEN');
    }
    const listed = (await list('?limit=200')).json().items.map((k: Created) => k.name);
    expect(listed.filter((n: string) => n.startsWith('try ') || n === 'escalate')).toEqual([]);

    const ok = expectStatus(
      await createKey(session.accessToken, { name: 'subset', role: 'key-reader' }),
      201,
    );
    expect(ok.json().key).toMatch(KEY_FORMAT);
    expectStatus(await createKey(session.accessToken, { name: 'same', role: 'keymaker' }), 201);
  });

  it('needs a role that exists in this tenant and no unknown fields', async () => {
    const r = await createKey(a.token, { name: 'x', role: 'no-such-role' });
    expect(r.statusCode).toBe(400);
    const extra = await createKey(a.token, { name: 'x', role: 'viewer', permissions: ['tenant:owner'] });
    expect(extra.statusCode).toBe(400);
    expect(extra.json().error.message).toContain('permissions');
  });
});

describe('revoking a key', () => {
  it('refuses its next request in the same process, with the standard 401', async () => {
    const created = await newKey('short-lived');
    expectStatus(await me(created.key), 200);
    expectStatus(
      await t.app.inject({
        method: 'DELETE',
        url: `/api/v1/api-keys/${created.id}`,
        headers: bearer(a.token),
      }),
      204,
    );
    const r = await me(created.key);
    expect(r.statusCode).toBe(401);
    expect(r.json()).toEqual({
      error: { code: 'UNAUTHENTICATED', message: expect.any(String), requestId: r.headers['x-request-id'] },
    });
    // Listed as revoked only when asked for, and not revocable twice.
    expect((await list()).json().items.map((k: Created) => k.id)).not.toContain(created.id);
    const revoked = (await list('?includeRevoked=true'))
      .json()
      .items.find((k: Created) => k.id === created.id);
    expect(revoked.revokedAt).not.toBeNull();
    expectStatus(
      await t.app.inject({
        method: 'DELETE',
        url: `/api/v1/api-keys/${created.id}`,
        headers: bearer(a.token),
      }),
      409,
    );
  });

  it('a key can revoke itself, and is refused from then on', async () => {
    const created = await newKey('self', 'admin');
    expectStatus(
      await t.app.inject({
        method: 'DELETE',
        url: `/api/v1/api-keys/${created.id}`,
        headers: bearer(created.key),
      }),
      204,
    );
    expectStatus(await me(created.key), 401);
  });

  it('is seen by a second instance on the same database within the cache lifetime', async () => {
    const second = await createTestApp({ database: t.db });
    try {
      const created = await newKey('replicated');
      // The second instance has the key cached as valid when it is revoked on the first.
      expectStatus(await me(created.key, second.app), 200);
      expectStatus(
        await t.app.inject({
          method: 'DELETE',
          url: `/api/v1/api-keys/${created.id}`,
          headers: bearer(a.token),
        }),
        204,
      );
      const revokedAt = Date.now();
      // Poll: the second instance may still answer from its cache for up to the TTL.
      const deadline = revokedAt + AUTH_CACHE_TTL_MS + 500;
      let status = 200;
      while (Date.now() < deadline) {
        status = (await me(created.key, second.app)).statusCode;
        if (status === 401) break;
        expect(status).toBe(200);
        await sleep(25);
      }
      expect(status).toBe(401);
      // ...and it stays refused.
      await sleep(AUTH_CACHE_TTL_MS + 100);
      expectStatus(await me(created.key, second.app), 401);
      expectStatus(await me(created.key), 401);
    } finally {
      await second.close();
    }
  });

  it('an expired key is refused', async () => {
    const created = await newKey('expiring');
    await t.db.owner`update api_keys set expires_at = now() - interval '1 second' where id = ${created.id}`;
    expectStatus(await me(created.key), 401);
  });

  it('a known prefix with another secret is refused, and does not disturb the real key', async () => {
    const created = await newKey('guessed');
    const forged = `${created.prefix}_${'a'.repeat(40)}`;
    expectStatus(await me(forged), 401);
    expectStatus(await me(created.key), 200);
  });
});
