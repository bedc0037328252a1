import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '@steward/core/identity/api-key-service';
import { resolveConnection, vaultFor } from '@steward/core/connections/connection-service';
import { SecretUnreadableError } from '@steward/core/secrets/envelope';
import { SYSTEM_ACTOR } from '@steward/core/resources';
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
let b: TenantFixture;

/** A secret no response, log line, audit entry or database row may ever contain. */
const CANARY = 'canary-Secret-7f3a9c1e-d00d';
const CANARY_2 = 'second-canary-b4c5d6e7-cafe';

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'conn-a');
  b = await createTenantFixture(t, 'conn-b');
});
afterAll(() => t?.close());

const api = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown, token = a.token) =>
  t.app.inject({
    method,
    url: `/api/v1${url}`,
    headers: bearer(token),
    ...(payload === undefined ? {} : { payload: payload as object }),
  });

const smtp = (name: string, extra: Record<string, unknown> = {}) => ({
  kind: 'smtp',
  name,
  config: { host: 'smtp.example.com', port: 587, from: 'robot@example.com', username: 'robot' },
  secret: CANARY,
  ...extra,
});

describe('connections API', () => {
  it('creates, lists, reads, changes and deletes a connection without ever returning its secret', async () => {
    const created = expectStatus(await api('POST', '/connections', smtp('Mail')), 201);
    expect(created.body).not.toContain(CANARY);
    const c = created.json();
    expect(c).toMatchObject({
      kind: 'smtp',
      name: 'Mail',
      hasSecret: true,
      isDefault: false,
      config: { host: 'smtp.example.com', port: 587, from: 'robot@example.com', username: 'robot' },
    });
    expect(Object.keys(c).sort()).toEqual(
      [
        'config',
        'createdAt',
        'hasClientKey',
        'hasSecret',
        'health',
        'id',
        'isDefault',
        'kind',
        'name',
        'updatedAt',
      ].sort(),
    );

    expect(c.health).toEqual({ state: 'never', lastSuccessAt: null, lastErrorAt: null, lastError: null });

    const list = expectStatus(await api('GET', '/connections'), 200);
    expect(list.body).not.toContain(CANARY);
    expect(list.json().items.map((x: { id: string }) => x.id)).toContain(c.id);
    const one = expectStatus(await api('GET', `/connections/${c.id}`), 200);
    expect(one.body).not.toContain(CANARY);
    expect(one.json().hasSecret).toBe(true);

    // Config is merged; null removes a setting; a new secret replaces the old one.
    const changed = expectStatus(
      await api('PATCH', `/connections/${c.id}`, {
        config: { port: 2525, username: null },
        secret: CANARY_2,
        isDefault: true,
      }),
      200,
    );
    expect(changed.body).not.toContain(CANARY_2);
    expect(changed.json()).toMatchObject({
      hasSecret: true,
      isDefault: true,
      config: { host: 'smtp.example.com', port: 2525, from: 'robot@example.com' },
    });
    expect(changed.json().config.username).toBeUndefined();
    const resolved = await t.res.db.withTenant(a.tenant.id, (tx) =>
      resolveConnection(vaultFor(t.res.master), tx, a.tenant.id, 'smtp'),
    );
    expect(resolved).toMatchObject({ id: c.id, secret: CANARY_2 });

    const cleared = expectStatus(await api('PATCH', `/connections/${c.id}`, { secret: null }), 200).json();
    expect(cleared.hasSecret).toBe(false);

    expectStatus(await api('DELETE', `/connections/${c.id}`), 204);
    expectStatus(await api('GET', `/connections/${c.id}`), 404);
    expectStatus(await api('DELETE', `/connections/${c.id}`), 404);

    const audit = expectStatus(await api('GET', '/audit?limit=200'), 200);
    const actions = audit
      .json()
      .items.filter((e: { targetId: string }) => e.targetId === c.id)
      .map((e: { action: string; details: Record<string, unknown> }) => [e.action, e.details.secret]);
    expect(actions).toEqual(
      expect.arrayContaining([
        ['connection.created', 'set'],
        ['connection.updated', 'set'],
        ['connection.updated', 'removed'],
        ['connection.deleted', undefined],
      ]),
    );
  });

  it('rejects bad input with 400 and a reason', async () => {
    const bad: [unknown, string][] = [
      [{ ...smtp('x'), kind: 'ftp' }, 'kind'],
      [{ ...smtp('x'), config: { host: 'smtp.example.com' } }, 'from'],
      [{ ...smtp('x'), config: { host: 'smtp.example.com', from: 'not an address' } }, 'from'],
      [{ ...smtp('x'), config: { host: 'smtp.example.com', from: 'a@b.test', port: 70000 } }, 'port'],
      [{ ...smtp('x'), config: { host: 'smtp.example.com', from: 'a@b.test', password: 'x' } }, 'password'],
      [{ ...smtp('x'), config: { host: 'bad host!', from: 'a@b.test' } }, 'host'],
      [{ ...smtp('x'), secret: '' }, 'secret'],
      [{ ...smtp('x'), secret: 'x'.repeat(8193) }, 'secret'],
      [{ ...smtp('x'), extra: true }, 'extra'],
      [{ ...smtp('x'), name: '../etc' }, 'name'],
      [{ kind: 'http', name: 'api', config: { baseUrl: 'ftp://example.com' } }, 'baseUrl'],
      [{ kind: 'http', name: 'api', config: { baseUrl: 'https://user:pw@example.com/' } }, 'user name'],
      [
        { kind: 'http', name: 'api', config: { baseUrl: 'https://example.com', headerName: 'bad header' } },
        'headerName',
      ],
    ];
    for (const [payload, mention] of bad) {
      const r = expectStatus(await api('POST', '/connections', payload), 400);
      expect(r.json().error.code, JSON.stringify(payload)).toBe('VALIDATION_FAILED');
      expect(r.json().error.message, JSON.stringify(payload)).toContain(mention);
      expect(r.body).not.toContain(CANARY);
    }
    const ok = expectStatus(await api('POST', '/connections', smtp('Valid')), 201).json();
    expectStatus(await api('PATCH', `/connections/${ok.id}`, {}), 400);
    const r = expectStatus(await api('PATCH', `/connections/${ok.id}`, { config: { from: null } }), 400);
    expect(r.json().error.message).toContain('from');
    expectStatus(await api('PATCH', `/connections/not-a-uuid`, { name: 'n' }), 400);
    expectStatus(await api('GET', '/connections?kind=ftp'), 400);
    // Nothing changed by the failed attempts.
    expect(expectStatus(await api('GET', `/connections/${ok.id}`), 200).json().config.from).toBe(
      'robot@example.com',
    );
  });

  it('answers 409 for a name that is taken, and keeps one default per kind', async () => {
    expectStatus(await api('POST', '/connections', smtp('Dup')), 201);
    expect(expectStatus(await api('POST', '/connections', smtp('Dup')), 409).json().error.code).toBe(
      'CONFLICT',
    );
    const d1 = expectStatus(
      await api('POST', '/connections', smtp('Default 1', { isDefault: true })),
      201,
    ).json();
    const d2 = expectStatus(
      await api('POST', '/connections', smtp('Default 2', { isDefault: true })),
      201,
    ).json();
    expect(expectStatus(await api('GET', `/connections/${d1.id}`), 200).json().isDefault).toBe(false);
    expect(d2.isDefault).toBe(true);
    expectStatus(await api('PATCH', `/connections/${d1.id}`, { name: 'Dup' }), 409);
    const http = expectStatus(
      await api('POST', '/connections', {
        kind: 'http',
        name: 'Api',
        config: { baseUrl: 'https://api.example.com/v1/' },
        isDefault: true,
      }),
      201,
    ).json();
    expect(http).toMatchObject({ isDefault: true, hasSecret: false });
    expect(expectStatus(await api('GET', `/connections/${d2.id}`), 200).json().isDefault).toBe(true);
    const onlyHttp = expectStatus(await api('GET', '/connections?kind=http'), 200).json();
    expect(onlyHttp.items.map((x: { kind: string }) => x.kind)).toEqual(['http']);
  });

  it("needs connections:read to see and connections:manage to change; another tenant's connection is a 404", async () => {
    const mine = expectStatus(await api('POST', '/connections', smtp('Private')), 201).json();
    const viewer = await createApiKey(t.res, a.tenant.id, SYSTEM_ACTOR, { name: 'v', role: 'viewer' });
    const auditor = await createApiKey(t.res, a.tenant.id, SYSTEM_ACTOR, { name: 'au', role: 'auditor' });
    expectStatus(await api('GET', '/connections', undefined, viewer.key), 403);
    expectStatus(await api('GET', `/connections/${mine.id}`, undefined, auditor.key), 200);
    expectStatus(await api('POST', '/connections', smtp('By auditor'), auditor.key), 403);
    expectStatus(await api('DELETE', `/connections/${mine.id}`, undefined, auditor.key), 403);

    for (const token of [b.token, b.apiKey]) {
      expectStatus(await api('GET', `/connections/${mine.id}`, undefined, token), 404);
      expectStatus(
        await api('PATCH', `/connections/${mine.id}`, { name: 'stolen', secret: 'x' }, token),
        404,
      );
      expectStatus(await api('DELETE', `/connections/${mine.id}`, undefined, token), 404);
      const list = expectStatus(await api('GET', '/connections?limit=200', undefined, token), 200);
      expect(list.body).not.toContain(mine.id);
    }
    expect(expectStatus(await api('GET', `/connections/${mine.id}`), 200).json().name).toBe('Private');
  });
});

describe('credentials at rest', () => {
  it('never holds the plaintext: not in connections, tenant keys, the audit log or the logs', async () => {
    const c = expectStatus(await api('POST', '/connections', smtp('At rest')), 201).json();
    expectStatus(await api('PATCH', `/connections/${c.id}`, { secret: CANARY }), 200);
    const dumps = await t.db.owner<{ dump: string }[]>`
      select row_to_json(x)::text as dump from connections x
      union all select row_to_json(k)::text from tenant_keys k
      union all select row_to_json(l)::text from audit_log l`;
    expect(dumps.length).toBeGreaterThan(5);
    const canaryHex = Buffer.from(CANARY).toString('hex');
    const canaryB64 = Buffer.from(CANARY).toString('base64');
    for (const { dump } of dumps) {
      expect(dump).not.toContain(CANARY);
      expect(dump).not.toContain(canaryHex);
      expect(dump).not.toContain(canaryB64);
    }
    const raw = await t.db.owner<{ secret_ciphertext: Buffer }[]>`
      select secret_ciphertext from connections where secret_ciphertext is not null`;
    expect(raw.length).toBeGreaterThan(0);
    for (const r of raw) expect(r.secret_ciphertext.includes(Buffer.from(CANARY))).toBe(false);
    expect(t.logs()).not.toContain(CANARY);
    expect(t.logs()).toContain('/api/v1/connections');
  });

  it('does not decrypt ciphertext moved to another connection or another tenant, or a moved data key', async () => {
    const vault = vaultFor(t.res.master);
    const one = expectStatus(
      await api('POST', '/connections', smtp('Swap one', { secret: 'secret-one' })),
      201,
    ).json();
    const two = expectStatus(
      await api('POST', '/connections', smtp('Swap two', { secret: 'secret-two' })),
      201,
    ).json();
    const other = expectStatus(
      await api('POST', '/connections', smtp('Swap other', { secret: 'secret-other' }), b.token),
      201,
    ).json();
    const resolve = (tenantId: string, name: string) =>
      t.res.db.withTenant(tenantId, (tx) => resolveConnection(vault, tx, tenantId, 'smtp', name));
    expect((await resolve(a.tenant.id, 'Swap one')).secret).toBe('secret-one');
    expect((await resolve(b.tenant.id, 'Swap other')).secret).toBe('secret-other');

    // Connection one gets connection two's ciphertext (same tenant, same data key).
    await t.db.owner`
      update connections set (secret_ciphertext, secret_nonce) =
        (select secret_ciphertext, secret_nonce from connections where id = ${two.id})
      where id = ${one.id}`;
    await expect(resolve(a.tenant.id, 'Swap one')).rejects.toBeInstanceOf(SecretUnreadableError);
    expect((await resolve(a.tenant.id, 'Swap two')).secret).toBe('secret-two');

    // B's connection gets A's ciphertext.
    await t.db.owner`
      update connections set (secret_ciphertext, secret_nonce) =
        (select secret_ciphertext, secret_nonce from connections where id = ${two.id})
      where id = ${other.id}`;
    await expect(resolve(b.tenant.id, 'Swap other')).rejects.toBeInstanceOf(SecretUnreadableError);

    // B's tenant key replaced by A's wrapped key: it does not unwrap under B's id.
    await t.db.owner`
      update tenant_keys set (wrapped_key, nonce) =
        (select wrapped_key, nonce from tenant_keys where tenant_id = ${a.tenant.id})
      where tenant_id = ${b.tenant.id}`;
    await expect(resolve(b.tenant.id, 'Swap other')).rejects.toBeInstanceOf(SecretUnreadableError);

    // A flipped bit in a ciphertext.
    await t.db.owner`
      update connections set secret_ciphertext = set_byte(secret_ciphertext, 0, get_byte(secret_ciphertext, 0) # 1)
      where id = ${two.id}`;
    await expect(resolve(a.tenant.id, 'Swap two')).rejects.toBeInstanceOf(SecretUnreadableError);
  });

  it('keeps a tenant key readable only by its tenant (row-level security)', async () => {
    const seen = await t.res.db.withTenant(
      a.tenant.id,
      (tx) => tx<{ tenant_id: string }[]>`select tenant_id from tenant_keys`,
    );
    expect(seen.map((r) => r.tenant_id)).toEqual([a.tenant.id]);
    const conns = await t.res.db.withTenant(
      a.tenant.id,
      (tx) => tx<{ tenant_id: string }[]>`select tenant_id from connections`,
    );
    expect(new Set(conns.map((r) => r.tenant_id))).toEqual(new Set([a.tenant.id]));
  });
});
