import { generate } from 'otplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPlatformAdmin } from '@steward/core/identity/user-service';
import { SYSTEM_ACTOR } from '@steward/core/resources';
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

beforeAll(async () => {
  t = await createTestApp();
  fx = await createTenantFixture(t, 'mfa-acme');
});
afterAll(() => t?.close());

const post = (url: string, payload: unknown, token?: string) =>
  t.app.inject({ method: 'POST', url, payload: payload as object, headers: token ? bearer(token) : {} });

const stepNow = () => Math.floor(Date.now() / 30_000);
const codeAtStep = (secret: string, step: number) => generate({ secret, epoch: step * 30 + 1 });

/** Enrol TOTP for a signed-in user; returns the secret, the backup codes and the step used. */
async function enrol(token: string) {
  const { secret, otpauthUri } = expectStatus(await post('/api/v1/mfa/totp', {}, token), 200).json() as {
    secret: string;
    otpauthUri: string;
  };
  expect(otpauthUri).toMatch(/^otpauth:\/\/totp\//);
  expect(otpauthUri).toContain(`secret=${secret}`);
  const step = stepNow();
  const { backupCodes } = expectStatus(
    await post('/api/v1/mfa/totp/confirm', { code: await codeAtStep(secret, step) }, token),
    200,
  ).json() as { backupCodes: string[] };
  return { secret, backupCodes, step };
}

async function passwordLogin(email: string, tenant = 'mfa-acme') {
  return expectStatus(
    await post('/api/v1/auth/login', { email, password: TEST_PASSWORD, tenant }),
    200,
  ).json() as {
    mfaRequired?: boolean;
    mfaToken: string;
    methods: string[];
    enrolmentRequired: boolean;
    accessToken?: string;
  };
}

async function auditActions(tenantId: string, action: string) {
  return t.res.db.withTenant(
    tenantId,
    (tx) => tx<
      { action: string; outcome: string; actor_id: string | null; details: Record<string, unknown> }[]
    >`
      select action, outcome, actor_id, details from audit_log where tenant_id = ${tenantId} and action = ${action} order by seq`,
  );
}

describe('TOTP', () => {
  let email: string;
  let userId: string;
  let secret: string;
  let backupCodes: string[];
  let enrolStep: number;

  beforeAll(async () => {
    email = 'totp@mfa-acme.test';
    userId = (await addUser(t, fx.tenant.id, email, 'member')).id;
    const session = await loginAs(t, email, 'mfa-acme');
    ({ secret, backupCodes, step: enrolStep } = await enrol(session.accessToken));
  });

  it('stores the secret sealed, never in clear', async () => {
    const [row] = await t.res.db.withSystemAccess(
      (tx) => tx<{ secret_sealed: Buffer }[]>`select secret_sealed from user_totp where user_id = ${userId}`,
    );
    expect(row!.secret_sealed.toString('latin1')).not.toContain(secret);
    expect(backupCodes).toHaveLength(10);
    expect(new Set(backupCodes).size).toBe(10);
  });

  it('a password sign-in now asks for the second factor, with a short-lived token', async () => {
    const first = await passwordLogin(email);
    expect(first).toMatchObject({
      mfaRequired: true,
      enrolmentRequired: false,
      methods: ['totp', 'backup_code'],
    });
    expect(first.accessToken).toBeUndefined();
    expect(first.mfaToken).toMatch(/^mt_/);
  });

  it('a code works once: the same code again is rejected (replay), and audited as a failed sign-in', async () => {
    // The code that confirmed the enrolment was spent then.
    const replayed = await passwordLogin(email);
    const again = await post('/api/v1/auth/mfa', {
      mfaToken: replayed.mfaToken,
      code: await codeAtStep(secret, enrolStep),
    });
    expectStatus(again, 401);
    // A later step (one step of drift ahead) is accepted once, then replaying it fails.
    const next = await codeAtStep(secret, enrolStep + 1);
    const ok = expectStatus(
      await post('/api/v1/auth/mfa', { mfaToken: replayed.mfaToken, code: next }),
      200,
    ).json();
    expect(ok.accessToken).toBeTruthy();
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(ok.accessToken as string) }), 200);
    const second = await passwordLogin(email);
    expectStatus(await post('/api/v1/auth/mfa', { mfaToken: second.mfaToken, code: next }), 401);
    const failures = (await auditActions(fx.tenant.id, 'auth.login')).filter((e) => e.outcome === 'failure');
    expect(
      failures.filter((e) => e.actor_id === userId && e.details.step === 'mfa').length,
    ).toBeGreaterThanOrEqual(2);
    const successes = await auditActions(fx.tenant.id, 'auth.mfa');
    expect(successes.some((e) => e.actor_id === userId && e.details.factor === 'totp')).toBe(true);
  });

  it('two steps of drift are rejected; the mfaToken is spent by a success and by the fifth failure', async () => {
    const login = await passwordLogin(email);
    expectStatus(
      await post('/api/v1/auth/mfa', {
        mfaToken: login.mfaToken,
        code: await codeAtStep(secret, stepNow() + 3),
      }),
      401,
    );
    expectStatus(
      await post('/api/v1/auth/mfa', {
        mfaToken: login.mfaToken,
        code: await codeAtStep(secret, stepNow() - 2),
      }),
      401,
    );
    for (let i = 0; i < 3; i++)
      expectStatus(await post('/api/v1/auth/mfa', { mfaToken: login.mfaToken, code: '000000' }), 401);
    // Five failures: even a correct answer no longer works with this token.
    expectStatus(await post('/api/v1/auth/mfa', { mfaToken: login.mfaToken, code: backupCodes[9]! }), 401);
    const used = await passwordLogin(email);
    expectStatus(await post('/api/v1/auth/mfa', { mfaToken: used.mfaToken, code: backupCodes[9]! }), 200);
    expectStatus(await post('/api/v1/auth/mfa', { mfaToken: used.mfaToken, code: backupCodes[8]! }), 401);
  });

  it('a backup code works once', async () => {
    const a = await passwordLogin(email);
    expectStatus(await post('/api/v1/auth/mfa', { mfaToken: a.mfaToken, code: backupCodes[0]! }), 200);
    const b = await passwordLogin(email);
    expectStatus(await post('/api/v1/auth/mfa', { mfaToken: b.mfaToken, code: backupCodes[0]! }), 401);
    expectStatus(
      await post('/api/v1/auth/mfa', { mfaToken: b.mfaToken, code: backupCodes[1]!.toUpperCase() }),
      200,
    );
    const status = expectStatus(
      await t.app.inject({
        url: '/api/v1/mfa',
        headers: bearer((await passwordLoginWithBackup(backupCodes[2]!)).accessToken),
      }),
      200,
    ).json();
    expect(status).toEqual({ totp: true, backupCodesLeft: 6, passkeys: 0 });
  });

  async function passwordLoginWithBackup(code: string) {
    const l = await passwordLogin(email);
    return expectStatus(await post('/api/v1/auth/mfa', { mfaToken: l.mfaToken, code }), 200).json() as {
      accessToken: string;
    };
  }

  it('an mfaToken is bound to its user: a code of another account does not redeem it', async () => {
    const otherEmail = 'other-totp@mfa-acme.test';
    await addUser(t, fx.tenant.id, otherEmail, 'member');
    const other = await enrol((await loginAs(t, otherEmail, 'mfa-acme')).accessToken);
    const login = await passwordLogin(email);
    expectStatus(
      await post('/api/v1/auth/mfa', { mfaToken: login.mfaToken, code: other.backupCodes[0]! }),
      401,
    );
    expectStatus(await post('/api/v1/auth/mfa', { mfaToken: 'mt_' + 'x'.repeat(48), code: '123456' }), 401);
  });

  it('disabling needs the password or a code; it revokes the other sessions and is audited', async () => {
    const keep = await passwordLoginWithBackup(backupCodes[3]!);
    const other = await passwordLoginWithBackup(backupCodes[4]!);
    expectStatus(
      await post('/api/v1/mfa/totp/disable', { password: 'wrong password' }, keep.accessToken),
      403,
    );
    expectStatus(await post('/api/v1/mfa/totp/disable', { password: TEST_PASSWORD }, keep.accessToken), 204);
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(keep.accessToken) }), 200);
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(other.accessToken) }), 401);
    const plain = await passwordLogin(email);
    expect(plain.accessToken).toBeTruthy();
    const disabled = await auditActions(fx.tenant.id, 'mfa.totp_disabled');
    expect(disabled.map((e) => e.outcome)).toEqual(['denied', 'success']);
  });
});

describe('a tenant that requires MFA', () => {
  it('signs in a member without a factor through TOTP enrolment, then always asks for a code', async () => {
    const strict = await createTenantFixture(t, 'mfa-strict');
    expectStatus(
      await t.app.inject({
        method: 'PATCH',
        url: '/api/v1/tenant',
        headers: bearer(strict.token),
        payload: { settings: { mfaRequired: ['member'] } },
      }),
      200,
    );
    const email = 'new@mfa-strict.test';
    await addUser(t, strict.tenant.id, email, 'member');
    await addUser(t, strict.tenant.id, 'viewer@mfa-strict.test', 'viewer');
    // A viewer is not in the required roles.
    expect((await passwordLogin('viewer@mfa-strict.test', 'mfa-strict')).accessToken).toBeTruthy();

    const login = await passwordLogin(email, 'mfa-strict');
    expect(login).toMatchObject({
      mfaRequired: true,
      enrolmentRequired: true,
      methods: ['totp', 'webauthn'],
    });
    // No code to give yet, and no way around the enrolment.
    expectStatus(await post('/api/v1/auth/mfa', { mfaToken: login.mfaToken, code: '123456' }), 401);
    const { secret } = expectStatus(
      await post('/api/v1/auth/mfa/enrol/totp', { mfaToken: login.mfaToken }),
      200,
    ).json() as { secret: string };
    const done = expectStatus(
      await post('/api/v1/auth/mfa', { mfaToken: login.mfaToken, code: await codeAtStep(secret, stepNow()) }),
      200,
    ).json() as { accessToken: string; backupCodes: string[] };
    expect(done.backupCodes).toHaveLength(10);
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(done.accessToken) }), 200);

    const next = await passwordLogin(email, 'mfa-strict');
    expect(next).toMatchObject({ mfaRequired: true, enrolmentRequired: false });
    // An enrolment token cannot be had for an enrolled user.
    expectStatus(await post('/api/v1/auth/mfa/enrol/totp', { mfaToken: next.mfaToken }), 401);

    expect((await auditActions(strict.tenant.id, 'mfa.totp_enabled')).length).toBe(1);
    expect((await auditActions(strict.tenant.id, 'auth.mfa_challenge')).length).toBeGreaterThanOrEqual(2);

    // Every member: the owner too.
    expectStatus(
      await t.app.inject({
        method: 'PATCH',
        url: '/api/v1/tenant',
        headers: bearer(strict.token),
        payload: { settings: { mfaRequired: true } },
      }),
      200,
    );
    expect(await passwordLogin(strict.ownerEmail, 'mfa-strict')).toMatchObject({ enrolmentRequired: true });
  });

  it('rejects malformed settings naming the field', async () => {
    const r = await t.app.inject({
      method: 'PATCH',
      url: '/api/v1/tenant',
      headers: bearer(fx.token),
      payload: { settings: { mfaRequired: 'yes' } },
    });
    expectStatus(r, 400);
    expect(r.json().error.message).toContain('mfaRequired');
  });
});

describe("an administrator's reset", () => {
  it("removes a member's factors, revokes all their sessions and is audited; other tenants' users are 404", async () => {
    const email = 'lost-phone@mfa-acme.test';
    const user = await addUser(t, fx.tenant.id, email, 'member');
    const session = await loginAs(t, email, 'mfa-acme');
    await enrol(session.accessToken);
    expectStatus(
      await t.app.inject({
        method: 'DELETE',
        url: `/api/v1/users/${user.id}/mfa`,
        headers: bearer(fx.token),
      }),
      204,
    );
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(session.accessToken) }), 401);
    expect((await passwordLogin(email)).accessToken).toBeTruthy();
    const resets = await auditActions(fx.tenant.id, 'mfa.reset');
    expect(resets.at(-1)!.details).toMatchObject({ totp: true });

    const other = await createTenantFixture(t, 'mfa-other');
    expectStatus(
      await t.app.inject({
        method: 'DELETE',
        url: `/api/v1/users/${user.id}/mfa`,
        headers: bearer(other.token),
      }),
      404,
    );
  });
});

describe('switching tenant', () => {
  it('does not carry a session without MFA into a tenant that requires it', async () => {
    const strict = await createTenantFixture(t, 'mfa-switch-strict');
    const email = 'switcher@mfa-acme.test';
    await addUser(t, fx.tenant.id, email, 'member');
    await addUser(t, strict.tenant.id, email, 'member');
    expectStatus(
      await t.app.inject({
        method: 'PATCH',
        url: '/api/v1/tenant',
        headers: bearer(strict.token),
        payload: { settings: { mfaRequired: true } },
      }),
      200,
    );
    const session = await loginAs(t, email, 'mfa-acme');
    const r = await post('/api/v1/auth/switch-tenant', { tenant: 'mfa-switch-strict' }, session.accessToken);
    expectStatus(r, 403);
    expect(r.json().error.message).toContain('requires MFA');
    // Signing in to it directly goes through enrolment.
    expect(await passwordLogin(email, 'mfa-switch-strict')).toMatchObject({ enrolmentRequired: true });
  });
});

describe('a platform administrator', () => {
  it('signs in to the platform with a second factor too', async () => {
    const email = 'root-mfa@platform.test';
    await createPlatformAdmin(t.res, SYSTEM_ACTOR, { email, password: TEST_PASSWORD });
    const first = await loginAs(t, email);
    expect(first.tenant.slug).toBe('_platform');
    const { backupCodes } = await enrol(first.accessToken);
    const login = expectStatus(
      await post('/api/v1/auth/login', { email, password: TEST_PASSWORD }),
      200,
    ).json() as {
      mfaToken: string;
    };
    const done = expectStatus(
      await post('/api/v1/auth/mfa', { mfaToken: login.mfaToken, code: backupCodes[0]! }),
      200,
    ).json() as { tenant: { slug: string }; accessToken: string };
    expect(done.tenant.slug).toBe('_platform');
    expectStatus(await t.app.inject({ url: '/api/v1/tenants', headers: bearer(done.accessToken) }), 200);
  });
});
