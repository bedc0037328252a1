import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { createTestDatabase, type TestDatabase } from '@steward/db/testing/test-database';
import { loadMigrations } from '@steward/db/migrate';
import { createApiKey } from '@steward/core/identity/api-key-service';
import { addMember } from '@steward/core/identity/user-service';
import { SYSTEM_ACTOR, type Resources } from '@steward/core/resources';
import { createTenant, type Tenant } from '@steward/core/tenants/tenant-service';
import { getTask, type TaskDetail } from '@steward/core/tasks/task-service';
import { buildApp, REDACT_PATHS } from '../app.ts';
import { loadConfig, type Config } from '../config.ts';
import { openRuntime, type Runtime } from '../runtime.ts';

/** Every test app shares this master key, so the cluster-wide runtime role keeps one password. */
export const TEST_MASTER_KEY = 'a'.repeat(64);
export const TEST_PASSWORD = 'correct horse battery';

export interface TestApp {
  app: FastifyInstance;
  res: Resources;
  runtime: Runtime;
  db: TestDatabase;
  config: Config;
  /** Every log line the app wrote, as text. */
  logs: () => string;
  close(): Promise<void>;
}

export async function createTestApp(
  opts: { env?: Record<string, string>; database?: TestDatabase } = {},
): Promise<TestApp> {
  const db = opts.database ?? (await createTestDatabase());
  const dataDir = await mkdtemp(path.join(tmpdir(), 'steward-test-data-'));
  const config = loadConfig({
    DATABASE_URL: db.ownerUrl,
    STEWARD_DATA_DIR: dataDir,
    STEWARD_MASTER_KEY: TEST_MASTER_KEY,
    STEWARD_DB_POOL_MAX: '4',
    LOG_LEVEL: 'info',
    ...opts.env,
  });
  const runtime = await openRuntime(config);
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  const logger = pino({ level: 'trace', redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, stream);
  const migrations = await loadMigrations();
  const app = await buildApp(runtime.res, {
    logger,
    bodyLimit: config.bodyLimit,
    trustProxy: config.trustProxy,
    expectedSchemaVersion: Math.max(...migrations.map((m) => m.version)),
  });
  await app.ready();
  return {
    app,
    res: runtime.res,
    runtime,
    db,
    config,
    logs: () => lines.join(''),
    async close() {
      await app.close();
      await runtime.close();
      if (!opts.database) await db.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export interface TenantFixture {
  tenant: Tenant;
  ownerEmail: string;
  /** Access token of the owner. */
  token: string;
  refreshToken: string;
  /** An admin-role API key. */
  apiKey: string;
  apiKeyId: string;
}

/** A tenant with an owner who is signed in and an admin API key. */
export async function createTenantFixture(t: TestApp, slug: string): Promise<TenantFixture> {
  const ownerEmail = `owner@${slug}.test`;
  const tenant = await createTenant(t.res, SYSTEM_ACTOR, {
    slug,
    name: `Tenant ${slug}`,
    ownerEmail,
    ownerPassword: TEST_PASSWORD,
  });
  const login = await t.app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { email: ownerEmail, password: TEST_PASSWORD, tenant: slug },
  });
  if (login.statusCode !== 200) throw new Error(`login failed: ${login.body}`);
  const { accessToken, refreshToken } = login.json() as { accessToken: string; refreshToken: string };
  const { apiKey, key } = await createApiKey(t.res, tenant.id, SYSTEM_ACTOR, {
    name: 'fixture',
    role: 'admin',
  });
  return { tenant, ownerEmail, token: accessToken, refreshToken, apiKey: key, apiKeyId: apiKey.id };
}

export async function addUser(t: TestApp, tenantId: string, email: string, role: string) {
  return addMember(t.res, tenantId, SYSTEM_ACTOR, { email, password: TEST_PASSWORD, role });
}

export async function loginAs(t: TestApp, email: string, tenant?: string) {
  const r = await t.app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { email, password: TEST_PASSWORD, ...(tenant ? { tenant } : {}) },
  });
  if (r.statusCode !== 200) throw new Error(`login failed: ${r.body}`);
  return r.json() as { accessToken: string; refreshToken: string; tenant: { id: string; slug: string } };
}

export function bearer(token: string) {
  return { authorization: `Bearer ${token}` };
}

/** A helper that fails with the body when the status differs (clearer than a bare status assertion). */
export function expectStatus(r: LightMyRequestResponse, status: number): LightMyRequestResponse {
  if (r.statusCode !== status) throw new Error(`expected ${status}, got ${r.statusCode}: ${r.body}`);
  return r;
}

/** Create an inbound webhook through the API; its secret is returned only here. */
export async function createWebhook(t: TestApp, token: string, name: string) {
  const r = await t.app.inject({
    method: 'POST',
    url: '/api/v1/webhooks',
    headers: bearer(token),
    payload: { name },
  });
  return expectStatus(r, 201).json() as { id: string; path: string; secret: string; name: string };
}

/** Poll a task until its status is one of `statuses` (fails with the task when the time runs out). */
export async function waitForTask(
  t: TestApp,
  tenantId: string,
  taskId: string,
  statuses: string[],
  ms = 30_000,
): Promise<TaskDetail> {
  const deadline = Date.now() + ms;
  for (;;) {
    const task = await getTask(t.res, tenantId, taskId);
    if (statuses.includes(task.status)) return task;
    if (Date.now() > deadline) throw new Error(`task stayed ${task.status}: ${JSON.stringify(task)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
