/**
 * openRuntime's database roles: its own runtime role, a role supplied through DATABASE_APP_URL, and
 * the refusal to run as a role that could bypass row-level security.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { verifyTenantAudit } from '@steward/core/audit/audit-service';
import { MasterKey, parseMasterKey } from '@steward/core/crypto/master-key';
import { SYSTEM_ACTOR } from '@steward/core/resources';
import { createTenant } from '@steward/core/tenants/tenant-service';
import { connect } from '@steward/db/database';
import { withDatabase } from '@steward/db/embedded-postgres';
import { APP_GROUP_ROLE, RUNTIME_ROLE } from '@steward/db/runtime-role';
import {
  createTestDatabase,
  TEST_MASTER_KEY,
  TEST_RUNTIME_PASSWORD,
  type TestDatabase,
} from '@steward/db/testing/test-database';
import { loadConfig } from './config.ts';
import { openRuntime, runtimeRolePassword } from './runtime.ts';

let tdb: TestDatabase;
let dataDir: string;
/** Roles are cluster-wide: every role a test creates is dropped at the end. */
const createdRoles: string[] = [];

beforeAll(async () => {
  tdb = await createTestDatabase();
  dataDir = await mkdtemp(path.join(tmpdir(), 'steward-runtime-test-'));
});

afterAll(async () => {
  await tdb?.drop();
  const admin = connect(withDatabase(inject('pg').adminUrl, 'postgres'), { max: 1 });
  try {
    for (const role of createdRoles) await admin.unsafe(`drop role if exists ${role}`);
  } finally {
    await admin.end();
  }
  await rm(dataDir, { recursive: true, force: true });
});

function configFor(appUrl?: string) {
  return loadConfig({
    DATABASE_URL: tdb.ownerUrl,
    ...(appUrl ? { DATABASE_APP_URL: appUrl } : {}),
    STEWARD_DATA_DIR: dataDir,
    STEWARD_MASTER_KEY: TEST_MASTER_KEY,
    STEWARD_DB_POOL_MAX: '2',
  });
}

/** A login role with a password, and the URL that connects as it to this file's database. */
async function createLoginRole(attributes: string): Promise<{ name: string; url: string }> {
  const name = `steward_t_${randomBytes(5).toString('hex')}`;
  const password = randomBytes(12).toString('hex');
  createdRoles.push(name);
  await tdb.owner.unsafe(`create role ${name} login password '${password}' ${attributes}`);
  const url = new URL(tdb.ownerUrl);
  url.username = name;
  url.password = password;
  return { name, url: url.toString() };
}

async function isMember(role: string, group: string): Promise<boolean> {
  const [row] = await tdb.owner<
    { member: boolean }[]
  >`select pg_has_role(${role}, ${group}, 'MEMBER') as member`;
  return row!.member;
}

it('the tests’ runtime role password is the one openRuntime derives from the test master key', () => {
  expect(runtimeRolePassword(new MasterKey(parseMasterKey(TEST_MASTER_KEY)!))).toBe(TEST_RUNTIME_PASSWORD);
});

describe('without DATABASE_APP_URL', () => {
  it('runs as its own runtime role, a member of steward_app', async () => {
    const runtime = await openRuntime(configFor());
    try {
      const [who] = await runtime.res.db.withSystemAccess(
        (tx) => tx<{ user: string }[]>`select current_user as user`,
      );
      expect(who).toEqual({ user: RUNTIME_ROLE });
      expect(await isMember(RUNTIME_ROLE, APP_GROUP_ROLE)).toBe(true);
    } finally {
      await runtime.close();
    }
  });
});

describe('with DATABASE_APP_URL', () => {
  it('grants steward_app to a plain login role and works as it', async () => {
    const app = await createLoginRole('NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE');
    expect(await isMember(app.name, APP_GROUP_ROLE)).toBe(false);
    const runtime = await openRuntime(configFor(app.url));
    try {
      expect(await isMember(app.name, APP_GROUP_ROLE)).toBe(true);
      const [who] = await runtime.res.db.withSystemAccess(
        (tx) => tx<{ user: string }[]>`select current_user as user`,
      );
      expect(who).toEqual({ user: app.name });

      const tenant = await createTenant(runtime.res, SYSTEM_ACTOR, {
        slug: 'app-role',
        name: 'App role',
        ownerEmail: 'owner@app-role.test',
        ownerPassword: 'correct horse battery',
      });
      const roles = await runtime.res.db.withTenant(
        tenant.id,
        (tx) => tx<{ name: string }[]>`select name from roles`,
      );
      expect(roles.map((r) => r.name)).toContain('owner');
      expect(await verifyTenantAudit(runtime.res, tenant.id)).toMatchObject({ ok: true });
      // And the role is held to the same rules: it cannot rewrite the audit log.
      await expect(
        runtime.res.db.withTenant(tenant.id, (tx) => tx`update audit_log set action = 'x'`),
      ).rejects.toMatchObject({ code: '42501' });
    } finally {
      await runtime.close();
    }
  });

  async function expectRefused(appUrl: string, message: RegExp): Promise<void> {
    const error = await openRuntime(configFor(appUrl)).then(
      async (runtime) => {
        await runtime.close();
        return undefined;
      },
      (e: unknown) => e as Error,
    );
    expect(error, 'openRuntime should have refused to start').toBeInstanceOf(Error);
    expect(error!.message).toMatch(/^the runtime database role is unsafe: /);
    expect(error!.message).toMatch(message);
  }

  it('refuses to start as a superuser', async () => {
    const su = await createLoginRole('SUPERUSER');
    await expectRefused(su.url, new RegExp(`role ${su.name} is a superuser`));
  });

  it('refuses to start as a role with BYPASSRLS', async () => {
    const bypass = await createLoginRole('NOSUPERUSER BYPASSRLS');
    await expectRefused(bypass.url, new RegExp(`role ${bypass.name} has BYPASSRLS`));
  });

  it('refuses to start as a role that owns a table', async () => {
    const owner = await createLoginRole('NOSUPERUSER');
    await tdb.owner.unsafe(`create table owned_by_app_role (id int)`);
    await tdb.owner.unsafe(`alter table owned_by_app_role owner to ${owner.name}`);
    try {
      await expectRefused(owner.url, /role owns tables: owned_by_app_role/);
    } finally {
      await tdb.owner.unsafe(`drop table owned_by_app_role`);
    }
  });

  it('refuses to start as a member of a superuser role (it could SET ROLE to it)', async () => {
    const member = await createLoginRole('NOSUPERUSER');
    const [owner] = await tdb.owner<{ user: string }[]>`select current_user as user`;
    await tdb.owner.unsafe(`grant ${owner!.user} to ${member.name}`);
    await expectRefused(member.url, new RegExp(`member of ${owner!.user}, a superuser`));
  });

  it('refuses to start as a member of the role that owns the tables (it could turn RLS off)', async () => {
    const tableOwner = `steward_t_${randomBytes(5).toString('hex')}`;
    createdRoles.push(tableOwner);
    await tdb.owner.unsafe(`create role ${tableOwner} nologin`);
    await tdb.owner.unsafe(`create table owned_by_group (id int)`);
    await tdb.owner.unsafe(`alter table owned_by_group owner to ${tableOwner}`);
    const member = await createLoginRole('NOSUPERUSER');
    await tdb.owner.unsafe(`grant ${tableOwner} to ${member.name}`);
    try {
      await expectRefused(member.url, /can act as the owner of tables: owned_by_group/);
    } finally {
      await tdb.owner.unsafe(`drop table owned_by_group`);
    }
  });
});
