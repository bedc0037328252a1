import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyTenantAudit } from '@steward/core/audit/audit-service';
import { createConnection, resolveConnection, vaultFor } from '@steward/core/connections/connection-service';
import { purgeAllTenants } from '@steward/core/privacy/retention-service';
import { SYSTEM_ACTOR } from '@steward/core/resources';
import { SecretUnreadableError } from '@steward/core/secrets/envelope';
import { submitEvent } from '@steward/core/tasks/task-service';
import { startWorker, type WorkerHandle } from './worker/worker-runner.ts';
import {
  addUser,
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  loginAs,
  type TenantFixture,
  type TestApp,
} from './testing/test-app.ts';

/** GDPR: export, erasure (checked by scanning the whole database and data directory), consent, retention. */

let t: TestApp;
let worker: WorkerHandle;
beforeAll(async () => {
  t = await createTestApp();
  worker = await startWorker(t.res, { appUrl: t.runtime.appUrl, concurrency: 2, pollIntervalMs: 200 });
});
afterAll(async () => {
  await worker?.stop();
  await t?.close();
});

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';
const api = (token: string, method: Method, url: string, payload?: unknown) =>
  t.app.inject({
    method,
    url: `/api/v1${url}`,
    headers: bearer(token),
    ...(payload === undefined ? {} : { payload: payload as object }),
  });

/** Every row of every table in every non-system schema, as text, searched via the owner connection. */
async function databaseHits(canaries: string[]): Promise<string[]> {
  const tables = await t.db.owner<{ schema: string; name: string }[]>`
    select n.nspname as schema, c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_%'`;
  const hits: string[] = [];
  for (const tb of tables) {
    for (const canary of canaries) {
      const rows = await t.db.owner.unsafe(
        `select x::text as row from "${tb.schema}"."${tb.name}" x where x::text ilike $1`,
        [`%${canary}%`],
      );
      for (const r of rows) hits.push(`${tb.schema}.${tb.name}: ${String(r.row).slice(0, 200)}`);
    }
  }
  return hits;
}

/** Every file under the data directory, searched as bytes (case-insensitive). */
async function fileHits(canaries: string[]): Promise<string[]> {
  const hits: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        const text = (await readFile(p)).toString('latin1').toLowerCase();
        for (const c of canaries) if (text.includes(c.toLowerCase())) hits.push(`${p}: ${c}`);
      }
    }
  };
  await walk(t.config.dataDir);
  return hits;
}

interface Seeded {
  fx: TenantFixture;
  userId: string;
  canaries: {
    email: string;
    name: string;
    eventBody: string;
    taskData: string;
    secret: string;
    vaultFile: string;
    inboxFile: string;
  };
  taskId: string;
}

/** A tenant with a canary in every data class. */
async function seedTenant(slug: string): Promise<Seeded> {
  const fx = await createTenantFixture(t, slug);
  const tag = slug.replace(/[^a-z0-9]/g, '');
  const canaries = {
    email: `canary.user.${tag}@example.com`,
    name: `Canaryname ${tag}Qwertz`,
    eventBody: `canary-event-body-${tag}`,
    taskData: `canary-task-subject-${tag}`,
    secret: `canary-connection-secret-${tag}`,
    vaultFile: `canary-vault-file-${tag}`,
    inboxFile: `canary-inbox-file-${tag}`,
  };
  const user = await addUser(t, fx.tenant.id, canaries.email, 'member');
  const userId = user.id;
  await t.db.owner`update users set name = ${canaries.name} where id = ${userId}`;
  await loginAs(t, canaries.email, slug); // a session with the user's IP and agent
  const intake = await submitEvent(
    t.res,
    fx.tenant.id,
    { type: 'user', id: userId, label: canaries.email },
    {
      source: 'email',
      type: 'email.received',
      from: canaries.email,
      subject: canaries.taskData,
      body: `${canaries.eventBody} from ${canaries.name}`,
      data: { note: canaries.taskData, who: canaries.name },
    },
  );
  await createConnection(t.res, fx.tenant.id, SYSTEM_ACTOR, {
    kind: 'smtp',
    name: 'mail',
    config: { host: 'smtp.example.com', port: 587, from: 'robot@example.com', username: 'robot' },
    secret: canaries.secret,
  });
  expectStatus(
    await api(fx.token, 'POST', `/users/${userId}/consents`, {
      purpose: 'marketing-email',
      granted: true,
      source: 'signup-form',
    }),
    201,
  );
  const dir = path.join(t.config.dataDir, 'tenants', slug);
  await mkdir(path.join(dir, 'vault'), { recursive: true });
  await mkdir(path.join(dir, 'inbox'), { recursive: true });
  await writeFile(
    path.join(dir, 'vault', 'notes.md'),
    `# Notes\n${canaries.vaultFile}\ncontact: ${canaries.email}\n`,
  );
  await writeFile(
    path.join(dir, 'inbox', 'mail.eml'),
    `From: ${canaries.name} <${canaries.email}>\n\n${canaries.inboxFile}\n`,
  );
  return { fx, userId, canaries, taskId: intake.taskId };
}

async function waitForExport(token: string, id: string) {
  const seen = new Set<number>();
  for (let i = 0; i < 150; i++) {
    const r = expectStatus(await api(token, 'GET', `/exports/${id}`), 200).json() as {
      status: string;
      progress: number;
    };
    seen.add(r.progress);
    if (r.status === 'done' || r.status === 'failed') return { ...r, seen };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('the export did not finish');
}

async function unpack(body: Buffer): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'steward-export-test-'));
  await writeFile(path.join(dir, 'archive.tar.gz'), body);
  await tar.extract({ file: path.join(dir, 'archive.tar.gz'), cwd: dir });
  return dir;
}

describe('export', () => {
  let s: Seeded;
  beforeAll(async () => {
    s = await seedTenant('gdpr-export');
  });

  it('exports the whole tenant as a tar.gz of JSON files and its files, built by a job with progress', async () => {
    const created = expectStatus(
      await api(s.fx.token, 'POST', '/exports', { scope: 'tenant' }),
      202,
    ).json() as { id: string; status: string };
    expect(created.status).toBe('queued');
    const done = await waitForExport(s.fx.token, created.id);
    expect(done).toMatchObject({ status: 'done', progress: 100 });
    const download = await api(s.fx.token, 'GET', `/exports/${created.id}/download`);
    expect(download.statusCode).toBe(200);
    expect(download.headers['content-type']).toContain('application/gzip');
    const dir = await unpack(download.rawPayload);
    try {
      const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as {
        tables: Record<string, number>;
      };
      expect(manifest.tables.events).toBeGreaterThanOrEqual(1);
      expect(await readFile(path.join(dir, 'data', 'events.json'), 'utf8')).toContain(s.canaries.eventBody);
      expect(await readFile(path.join(dir, 'data', 'tasks.json'), 'utf8')).toContain(s.canaries.taskData);
      expect(await readFile(path.join(dir, 'data', 'users.json'), 'utf8')).toContain(s.canaries.email);
      expect(await readFile(path.join(dir, 'data', 'consents.json'), 'utf8')).toContain('marketing-email');
      expect(await readFile(path.join(dir, 'files', 'vault', 'notes.md'), 'utf8')).toContain(
        s.canaries.vaultFile,
      );
      expect(await readFile(path.join(dir, 'files', 'inbox', 'mail.eml'), 'utf8')).toContain(
        s.canaries.inboxFile,
      );
      // Secrets never leave: not in plaintext, and no ciphertext column either.
      const connections = await readFile(path.join(dir, 'data', 'connections.json'), 'utf8');
      expect(connections).toContain('smtp.example.com');
      expect(connections).not.toContain(s.canaries.secret);
      expect(connections).not.toContain('secret_ciphertext');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const audit = await t.db.owner<{ action: string }[]>`
      select action from audit_log where tenant_id = ${s.fx.tenant.id} and action like 'privacy.export%' order by seq`;
    expect(audit.map((a) => a.action)).toEqual([
      'privacy.export_requested',
      'privacy.export_completed',
      'privacy.export_downloaded',
    ]);
  });

  it("exports one member's data", async () => {
    const created = expectStatus(
      await api(s.fx.token, 'POST', '/exports', { scope: 'user', userId: s.userId }),
      202,
    ).json() as { id: string };
    expect((await waitForExport(s.fx.token, created.id)).status).toBe('done');
    const dir = await unpack((await api(s.fx.token, 'GET', `/exports/${created.id}/download`)).rawPayload);
    try {
      expect(await readFile(path.join(dir, 'data', 'user.json'), 'utf8')).toContain(s.canaries.email);
      expect(await readFile(path.join(dir, 'data', 'tasks.json'), 'utf8')).toContain(s.canaries.taskData);
      expect(await readFile(path.join(dir, 'data', 'sessions.json'), 'utf8')).toContain('created_at');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('needs the privacy:export permission and a finished export', async () => {
    const { accessToken: token } = await loginAs(t, s.canaries.email, 'gdpr-export');
    expect((await api(token, 'POST', '/exports', { scope: 'tenant' })).statusCode).toBe(403);
    expect((await api(s.fx.token, 'POST', '/exports', { scope: 'user' })).statusCode).toBe(409);
  });
});

describe('erasure', () => {
  it('erases a user: no readable trace of their email or name in any table or file; the audit chain still verifies', async () => {
    const s = await seedTenant('gdpr-user');
    const control = await seedTenant('gdpr-control');
    const personal = [s.canaries.email, s.canaries.name];
    expect((await databaseHits(personal)).length).toBeGreaterThan(0);
    expect((await fileHits(personal)).length).toBeGreaterThan(0);

    const r = expectStatus(await api(s.fx.token, 'POST', `/users/${s.userId}/erase`), 200).json() as {
      pseudonym: string;
      identityAnonymised: boolean;
      auditEntriesRedacted: number;
    };
    expect(r.identityAnonymised).toBe(true);
    expect(r.auditEntriesRedacted).toBeGreaterThan(0);
    expect(await databaseHits(personal)).toEqual([]);
    expect(await fileHits(personal)).toEqual([]);
    // What the design keeps: the audit entries (pseudonymised) and the anonymised identity row.
    const kept = await t.db.owner<{ n: number }[]>`
      select count(*)::int as n from audit_log where tenant_id = ${s.fx.tenant.id} and redacted_at is not null`;
    expect(kept[0]!.n).toBe(r.auditEntriesRedacted);
    expect((await databaseHits([r.pseudonym])).length).toBeGreaterThan(0);
    expect(await verifyTenantAudit(t.res, s.fx.tenant.id)).toMatchObject({ ok: true });
    // The user can no longer sign in; other data of the tenant and the other tenant is untouched.
    expect(
      (
        await t.app.inject({
          method: 'POST',
          url: '/api/v1/auth/login',
          payload: { email: s.canaries.email, password: 'correct horse battery' },
        })
      ).statusCode,
    ).toBe(401);
    expect((await databaseHits([s.canaries.eventBody])).length).toBeGreaterThan(0);
    expect((await databaseHits([control.canaries.email])).length).toBeGreaterThan(0);
    expect((await api(s.fx.token, 'POST', `/users/${s.userId}/erase`)).statusCode).toBe(404);
  });

  it('a redacted audit entry that is changed afterwards still breaks the chain', async () => {
    const s = await seedTenant('gdpr-tamper');
    expectStatus(await api(s.fx.token, 'POST', `/users/${s.userId}/erase`), 200);
    const [e] = await t.db.owner<{ seq: string }[]>`
      select seq from audit_log where tenant_id = ${s.fx.tenant.id} and redacted_at is not null order by seq limit 1`;
    await t.db
      .owner`update audit_log set details = '{"forged": true}'::jsonb where tenant_id = ${s.fx.tenant.id} and seq = ${e!.seq}`;
    expect(await verifyTenantAudit(t.res, s.fx.tenant.id)).toMatchObject({
      ok: false,
      firstBrokenSeq: Number(e!.seq),
    });
  });

  it('the runtime role may only redact audit entries, never rewrite their chain fields', async () => {
    const s = await seedTenant('gdpr-trigger');
    await expect(
      t.res.db.withTenant(
        s.fx.tenant.id,
        (tx) => tx`update audit_log set details = '{}'::jsonb where tenant_id = ${s.fx.tenant.id}`,
      ),
    ).rejects.toThrow(/only be redacted/);
    await expect(
      t.res.db.withTenant(
        s.fx.tenant.id,
        (tx) => tx`update audit_log set hash = 'x' where tenant_id = ${s.fx.tenant.id}`,
      ),
    ).rejects.toThrow(/permission denied/);
  });

  it('erases a whole tenant: its data key is destroyed first, then every canary is gone from every table and file', async () => {
    const s = await seedTenant('gdpr-tenant');
    const control = await seedTenant('gdpr-survivor');
    const all = Object.values(s.canaries);
    // A "backup" of the tenant's encrypted credentials, taken before the erasure.
    const backup = await t.db.owner<{ id: string; secret_ciphertext: Buffer; secret_nonce: Buffer }[]>`
      select id, secret_ciphertext, secret_nonce from connections where tenant_id = ${s.fx.tenant.id}`;
    expect(backup).toHaveLength(1);

    expect((await api(s.fx.token, 'POST', '/tenant/erase', { confirm: 'wrong-slug' })).statusCode).toBe(400);
    const r = expectStatus(
      await api(s.fx.token, 'POST', '/tenant/erase', { confirm: 'gdpr-tenant' }),
      200,
    ).json() as {
      dataKeyDestroyed: boolean;
      left: string[];
      usersAnonymised: number;
    };
    expect(r).toMatchObject({ dataKeyDestroyed: true, left: [] });
    expect(r.usersAnonymised).toBe(2);
    expect(await databaseHits(all)).toEqual([]);
    expect(await fileHits(all)).toEqual([]);
    expect(await t.db.owner`select 1 from tenant_keys where tenant_id = ${s.fx.tenant.id}`).toHaveLength(0);

    // Restoring the backed-up ciphertext does not bring the secret back: its key is gone.
    await t.db
      .owner`insert into connections (tenant_id, id, kind, name, config, secret_ciphertext, secret_nonce)
      values (${s.fx.tenant.id}, ${backup[0]!.id}, 'smtp', 'restored', '{}'::jsonb, ${backup[0]!.secret_ciphertext}, ${backup[0]!.secret_nonce})`;
    await expect(
      t.res.db.withTenant(s.fx.tenant.id, (tx) =>
        resolveConnection(vaultFor(t.res.master), tx, s.fx.tenant.id, 'smtp', 'restored'),
      ),
    ).rejects.toBeInstanceOf(SecretUnreadableError);
    await t.db.owner`delete from connections where tenant_id = ${s.fx.tenant.id}`;

    // The erased tenant is gone for its former members (once the one-second token cache expires); its
    // audit chain still verifies; the other tenant is intact.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect((await api(s.fx.token, 'GET', '/tasks')).statusCode).toBe(401);
    expect(
      (await t.app.inject({ method: 'GET', url: '/api/v1/tasks', headers: bearer(s.fx.apiKey) })).statusCode,
    ).toBe(401);
    expect(await verifyTenantAudit(t.res, s.fx.tenant.id)).toMatchObject({ ok: true });
    expect((await databaseHits([control.canaries.eventBody, control.canaries.email])).length).toBeGreaterThan(
      0,
    );
    const survivor = await t.res.db.withTenant(control.fx.tenant.id, (tx) =>
      resolveConnection(vaultFor(t.res.master), tx, control.fx.tenant.id, 'smtp', 'mail'),
    );
    expect(survivor.secret).toBe(control.canaries.secret);
  });
});

describe('consent', () => {
  it('records grants and withdrawals per purpose with their source, audited', async () => {
    const fx = await createTenantFixture(t, 'gdpr-consent');
    const user = await addUser(t, fx.tenant.id, 'consenting@example.com', 'member');
    const userId = user.id;
    expectStatus(
      await api(fx.token, 'POST', `/users/${userId}/consents`, {
        purpose: 'analytics',
        granted: true,
        source: 'settings-page',
      }),
      201,
    );
    expectStatus(
      await api(fx.token, 'POST', `/users/${userId}/consents`, {
        purpose: 'analytics',
        granted: false,
        source: 'email-link',
      }),
      201,
    );
    expectStatus(
      await api(fx.token, 'POST', `/users/${userId}/consents`, {
        purpose: 'marketing',
        granted: true,
        source: 'signup-form',
      }),
      201,
    );
    const state = expectStatus(await api(fx.token, 'GET', `/users/${userId}/consents`), 200).json() as {
      current: { purpose: string; granted: boolean; source: string }[];
      history: unknown[];
    };
    expect(state.history).toHaveLength(3);
    expect(state.current.map((c) => [c.purpose, c.granted, c.source])).toEqual([
      ['analytics', false, 'email-link'],
      ['marketing', true, 'signup-form'],
    ]);
    expect(
      (
        await api(fx.token, 'POST', `/users/${userId}/consents`, {
          purpose: 'Bad Purpose',
          granted: true,
          source: 'x',
        })
      ).statusCode,
    ).toBe(400);
    const audit = await t.db.owner<{ action: string }[]>`
      select action from audit_log where tenant_id = ${fx.tenant.id} and action like 'privacy.consent%' order by seq`;
    expect(audit.map((a) => a.action)).toEqual([
      'privacy.consent_granted',
      'privacy.consent_withdrawn',
      'privacy.consent_granted',
    ]);
  });
});

describe('retention', () => {
  it('purges rows older than each policy, keeps the rest, and audits the purge (on demand and scheduled)', async () => {
    const fx = await createTenantFixture(t, 'gdpr-retention');
    const submit = (subject: string) =>
      submitEvent(t.res, fx.tenant.id, SYSTEM_ACTOR, { source: 'api', type: 'note', subject, body: subject });
    const oldOne = await submit('old event');
    const newOne = await submit('new event');
    const oldTask = await submit('old finished task');
    await t.db.owner`update events set received_at = now() - interval '40 days' where id = ${oldOne.eventId}`;
    await t.db
      .owner`update tasks set status = 'done', finished_at = now() - interval '100 days' where id = ${oldTask.taskId}`;

    const put = (policies: unknown) => api(fx.token, 'PUT', '/retention-policies', { policies });
    expectStatus(await put([{ dataClass: 'llm_usage', days: 5 }]), 200);
    const set = expectStatus(
      await put([
        { dataClass: 'events', days: 30 },
        { dataClass: 'tasks', days: 90 },
      ]),
      200,
    ).json() as { items: { dataClass: string }[] };
    expect(set.items.map((p) => p.dataClass)).toEqual(['events', 'tasks']);
    expect((await put([{ dataClass: 'everything', days: 30 }])).statusCode).toBe(400);
    expect((await put([{ dataClass: 'events', days: 0 }])).statusCode).toBe(400);
    expect(
      (
        await put([
          { dataClass: 'events', days: 3 },
          { dataClass: 'events', days: 4 },
        ])
      ).statusCode,
    ).toBe(400);

    const purged = expectStatus(await api(fx.token, 'POST', '/retention-policies/purge'), 200).json() as {
      purged: Record<string, number>;
    };
    expect(purged.purged).toEqual({ events: 1, tasks: 1 });
    const events = await t.db.owner<
      { id: string }[]
    >`select id from events where tenant_id = ${fx.tenant.id}`;
    expect(events.map((e) => e.id)).not.toContain(oldOne.eventId);
    expect(events.map((e) => e.id)).toContain(newOne.eventId);
    expect(await t.db.owner`select 1 from tasks where id = ${oldTask.taskId}`).toHaveLength(0);
    expect(await t.db.owner`select 1 from tasks where id = ${newOne.taskId}`).toHaveLength(1);

    // The scheduled purge (the daily graphile-worker cron job calls this) finds the next old row.
    await t.db.owner`update events set received_at = now() - interval '31 days' where id = ${newOne.eventId}`;
    const all = await purgeAllTenants(t.res, { ...SYSTEM_ACTOR, label: 'retention purge' });
    expect(all[fx.tenant.id]).toMatchObject({ events: 1 });
    const audit = await t.db.owner<
      { action: string; actor_label: string; details: { purged: Record<string, number> } }[]
    >`
      select action, actor_label, details from audit_log where tenant_id = ${fx.tenant.id} and action = 'privacy.retention_purged' order by seq`;
    expect(audit).toHaveLength(2);
    expect(audit[1]!.actor_label).toBe('retention purge');
  });
});
