import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import { issueSession } from '@steward/core/identity/session-service';
import { parseFilter } from '@steward/core/scim/scim-filter';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

/** SCIM 2.0 provisioning: users, groups mapped to roles, filters, paging, PATCH, deprovisioning. */

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const ERROR = 'urn:ietf:params:scim:api:messages:2.0:Error';

let t: TestApp;
let other: TestApp;
let a: TenantFixture;
let b: TenantFixture;
let scimA: string;
let scimB: string;
let scimTokenIdA: string;

const scim = (
  token: string,
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
  url: string,
  payload?: unknown,
) =>
  t.app.inject({
    method,
    url: `/scim/v2${url}`,
    headers: {
      authorization: `Bearer ${token}`,
      ...(payload === undefined ? {} : { 'content-type': 'application/scim+json' }),
    },
    ...(payload === undefined ? {} : { payload: JSON.stringify(payload) }),
  });

function scimError(r: LightMyRequestResponse, status: number, scimType?: string) {
  expect(r.statusCode, r.body).toBe(status);
  expect(r.headers['content-type']).toContain('application/scim+json');
  const body = r.json();
  expect(body.schemas).toEqual([ERROR]);
  expect(body.status).toBe(String(status));
  if (scimType) expect(body.scimType).toBe(scimType);
  return body;
}

async function newToken(fx: TenantFixture, name: string) {
  return expectStatus(
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/scim-tokens',
      headers: bearer(fx.token),
      payload: { name },
    }),
    201,
  ).json() as { id: string; token: string; prefix: string };
}

const roleOf = async (userId: string) =>
  expectStatus(await t.app.inject({ url: `/api/v1/users/${userId}`, headers: bearer(a.token) }), 200).json()
    .role;

async function createUser(userName: string, extra: Record<string, unknown> = {}) {
  const r = expectStatus(await scim(scimA, 'POST', '/Users', { schemas: [USER], userName, ...extra }), 201);
  return r.json() as {
    id: string;
    userName: string;
    active: boolean;
    externalId?: string;
    displayName: string;
  };
}

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'scim-a');
  b = await createTenantFixture(t, 'scim-b');
  const tokA = await newToken(a, 'okta');
  scimA = tokA.token;
  scimTokenIdA = tokA.id;
  scimB = (await newToken(b, 'azure')).token;
  expectStatus(
    await t.app.inject({
      method: 'PUT',
      url: '/api/v1/scim-settings',
      headers: bearer(a.token),
      payload: { defaultRole: 'viewer', groupRoles: { Approvers: 'approver', Admins: 'admin' } },
    }),
    200,
  );
});
afterAll(async () => {
  await other?.close();
  await t?.close();
});

describe('SCIM authentication', () => {
  it('answers 401 in the SCIM error format without a valid SCIM token', async () => {
    scimError(await t.app.inject({ url: '/scim/v2/Users' }), 401);
    scimError(await scim('scim_AAAAAAAAAAAA_' + 'B'.repeat(40), 'GET', '/Users'), 401);
    scimError(await scim(a.apiKey, 'GET', '/Users'), 401);
    scimError(await scim(a.token, 'GET', '/Users'), 401);
  });

  it('lists the token without its secret, and a revoked token stops working at once', async () => {
    const extra = await newToken(a, 'short-lived');
    expectStatus(await scim(extra.token, 'GET', '/Users'), 200);
    const list = expectStatus(
      await t.app.inject({ url: '/api/v1/scim-tokens', headers: bearer(a.token) }),
      200,
    );
    expect(list.body).toContain(extra.prefix);
    expect(list.body).not.toContain(extra.token);
    expectStatus(
      await t.app.inject({
        method: 'DELETE',
        url: `/api/v1/scim-tokens/${extra.id}`,
        headers: bearer(a.token),
      }),
      204,
    );
    scimError(await scim(extra.token, 'GET', '/Users'), 401);
  });

  it('refuses the owner role in the settings', async () => {
    const r = await t.app.inject({
      method: 'PUT',
      url: '/api/v1/scim-settings',
      headers: bearer(a.token),
      payload: { defaultRole: 'owner', groupRoles: {} },
    });
    expect(r.statusCode).toBe(400);
  });
});

describe('SCIM Users', () => {
  it('provisions, reads, filters and pages users', async () => {
    const dana = await createUser('Dana@Corp.example', {
      externalId: 'ext-dana',
      name: { givenName: 'Dana', familyName: 'Scully' },
      emails: [{ value: 'dana@corp.example', primary: true }],
    });
    expect(dana.userName).toBe('dana@corp.example');
    expect(dana.active).toBe(true);
    expect(await roleOf(dana.id)).toBe('viewer');
    const got = expectStatus(await scim(scimA, 'GET', `/Users/${dana.id}`), 200);
    expect(got.headers['content-type']).toContain('application/scim+json');
    expect(got.json()).toMatchObject({
      schemas: [USER],
      id: dana.id,
      externalId: 'ext-dana',
      displayName: 'Dana Scully',
    });
    scimError(
      await scim(scimA, 'POST', '/Users', { schemas: [USER], userName: 'dana@corp.example' }),
      409,
      'uniqueness',
    );
    scimError(
      await scim(scimA, 'POST', '/Users', { schemas: [USER], userName: 'not-an-address' }),
      400,
      'invalidValue',
    );

    for (const n of [1, 2, 3]) await createUser(`page${n}@corp.example`);
    const q = (filter: string) => scim(scimA, 'GET', `/Users?filter=${encodeURIComponent(filter)}`);
    expect(expectStatus(await q('userName eq "dana@corp.example"'), 200).json()).toMatchObject({
      totalResults: 1,
      Resources: [{ id: dana.id }],
    });
    expect(expectStatus(await q('externalId eq "ext-dana"'), 200).json().totalResults).toBe(1);
    expect(
      expectStatus(await q('userName eq "DANA@corp.example" and externalId eq "ext-dana"'), 200).json()
        .totalResults,
    ).toBe(1);
    expect(
      expectStatus(await q('userName eq "dana@corp.example" and externalId eq "other"'), 200).json()
        .totalResults,
    ).toBe(0);
    expect(expectStatus(await q('displayName eq "Dana Scully"'), 200).json().totalResults).toBe(1);
    expect(expectStatus(await q('userName sw "page"'), 200).json().totalResults).toBe(3);
    scimError(await q('userName eq'), 400, 'invalidFilter');
    scimError(await q('password eq "x"'), 400, 'invalidFilter');

    const all = expectStatus(await scim(scimA, 'GET', '/Users'), 200).json();
    // The owner and the four provisioned users.
    expect(all.totalResults).toBe(5);
    const paged = expectStatus(await scim(scimA, 'GET', '/Users?startIndex=2&count=2'), 200).json();
    expect(paged).toMatchObject({ totalResults: 5, startIndex: 2, itemsPerPage: 2 });
    expect(paged.Resources.map((u: { id: string }) => u.id)).toEqual(
      all.Resources.slice(1, 3).map((u: { id: string }) => u.id),
    );
    scimError(await scim(scimA, 'GET', '/Users/3f1c2a9e-7b4d-4e21-9a0c-5d6e7f809a1b'), 404);
  });

  it('evaluates filters in SQL, with the same answers as the in-memory reading, and pages them', async () => {
    const q = (filter: string, extra = '') =>
      scim(scimA, 'GET', `/Users?filter=${encodeURIComponent(filter)}${extra}`);
    const ids = async (filter: string) =>
      (expectStatus(await q(filter), 200).json().Resources as { id: string }[]).map((u) => u.id).sort();
    const all = expectStatus(await scim(scimA, 'GET', '/Users'), 200).json().Resources as Record<
      string,
      unknown
    >[];
    const filters = [
      'userName eq "page1@corp.example" or userName eq "PAGE2@corp.example"',
      'emails.value eq "dana@corp.example"',
      'externalId eq "ext-dana" or displayName co "scul"',
      'displayName co "SCUL"',
      'displayName sw "dana"',
      'displayName ew "scully"',
      'userName sw "page" and userName ne "page3@corp.example"',
      'externalId pr',
      'externalId ne "ext-dana"',
      'active eq true and userName co "corp"',
      'active eq false',
      'urn:ietf:params:scim:schemas:core:2.0:User:userName eq "dana@corp.example"',
      'displayName co "%"',
      `userName eq "x' or '1'='1"`,
    ];
    for (const f of filters) {
      const inMemory = parseFilter(f, [
        'id',
        'userName',
        'externalId',
        'displayName',
        'emails.value',
        'active',
      ])!;
      const expected = all
        .filter((u) => inMemory(u))
        .map((u) => u.id as string)
        .sort();
      expect(await ids(f), f).toEqual(expected);
    }
    expect(await ids('userName eq "page1@corp.example" or userName eq "PAGE2@corp.example"')).toHaveLength(2);
    expect(await ids('displayName co "SCUL"')).toHaveLength(1);
    expect(await ids('displayName co "%"')).toHaveLength(0);

    // Paging applies to the filtered set, counted in full.
    const page = expectStatus(await q('userName sw "page"', '&startIndex=2&count=1'), 200).json();
    expect(page).toMatchObject({ totalResults: 3, startIndex: 2, itemsPerPage: 1 });
    expect(page.Resources[0].userName).toBe('page2@corp.example');
    const none = expectStatus(await q('userName sw "page"', '&count=0'), 200).json();
    expect(none).toMatchObject({ totalResults: 3, itemsPerPage: 0, Resources: [] });
    const past = expectStatus(await q('userName sw "page"', '&startIndex=10'), 200).json();
    expect(past).toMatchObject({ totalResults: 3, itemsPerPage: 0 });

    // What is not supported is 400 invalidFilter (RFC 7644 3.4.2.2), never a silent match-all.
    for (const bad of [
      'userName gt "a"',
      '(userName eq "a")',
      'emails[type eq "work"]',
      'not (userName eq "a")',
      'userName eq "a" or',
      'userName eq "unterminated',
      'title eq "x"',
    ]) {
      scimError(await q(bad), 400, 'invalidFilter');
    }
  });

  it('replaces and patches users (RFC 7644 PatchOp)', async () => {
    const u = await createUser('frank@corp.example', { displayName: 'Frank' });
    const put = expectStatus(
      await scim(scimA, 'PUT', `/Users/${u.id}`, {
        schemas: [USER],
        userName: 'frank@corp.example',
        displayName: 'Frank Castle',
        externalId: 'ext-frank',
      }),
      200,
    ).json();
    expect(put).toMatchObject({ displayName: 'Frank Castle', externalId: 'ext-frank', active: true });
    const patched = expectStatus(
      await scim(scimA, 'PATCH', `/Users/${u.id}`, {
        schemas: [PATCH],
        Operations: [
          { op: 'Replace', path: 'name.givenName', value: 'Francis' },
          { op: 'remove', path: 'externalId' },
          { op: 'add', path: 'title', value: 'ignored' },
        ],
      }),
      200,
    ).json();
    expect(patched.displayName).toBe('Francis Castle');
    expect(patched.externalId).toBeUndefined();
    scimError(
      await scim(scimA, 'PATCH', `/Users/${u.id}`, {
        schemas: [PATCH],
        Operations: [{ op: 'move', path: 'active' }],
      }),
      400,
      'invalidSyntax',
    );
    scimError(await scim(scimA, 'PATCH', `/Users/${u.id}`, { Operations: [] }), 400, 'invalidSyntax');
    scimError(
      await scim(scimA, 'PATCH', `/Users/${u.id}`, {
        schemas: [PATCH],
        Operations: [{ op: 'replace', path: 'userName', value: 'someone-else@corp.example' }],
      }),
      400,
      'mutability',
    );
  });

  it('keeps tenants apart', async () => {
    const u = await createUser('gina@corp.example');
    scimError(await scim(scimB, 'GET', `/Users/${u.id}`), 404);
    scimError(
      await scim(scimB, 'PATCH', `/Users/${u.id}`, {
        schemas: [PATCH],
        Operations: [{ op: 'replace', path: 'active', value: false }],
      }),
      404,
    );
    scimError(await scim(scimB, 'DELETE', `/Users/${u.id}`), 404);
    const list = expectStatus(await scim(scimB, 'GET', '/Users'), 200);
    expect(list.body).not.toContain('gina@corp.example');
    expect(await roleOf(u.id)).toBe('viewer');
  });
});

describe('SCIM Groups', () => {
  it('maps group membership to roles as members join and leave', async () => {
    const hal = await createUser('hal@corp.example');
    const ivy = await createUser('ivy@corp.example');
    const group = expectStatus(
      await scim(scimA, 'POST', '/Groups', {
        schemas: [GROUP],
        displayName: 'Approvers',
        members: [{ value: hal.id }],
      }),
      201,
    ).json();
    expect(group.members.map((m: { value: string }) => m.value)).toEqual([hal.id]);
    expect(await roleOf(hal.id)).toBe('approver');
    scimError(
      await scim(scimA, 'POST', '/Groups', { schemas: [GROUP], displayName: 'Approvers' }),
      409,
      'uniqueness',
    );
    const found = expectStatus(
      await scim(scimA, 'GET', `/Groups?filter=${encodeURIComponent('displayName eq "approvers"')}`),
      200,
    ).json();
    expect(found.totalResults).toBe(1);
    const groups = async (filter: string) =>
      (
        expectStatus(
          await scim(scimA, 'GET', `/Groups?filter=${encodeURIComponent(filter)}`),
          200,
        ).json() as { Resources: { id: string }[] }
      ).Resources.map((g) => g.id);
    expect(await groups('displayName sw "APPR"')).toEqual([group.id]);
    expect(await groups('displayName co "rover" and members.value eq "' + hal.id + '"')).toEqual([group.id]);
    expect(await groups('members.value eq "' + ivy.id + '"')).toEqual([]);
    expect(await groups('members.value ne "' + hal.id + '" and displayName eq "approvers"')).toEqual([]);
    expect(await groups('displayName eq "nobody" or members.value pr')).toEqual([group.id]);
    scimError(
      await scim(scimA, 'GET', `/Groups?filter=${encodeURIComponent('members.display eq "x"')}`),
      400,
      'invalidFilter',
    );

    expectStatus(
      await scim(scimA, 'PATCH', `/Groups/${group.id}`, {
        schemas: [PATCH],
        Operations: [{ op: 'add', path: 'members', value: [{ value: ivy.id }] }],
      }),
      200,
    );
    expect(await roleOf(ivy.id)).toBe('approver');
    expectStatus(
      await scim(scimA, 'PATCH', `/Groups/${group.id}`, {
        schemas: [PATCH],
        Operations: [{ op: 'remove', path: `members[value eq "${hal.id}"]` }],
      }),
      200,
    );
    expect(await roleOf(hal.id)).toBe('viewer');

    // Ivy in Admins too: the stronger role wins; leaving Admins brings her back to approver.
    const admins = expectStatus(
      await scim(scimA, 'POST', '/Groups', {
        schemas: [GROUP],
        displayName: 'Admins',
        members: [{ value: ivy.id }],
      }),
      201,
    ).json();
    expect(await roleOf(ivy.id)).toBe('admin');
    expectStatus(
      await scim(scimA, 'PUT', `/Groups/${admins.id}`, {
        schemas: [GROUP],
        displayName: 'Admins',
        members: [],
      }),
      200,
    );
    expect(await roleOf(ivy.id)).toBe('approver');
    expectStatus(await scim(scimA, 'DELETE', `/Groups/${group.id}`), 204);
    expect(await roleOf(ivy.id)).toBe('viewer');
    scimError(await scim(scimA, 'GET', `/Groups/${group.id}`), 404);
    scimError(
      await scim(scimA, 'POST', '/Groups', {
        schemas: [GROUP],
        displayName: 'X',
        members: [{ value: b.apiKeyId }],
      }),
      400,
      'invalidValue',
    );
  });
});

describe('SCIM deprovisioning', () => {
  async function sessionFor(userId: string) {
    const result = await issueSession(
      t.res,
      { userId, tenantId: a.tenant.id },
      { ip: '127.0.0.1' },
      { method: 'sso' },
    );
    if ('mfaRequired' in result) throw new Error('the test user has no second factor');
    return result;
  }

  it('active=false revokes the sessions at once, here and in another process within a second', async () => {
    const jo = await createUser('jo@corp.example');
    const session = await sessionFor(jo.id);
    other = await createTestApp({ database: t.db });
    const me = (app: TestApp) => app.app.inject({ url: '/api/v1/me', headers: bearer(session.accessToken) });
    expectStatus(await me(t), 200);
    expectStatus(await me(other), 200); // cached as valid in the other process

    const patched = expectStatus(
      await scim(scimA, 'PATCH', `/Users/${jo.id}`, {
        schemas: [PATCH],
        Operations: [{ op: 'replace', value: { active: false } }],
      }),
      200,
    ).json();
    expect(patched.active).toBe(false);
    const revokedAt = Date.now();
    expect((await me(t)).statusCode).toBe(401);
    // The other process still answers from its one-second cache, filled before the revocation: the
    // last success it gives must come less than a second after the revocation, then 401 for good.
    let lastAccepted = revokedAt;
    for (;;) {
      const r = await me(other);
      if (r.statusCode === 401) break;
      expect(r.statusCode).toBe(200);
      lastAccepted = Date.now();
      expect(lastAccepted - revokedAt).toBeLessThan(1000);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(lastAccepted - revokedAt).toBeLessThan(1000);
    expect((await me(other)).statusCode).toBe(401);
    const refreshed = await t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/refresh',
      payload: { refreshToken: session.refreshToken },
    });
    expect(refreshed.statusCode).toBe(401);
    // Reactivated: new sign-ins work again (the old session stays revoked).
    expectStatus(
      await scim(scimA, 'PATCH', `/Users/${jo.id}`, {
        schemas: [PATCH],
        Operations: [{ op: 'replace', path: 'active', value: 'True' }],
      }),
      200,
    );
    expectStatus(
      await t.app.inject({ url: '/api/v1/me', headers: bearer((await sessionFor(jo.id)).accessToken) }),
      200,
    );
    expect((await me(t)).statusCode).toBe(401);
  });

  it('DELETE removes the membership and revokes the sessions at once', async () => {
    const kim = await createUser('kim@corp.example');
    const session = await sessionFor(kim.id);
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(session.accessToken) }), 200);
    expectStatus(await scim(scimA, 'DELETE', `/Users/${kim.id}`), 204);
    expect((await t.app.inject({ url: '/api/v1/me', headers: bearer(session.accessToken) })).statusCode).toBe(
      401,
    );
    scimError(await scim(scimA, 'GET', `/Users/${kim.id}`), 404);
    expect(
      (await t.app.inject({ url: `/api/v1/users/${kim.id}`, headers: bearer(a.token) })).statusCode,
    ).toBe(404);
  });

  it('never deprovisions the last owner', async () => {
    const owner = expectStatus(
      await scim(scimA, 'GET', `/Users?filter=${encodeURIComponent(`userName eq "${a.ownerEmail}"`)}`),
      200,
    ).json().Resources[0];
    scimError(await scim(scimA, 'DELETE', `/Users/${owner.id}`), 409);
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(a.token) }), 200);
  });

  it('audits what SCIM did, with the token as the actor', async () => {
    const rows = await t.db.owner<{ action: string; actor_type: string; actor_id: string }[]>`
      select action, actor_type, actor_id from audit_log
      where tenant_id = ${a.tenant.id} and action in ('user.provisioned', 'user.deprovisioned', 'user.role_synced',
        'scim_group.created', 'scim_group.members_changed', 'scim_group.deleted')`;
    const actions = new Set(rows.map((r) => r.action));
    for (const action of [
      'user.provisioned',
      'user.deprovisioned',
      'user.role_synced',
      'scim_group.created',
      'scim_group.members_changed',
      'scim_group.deleted',
    ])
      expect(actions, action).toContain(action);
    for (const r of rows) expect(r).toMatchObject({ actor_type: 'system', actor_id: scimTokenIdA });
  });
});
