import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from 'otplib';
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
import { cliFor, errorOf, jsonOf, type CliResult } from '../testing/cli-runner.ts';

let t: TestApp;
let a: TenantFixture;
let cli: (...args: string[]) => Promise<CliResult>;

beforeAll(async () => {
  t = await createTestApp();
  cli = cliFor(t);
  a = await createTenantFixture(t, 'cli-mfa');
});
afterAll(() => t?.close());

describe('steward mfa reset / session revoke', () => {
  it("resets a locked-out member's MFA and revokes their sessions (audited)", async () => {
    const email = 'locked@cli-mfa.test';
    const user = await addUser(t, a.tenant.id, email, 'admin');
    const s = await loginAs(t, email, 'cli-mfa');
    const { secret } = expectStatus(
      await t.app.inject({ method: 'POST', url: '/api/v1/mfa/totp', headers: bearer(s.accessToken) }),
      200,
    ).json() as { secret: string };
    expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/mfa/totp/confirm',
        headers: bearer(s.accessToken),
        payload: { code: await generate({ secret }) },
      }),
      200,
    );
    const reset = await cli('mfa', 'reset', '--tenant', 'cli-mfa', '--email', email, '--json');
    expect(jsonOf(reset)).toEqual({ userId: user.id, reset: true });
    // The CLI is another process: the server's authentication cache sees the revocation within a second.
    await new Promise((r) => setTimeout(r, 1100));
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(s.accessToken) }), 401);
    const login = expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { email, password: TEST_PASSWORD, tenant: 'cli-mfa' },
      }),
      200,
    ).json();
    expect(login.accessToken).toBeTruthy();

    const revoked = await cli('session', 'revoke', '--tenant', 'cli-mfa', '--email', email, '--json');
    expect(jsonOf(revoked)).toEqual({ userId: user.id, revoked: 1 });
    await new Promise((r) => setTimeout(r, 1100));
    expectStatus(
      await t.app.inject({ url: '/api/v1/me', headers: bearer(login.accessToken as string) }),
      401,
    );

    const entries = await t.res.db.withTenant(
      a.tenant.id,
      (tx) => tx<{ action: string; actor_label: string }[]>`
        select action, actor_label from audit_log where tenant_id = ${a.tenant.id} and target_id = ${user.id}
          and action in ('mfa.reset', 'session.revoked_all') order by seq`,
    );
    expect(entries).toEqual([
      { action: 'mfa.reset', actor_label: 'steward cli' },
      { action: 'session.revoked_all', actor_label: 'steward cli' },
    ]);
    expect(
      errorOf(await cli('mfa', 'reset', '--tenant', 'cli-mfa', '--email', 'nobody@x.test', '--json')).code,
    ).toBe('NOT_FOUND');
  });
});
