import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import { createApiKey } from '@steward/core/identity/api-key-service';
import { createRole } from '@steward/core/identity/role-service';
import { runStep } from '@steward/core/executor/run-step';
import { planTask } from '@steward/core/planner/plan-task';
import { createPlaybook } from '@steward/core/planner/playbook-service';
import { getTask, submitEvent } from '@steward/core/tasks/task-service';
import { SYSTEM_ACTOR } from '@steward/core/resources';
import { createSchedule } from '@steward/core/watchers/schedule-service';
import { createWebhook } from '@steward/core/watchers/webhook-service';
import { createConnection } from '@steward/core/connections/connection-service';
import { createDestination } from '@steward/core/siem/destination-service';
import { createMcpServer } from '@steward/core/mcp/mcp-service';
import { SoftAuthenticator } from '../testing/soft-authenticator.ts';
import { createSsoConnection } from '@steward/core/sso/sso-connection-service';
import { createInvitation } from '@steward/core/identity/invitation-service';
import { createScimToken } from '@steward/core/scim/scim-token-service';
import { requestExport } from '@steward/core/privacy/export-service';
import {
  addUser,
  bearer,
  loginAs,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

/**
 * Tenant A's owner token and admin API key against tenant B's objects: every route that takes an
 * id must answer 404 exactly as for an id that does not exist, and leave B's data as it was.
 */

const MISSING_ID = '9b2f4e61-0c3a-4d5e-8f70-112233445566';

interface Tenant {
  fx: TenantFixture;
  memberId: string;
  customRoleId: string;
  viewerRoleId: string;
  extraKeyId: string;
  extraKeyPrefix: string;
  loop: LoopData;
  /** An inbound webhook and a schedule. */
  watch: { webhookId: string; scheduleId: string };
  /** Connections (an smtp one with a secret, an http one). */
  connectionIds: string[];
  /** An HTTP MCP server with a secret. */
  mcpServerIds: string[];
  /** The member's session and passkey. */
  memberSessionId: string;
  passkeyId: string;
  /** SSO connections (an OIDC one with a client secret, a SAML one) and a SCIM token. */
  ssoConnectionIds: string[];
  scimTokenIds: string[];
  invitationIds: string[];
  /** A SIEM destination with a token. */
  siemDestinationIds: string[];
}

/** The tenant's work: playbooks, a task waiting for approval and a task whose step is a dead letter. */
interface LoopData {
  playbookIds: string[];
  waitingTaskId: string;
  approvalId: string;
  failedTaskId: string;
  deadStepId: string;
  eventIds: string[];
}

async function seedLoop(tenantId: string, slug: string): Promise<LoopData> {
  const approve = await createPlaybook(t.res, tenantId, SYSTEM_ACTOR, {
    name: 'xt approve',
    when: { subject: { contains: 'xt-approve' } },
    steps: [{ key: 'pay', tool: 'noop', args: { note: 'pay {{extracted.amount}}' }, risk: 'high' }],
  });
  const dead = await createPlaybook(t.res, tenantId, SYSTEM_ACTOR, {
    name: 'xt dead',
    when: { subject: { contains: 'xt-dead' } },
    // Not a member: the tool fails for good, so the step becomes a dead letter.
    steps: [{ key: 'tell', tool: 'notify.user', args: { to: `nobody@${slug}.invalid`, title: 'hi' } }],
  });
  const waiting = await submitEvent(t.res, tenantId, SYSTEM_ACTOR, {
    source: 'api',
    type: 'note',
    subject: 'xt-approve 40 USD',
  });
  await planTask(t.res, tenantId, waiting.taskId);
  const failed = await submitEvent(t.res, tenantId, SYSTEM_ACTOR, {
    source: 'api',
    type: 'note',
    subject: 'xt-dead',
  });
  await planTask(t.res, tenantId, failed.taskId);
  const failedTask = await getTask(t.res, tenantId, failed.taskId);
  await runStep(t.res, tenantId, failedTask.steps[0]!.id);
  const waitingTask = await getTask(t.res, tenantId, waiting.taskId);
  const deadTask = await getTask(t.res, tenantId, failed.taskId);
  // The fixtures are what the cases below rely on.
  expect(waitingTask.status).toBe('pending_approval');
  expect(waitingTask.approvals.map((x) => x.status)).toEqual(['pending']);
  expect(deadTask.steps.map((x) => x.status)).toEqual(['dead']);
  return {
    playbookIds: [approve.id, dead.id],
    waitingTaskId: waiting.taskId,
    approvalId: waitingTask.approvals[0]!.id,
    failedTaskId: failed.taskId,
    deadStepId: deadTask.steps[0]!.id,
    eventIds: [waiting.eventId, failed.eventId],
  };
}

let t: TestApp;
let A: Tenant;
let B: Tenant;

async function seed(slug: string): Promise<Tenant> {
  const fx = await createTenantFixture(t, slug);
  const member = await addUser(t, fx.tenant.id, `member@${slug}.test`, 'member');
  const custom = await createRole(t.res, fx.tenant.id, SYSTEM_ACTOR, new Set(['tenant:read', 'tasks:read']), {
    name: 'custom',
    permissions: ['tenant:read', 'tasks:read'],
  });
  const roles = expectStatus(
    await t.app.inject({ url: '/api/v1/roles', headers: bearer(fx.token) }),
    200,
  ).json().items as { id: string; name: string }[];
  const extra = await createApiKey(t.res, fx.tenant.id, SYSTEM_ACTOR, { name: 'extra', role: 'viewer' });
  const memberToken = (await loginAs(t, `member@${slug}.test`, slug)).accessToken;
  const options = expectStatus(
    await t.app.inject({ method: 'POST', url: '/api/v1/passkeys/options', headers: bearer(memberToken) }),
    200,
  ).json();
  const passkey = expectStatus(
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/passkeys',
      headers: bearer(memberToken),
      payload: { response: new SoftAuthenticator(t.config.baseUrl).register(options), name: 'xt key' },
    }),
    201,
  ).json();
  return {
    memberSessionId: (
      JSON.parse(Buffer.from(memberToken.split('.')[1]!, 'base64url').toString()) as { sid: string }
    ).sid,
    passkeyId: passkey.id,
    fx,
    memberId: member.id,
    customRoleId: custom.id,
    viewerRoleId: roles.find((r) => r.name === 'viewer')!.id,
    extraKeyId: extra.apiKey.id,
    extraKeyPrefix: extra.apiKey.prefix,
    loop: await seedLoop(fx.tenant.id, slug),
    connectionIds: [
      (
        await createConnection(t.res, fx.tenant.id, SYSTEM_ACTOR, {
          kind: 'smtp',
          name: 'xt smtp',
          config: { host: 'smtp.example.com', from: `robot@${slug}.test`, username: 'robot' },
          secret: `xt-secret-${slug}`,
          isDefault: true,
        })
      ).id,
      (
        await createConnection(t.res, fx.tenant.id, SYSTEM_ACTOR, {
          kind: 'http',
          name: 'xt http',
          config: { baseUrl: 'https://api.example.com/' },
        })
      ).id,
    ],
    siemDestinationIds: [
      (
        await createDestination(t.res, fx.tenant.id, SYSTEM_ACTOR, {
          name: 'xt-siem',
          kind: 'https',
          config: { url: 'https://siem.example.com/ingest' },
          secret: `xt-siem-token-${slug}`,
        })
      ).id,
    ],
    mcpServerIds: [
      (
        await createMcpServer(t.res, fx.tenant.id, SYSTEM_ACTOR, {
          name: 'xt-mcp',
          transport: 'http',
          url: 'https://mcp.example.com/mcp',
          secret: { authorization: `xt-mcp-secret-${slug}` },
          allowedTools: ['lookup'],
        })
      ).id,
    ],
    ssoConnectionIds: [
      (
        await createSsoConnection(t.res, fx.tenant.id, SYSTEM_ACTOR, {
          protocol: 'oidc',
          name: 'xt oidc',
          config: { issuer: 'https://idp.example.com', clientId: `xt-client-${slug}` },
          clientSecret: `xt-sso-secret-${slug}`,
        })
      ).id,
      (
        await createSsoConnection(t.res, fx.tenant.id, SYSTEM_ACTOR, {
          protocol: 'saml',
          name: 'xt saml',
          config: { entryPoint: 'https://idp.example.com/saml', idpCert: 'MIIB' + 'A'.repeat(200) },
        })
      ).id,
    ],
    invitationIds: [
      (
        await createInvitation(t.res, fx.tenant.id, SYSTEM_ACTOR, {
          email: `invited@${slug}.test`,
          role: 'viewer',
        })
      ).invitation.id,
    ],
    scimTokenIds: [
      (await createScimToken(t.res, fx.tenant.id, SYSTEM_ACTOR, { name: 'xt scim' })).scimToken.id,
    ],
    watch: {
      webhookId: (await createWebhook(t.res, fx.tenant.id, SYSTEM_ACTOR, { name: 'xt hook' })).id,
      scheduleId: (
        await createSchedule(t.res, fx.tenant.id, SYSTEM_ACTOR, {
          name: 'xt schedule',
          cron: '@daily',
          event: { type: 'x' },
        })
      ).id,
    },
  };
}

beforeAll(async () => {
  t = await createTestApp();
  A = await seed('xt-alpha');
  B = await seed('xt-bravo');
});
afterAll(() => {
  if (process.env.SHOW_LOGS)
    console.log(
      t
        ?.logs()
        .split('\n')
        .filter((l) => l.includes('"level":50'))
        .join('\n'),
    );
  return t?.close();
});

interface IdCase {
  /** Tenant B's objects this route is tried on. */
  targets: () => string[];
  /** A valid body, so that a 404 cannot hide behind a 400. */
  payload?: Record<string, unknown>;
  /** The URL for one target, for routes with parameters other than a single `:id`. */
  url?: (id: string) => string;
  /** Routes only people may use answer API keys with this status, whatever the id. */
  apiKeyStatus?: number;
}

/**
 * One entry per route that takes an id. A new route with a parameter and no entry here fails the
 * first test below: add its case (and B's object for it to `seed`).
 */
const CASES: Record<string, IdCase> = {
  'GET /api/v1/users/:id': { targets: () => [B.memberId, bOwnerId] },
  'PATCH /api/v1/users/:id': {
    targets: () => [B.memberId, bOwnerId],
    payload: { name: 'taken over', role: 'viewer', status: 'disabled' },
  },
  'DELETE /api/v1/users/:id': { targets: () => [B.memberId, bOwnerId] },
  'GET /api/v1/roles/:id': { targets: () => [B.customRoleId, B.viewerRoleId] },
  'PATCH /api/v1/roles/:id': {
    targets: () => [B.customRoleId, B.viewerRoleId],
    payload: { description: 'taken over', permissions: ['tenant:read'] },
  },
  'DELETE /api/v1/roles/:id': { targets: () => [B.customRoleId, B.viewerRoleId] },
  'DELETE /api/v1/api-keys/:id': { targets: () => [B.extraKeyId, B.fx.apiKeyId] },
  'DELETE /api/v1/invitations/:id': { targets: () => B.invitationIds },
  'GET /api/v1/tasks/:id': { targets: () => [B.loop.waitingTaskId, B.loop.failedTaskId] },
  'POST /api/v1/tasks/:id/cancel': { targets: () => [B.loop.waitingTaskId, B.loop.failedTaskId] },
  'GET /api/v1/approvals/:id': { targets: () => [B.loop.approvalId] },
  'POST /api/v1/approvals/:id/decision': {
    targets: () => [B.loop.approvalId],
    payload: { decision: 'approve', comment: 'taken over' },
    // Approvals are decided by people: an API key is refused before any lookup.
    apiKeyStatus: 403,
  },
  'GET /api/v1/playbooks/:id': { targets: () => B.loop.playbookIds },
  'PATCH /api/v1/playbooks/:id': {
    targets: () => B.loop.playbookIds,
    payload: { description: 'taken over', enabled: false },
  },
  'DELETE /api/v1/playbooks/:id': { targets: () => B.loop.playbookIds },
  'POST /api/v1/dead-letters/:id/retry': { targets: () => [B.loop.deadStepId] },
  'DELETE /api/v1/webhooks/:id': { targets: () => [B.watch.webhookId] },
  'POST /api/v1/webhooks/:id/rotate-secret': {
    targets: () => [B.watch.webhookId],
    payload: { graceSeconds: 0 },
  },
  'PATCH /api/v1/schedules/:id': {
    targets: () => [B.watch.scheduleId],
    payload: { name: 'taken over', enabled: false },
  },
  'DELETE /api/v1/schedules/:id': { targets: () => [B.watch.scheduleId] },
  'GET /api/v1/connections/:id': { targets: () => B.connectionIds },
  'PATCH /api/v1/connections/:id': {
    targets: () => B.connectionIds,
    payload: { name: 'taken over', secret: 'attacker-secret', isDefault: false },
  },
  'DELETE /api/v1/connections/:id': { targets: () => B.connectionIds },
  'GET /api/v1/mcp-servers/:id': { targets: () => B.mcpServerIds },
  'GET /api/v1/mcp-servers/:id/tools': { targets: () => B.mcpServerIds },
  'PATCH /api/v1/mcp-servers/:id': {
    targets: () => B.mcpServerIds,
    payload: { allowedTools: ['lookup', 'pay'], secret: { authorization: 'attacker' }, enabled: true },
  },
  'DELETE /api/v1/mcp-servers/:id': { targets: () => B.mcpServerIds },
  'DELETE /api/v1/users/:id/mfa': { targets: () => [B.memberId, bOwnerId] },
  'GET /api/v1/users/:id/sessions': { targets: () => [B.memberId, bOwnerId] },
  'DELETE /api/v1/users/:id/sessions': { targets: () => [B.memberId, bOwnerId] },
  'DELETE /api/v1/users/:id/sessions/:sessionId': {
    targets: () => [B.memberId, bOwnerId],
    url: (id) => `/api/v1/users/${id}/sessions/${B.memberSessionId}`,
  },
  // Passkeys and one's own sessions belong to the user: API keys are refused before any lookup.
  'PATCH /api/v1/passkeys/:id': {
    targets: () => [B.passkeyId],
    payload: { name: 'taken over' },
    apiKeyStatus: 403,
  },
  'DELETE /api/v1/passkeys/:id': { targets: () => [B.passkeyId], apiKeyStatus: 403 },
  'DELETE /api/v1/sessions/:id': { targets: () => [B.memberSessionId], apiKeyStatus: 403 },
  'GET /api/v1/sso-connections/:id': { targets: () => B.ssoConnectionIds },
  'PATCH /api/v1/sso-connections/:id': {
    targets: () => B.ssoConnectionIds,
    payload: { name: 'taken over', enabled: false, clientSecret: 'attacker-secret', defaultRole: 'viewer' },
  },
  'DELETE /api/v1/sso-connections/:id': { targets: () => B.ssoConnectionIds },
  'DELETE /api/v1/scim-tokens/:id': { targets: () => B.scimTokenIds },
  // The public sign-in flow, under A's slug with B's connections: like a connection that does not exist.
  'GET /api/v1/sso/:tenantSlug/:connectionId/start': {
    targets: () => B.ssoConnectionIds,
    url: (id) => `/api/v1/sso/xt-alpha/${id}/start`,
  },
  'GET /api/v1/sso/:tenantSlug/:connectionId/metadata': {
    targets: () => B.ssoConnectionIds,
    url: (id) => `/api/v1/sso/xt-alpha/${id}/metadata`,
  },
  'GET /api/v1/sso/:tenantSlug/:connectionId/callback': {
    targets: () => B.ssoConnectionIds,
    url: (id) => `/api/v1/sso/xt-alpha/${id}/callback?state=x&code=y`,
  },
  'POST /api/v1/sso/:tenantSlug/:connectionId/callback': {
    targets: () => B.ssoConnectionIds,
    url: (id) => `/api/v1/sso/xt-alpha/${id}/callback`,
    payload: { RelayState: 'x', SAMLResponse: 'y' },
  },
  'GET /api/v1/exports/:id': { targets: () => [bExportId] },
  'GET /api/v1/exports/:id/download': { targets: () => [bExportId] },
  'POST /api/v1/users/:id/erase': { targets: () => [B.memberId, bOwnerId] },
  'GET /api/v1/users/:id/consents': { targets: () => [B.memberId, bOwnerId] },
  'POST /api/v1/users/:id/consents': {
    targets: () => [B.memberId, bOwnerId],
    payload: { purpose: 'marketing', granted: false, source: 'taken over' },
  },
  'GET /api/v1/siem/destinations/:id': { targets: () => B.siemDestinationIds },
  'PATCH /api/v1/siem/destinations/:id': {
    targets: () => B.siemDestinationIds,
    payload: { config: { url: 'https://attacker.example/' }, secret: 'attacker-token', enabled: false },
  },
  'DELETE /api/v1/siem/destinations/:id': { targets: () => B.siemDestinationIds },
  // A report always reads the caller's own tenant; its parameter is a kind, and an unknown one is 404.
  'GET /api/v1/reports/:kind': { targets: () => [], url: (id) => `/api/v1/reports/${id}?format=csv` },
};

/** Tenant B's owner (its user id, from B's /me). */
let bOwnerId = '';

function paramRoutes() {
  return t.app.routeTable.filter((r) => r.url.startsWith('/api/v1/') && r.url.includes(':'));
}

/** Everything tenant B can see about itself, through its own API. */
async function snapshotB() {
  const get = async (url: string) =>
    expectStatus(await t.app.inject({ url, headers: bearer(B.fx.token) }), 200).json() as unknown;
  return {
    tenant: await get('/api/v1/tenant'),
    users: await get('/api/v1/users?limit=200'),
    member: await get(`/api/v1/users/${B.memberId}`),
    owner: await get(`/api/v1/users/${bOwnerId}`),
    roles: await get('/api/v1/roles?limit=200'),
    customRole: await get(`/api/v1/roles/${B.customRoleId}`),
    apiKeys: await get('/api/v1/api-keys?limit=200&includeRevoked=true'),
    audit: await get('/api/v1/audit?limit=200'),
    auditVerify: await get('/api/v1/audit/verify'),
    webhooks: await get('/api/v1/webhooks?limit=200'),
    schedules: await get('/api/v1/schedules?limit=200'),
    tasks: await get('/api/v1/tasks?limit=200'),
    waitingTask: await get(`/api/v1/tasks/${B.loop.waitingTaskId}`),
    failedTask: await get(`/api/v1/tasks/${B.loop.failedTaskId}`),
    approvals: await get('/api/v1/approvals?limit=200'),
    approval: await get(`/api/v1/approvals/${B.loop.approvalId}`),
    playbooks: await get('/api/v1/playbooks?limit=200'),
    deadLetters: await get('/api/v1/dead-letters?limit=200'),
    connections: await get('/api/v1/connections?limit=200'),
    connectionRows: await t.db.owner`
      select id, name, config, is_default, secret_ciphertext, secret_nonce, updated_at from connections
      where tenant_id = ${B.fx.tenant.id} order by id`,
    siem: await get('/api/v1/siem/destinations?limit=200'),
    siemRows: await t.db.owner`
      select id, name, config, enabled, secret_ciphertext, secret_nonce, updated_at from siem_destinations
      where tenant_id = ${B.fx.tenant.id} order by id`,
    mcpServers: await get('/api/v1/mcp-servers'),
    ssoConnections: await get('/api/v1/sso-connections?limit=200'),
    ssoRows: await t.db.owner`
      select id, name, enabled, config, default_role, secret_ciphertext, secret_nonce, updated_at from sso_connections
      where tenant_id = ${B.fx.tenant.id} order by id`,
    scimTokens: await get('/api/v1/scim-tokens?limit=200'),
    mcpRows: await t.db.owner`
      select id, name, url, allowed_tools, enabled, secret_ciphertext, secret_nonce, catalog, updated_at from mcp_servers
      where tenant_id = ${B.fx.tenant.id} order by id`,
    securityRows: await t.db.owner`
      select s.id, s.revoked_at, p.id as passkey, p.name from sessions s
      left join passkeys p on p.user_id = s.user_id
      where s.user_id in (select user_id from memberships where tenant_id = ${B.fx.tenant.id}) order by s.id, p.id`,
    jobs: await t.db.owner`
      select t.identifier, j.key, j.payload, j.run_at, j.attempts
      from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
      where j.payload->>'tenantId' = ${B.fx.tenant.id} order by j.id`,
  };
}

function errorWithoutRequestId(r: LightMyRequestResponse) {
  if (r.body === '') return { status: r.statusCode };
  const { code, message } = (r.json() as { error: { code: string; message: string } }).error;
  return { status: r.statusCode, code, message };
}

describe('routes that take an id', () => {
  beforeAll(async () => {
    const me = expectStatus(
      await t.app.inject({ url: '/api/v1/me', headers: bearer(B.fx.token) }),
      200,
    ).json();
    bOwnerId = me.user.id;
  });

  it('each has a cross-tenant case (add one for every new route with a parameter)', () => {
    const routes = paramRoutes();
    expect(routes.length).toBeGreaterThanOrEqual(7);
    const missing = routes
      .map((r) => `${r.method === 'HEAD' ? 'GET' : r.method} ${r.url}`)
      .filter((key) => !CASES[key]);
    expect(missing).toEqual([]);
    for (const key of Object.keys(CASES)) {
      expect(
        routes.some((r) => `${r.method} ${r.url}` === key),
        `${key} is no longer a route`,
      ).toBe(true);
    }
  });

  it("answer 404 to A's token and A's API key on B's objects, exactly like a missing id, and change nothing in B", async () => {
    const before = await snapshotB();
    // Mutations last, so that a leak in one route cannot hide a leak in a read.
    const order = ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE'];
    const routes = [...paramRoutes()].sort((x, y) => order.indexOf(x.method) - order.indexOf(y.method));
    let attempts = 0;
    for (const route of routes) {
      const c = CASES[`${route.method === 'HEAD' ? 'GET' : route.method} ${route.url}`]!;
      for (const [who, credential] of [
        ['token', A.fx.token],
        ['api key', A.fx.apiKey],
      ] as const) {
        const request = (id: string) =>
          t.app.inject({
            method: route.method as 'GET',
            url: c.url ? c.url(id) : route.url.replace(':id', id),
            headers: bearer(credential),
            ...(c.payload ? { payload: c.payload } : {}),
          });
        const expected = who === 'api key' && c.apiKeyStatus ? c.apiKeyStatus : 404;
        const missing = await request(MISSING_ID);
        expect(missing.statusCode, `${route.method} ${route.url} (${who}, missing id)`).toBe(expected);
        for (const id of c.targets()) {
          const r = await request(id);
          attempts++;
          expect(r.statusCode, `${route.method} ${route.url} (${who}) on B's ${id}: ${r.body}`).toBe(
            expected,
          );
          expect(errorWithoutRequestId(r)).toEqual(errorWithoutRequestId(missing));
        }
      }
    }
    expect(attempts).toBeGreaterThanOrEqual(52);
    expect(await snapshotB()).toEqual(before);
    // B's credentials still work.
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(B.fx.apiKey) }), 200);
    expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(B.fx.token) }), 200);
  });

  it("still work on A's own objects (the 404s above are not a broken route)", async () => {
    const h = bearer(A.fx.token);
    expectStatus(await t.app.inject({ url: `/api/v1/users/${A.memberId}`, headers: h }), 200);
    expectStatus(await t.app.inject({ url: `/api/v1/roles/${A.customRoleId}`, headers: h }), 200);
    expectStatus(
      await t.app.inject({
        method: 'PATCH',
        url: `/api/v1/roles/${A.customRoleId}`,
        headers: bearer(A.fx.apiKey),
        payload: { description: 'changed by A' },
      }),
      200,
    );
    expectStatus(
      await t.app.inject({ method: 'DELETE', url: `/api/v1/api-keys/${A.extraKeyId}`, headers: h }),
      204,
    );
    expectStatus(await t.app.inject({ url: `/api/v1/tasks/${A.loop.waitingTaskId}`, headers: h }), 200);
    expectStatus(await t.app.inject({ url: `/api/v1/approvals/${A.loop.approvalId}`, headers: h }), 200);
    expectStatus(
      await t.app.inject({ url: `/api/v1/playbooks/${A.loop.playbookIds[0]}`, headers: bearer(A.fx.apiKey) }),
      200,
    );
    expectStatus(
      await t.app.inject({
        method: 'PATCH',
        url: `/api/v1/playbooks/${A.loop.playbookIds[0]}`,
        headers: h,
        payload: { description: 'changed by A' },
      }),
      200,
    );
    const decided = expectStatus(
      await t.app.inject({
        method: 'POST',
        url: `/api/v1/approvals/${A.loop.approvalId}/decision`,
        headers: h,
        payload: { decision: 'approve' },
      }),
      200,
    ).json();
    expect(decided.approval.status).toBe('approved');
    expect(
      expectStatus(await t.app.inject({ url: '/api/v1/dead-letters', headers: h }), 200).json().items,
    ).toEqual([expect.objectContaining({ id: A.loop.deadStepId, taskId: A.loop.failedTaskId })]);
    const retried = expectStatus(
      await t.app.inject({
        method: 'POST',
        url: `/api/v1/dead-letters/${A.loop.deadStepId}/retry`,
        headers: bearer(A.fx.apiKey),
      }),
      200,
    ).json();
    expect(retried.steps[0].status).toBe('ready');
    expectStatus(
      await t.app.inject({
        method: 'POST',
        url: `/api/v1/tasks/${A.loop.waitingTaskId}/cancel`,
        headers: bearer(A.fx.apiKey),
      }),
      200,
    );
    expectStatus(
      await t.app.inject({ method: 'DELETE', url: `/api/v1/playbooks/${A.loop.playbookIds[1]}`, headers: h }),
      204,
    );
  });
});

describe('list endpoints', () => {
  it("never contain B's ids, emails or key prefixes", async () => {
    const bSecrets = async () => {
      const roles = expectStatus(
        await t.app.inject({ url: '/api/v1/roles?limit=200', headers: bearer(B.fx.token) }),
        200,
      ).json().items as { id: string }[];
      return [
        B.fx.tenant.id,
        B.fx.tenant.slug,
        B.fx.ownerEmail,
        'member@xt-bravo.test',
        bOwnerId,
        B.memberId,
        B.extraKeyId,
        B.extraKeyPrefix,
        B.fx.apiKeyId,
        B.fx.apiKey.slice(0, 16),
        B.watch.webhookId,
        B.watch.scheduleId,
        ...roles.map((r) => r.id),
        B.loop.waitingTaskId,
        B.loop.failedTaskId,
        B.loop.approvalId,
        B.loop.deadStepId,
        ...B.loop.playbookIds,
        ...B.loop.eventIds,
        'nobody@xt-bravo.invalid',
        'xt-sso-secret-xt-bravo',
        'xt-client-xt-bravo',
        ...B.ssoConnectionIds,
        ...B.scimTokenIds,
      ];
    };
    const forbidden = await bSecrets();
    expect(forbidden.length).toBeGreaterThan(15);

    const lists = t.app.routeTable.filter(
      (r) => r.method === 'GET' && r.url.startsWith('/api/v1/') && !r.url.includes(':'),
    );
    expect(lists.map((r) => r.url)).toEqual(
      expect.arrayContaining([
        '/api/v1/users',
        '/api/v1/roles',
        '/api/v1/api-keys',
        '/api/v1/audit',
        '/api/v1/tasks',
        '/api/v1/approvals',
        '/api/v1/playbooks',
        '/api/v1/dead-letters',
      ]),
    );
    let answered = 0;
    for (const route of lists) {
      for (const credential of [A.fx.token, A.fx.apiKey]) {
        for (const query of ['', '?limit=200', '?limit=200&includeRevoked=true']) {
          const r = await t.app.inject({ url: route.url + query, headers: bearer(credential) });
          if (r.statusCode === 200) answered++;
          for (const secret of forbidden) {
            expect(r.body, `${route.url}${query} leaks ${secret}`).not.toContain(secret);
          }
        }
      }
    }
    expect(answered).toBeGreaterThan(20);
    // And A does see its own data there (the check above is not vacuous).
    const users = expectStatus(
      await t.app.inject({ url: '/api/v1/users', headers: bearer(A.fx.apiKey) }),
      200,
    ).body;
    expect(users).toContain(A.memberId);
    expect(users).toContain(A.fx.ownerEmail);
    for (const [url, id] of [
      ['/api/v1/tasks', A.loop.waitingTaskId],
      ['/api/v1/approvals', A.loop.approvalId],
      ['/api/v1/playbooks', A.loop.playbookIds[0]!],
    ] as const) {
      expect(
        expectStatus(await t.app.inject({ url, headers: bearer(A.fx.apiKey) }), 200).body,
        `${url} shows A's own objects`,
      ).toContain(id);
    }
  });
});

describe('names that exist only in B', () => {
  it('a role of B answers like a role that does not exist', async () => {
    // B has a custom role named "b-only"; A has no such role.
    await createRole(t.res, B.fx.tenant.id, SYSTEM_ACTOR, new Set(['tenant:read']), {
      name: 'b-only',
      permissions: ['tenant:read'],
    });
    for (const [url, payload] of [
      ['/api/v1/api-keys', { name: 'k' }],
      ['/api/v1/users', { email: 'new@xt-alpha.test', password: 'long enough password' }],
    ] as const) {
      const bOnly = await t.app.inject({
        method: 'POST',
        url,
        headers: bearer(A.fx.token),
        payload: { ...payload, role: 'b-only' },
      });
      const none = await t.app.inject({
        method: 'POST',
        url,
        headers: bearer(A.fx.token),
        payload: { ...payload, role: 'no-such-role' },
      });
      expect(bOnly.statusCode).toBe(400);
      expect(none.statusCode).toBe(400);
      expect(bOnly.json().error.message.replace('b-only', 'X')).toBe(
        none.json().error.message.replace('no-such-role', 'X'),
      );
    }
  });

  it("switching to B's tenant answers like a tenant that does not exist", async () => {
    const toB = await t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/switch-tenant',
      headers: bearer(A.fx.token),
      payload: { tenant: 'xt-bravo' },
    });
    const toNothing = await t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/switch-tenant',
      headers: bearer(A.fx.token),
      payload: { tenant: 'xt-nothing' },
    });
    expect(toB.statusCode).toBe(404);
    expect(toNothing.statusCode).toBe(404);
    expect(toB.json().error.message.replace('xt-bravo', 'X')).toBe(
      toNothing.json().error.message.replace('xt-nothing', 'X'),
    );
  });
});

// Privacy (GDPR): an export of tenant B, for the export routes above.
let bExportId = '';
beforeAll(async () => {
  bExportId = (await requestExport(t.res, B.fx.tenant.id, SYSTEM_ACTOR, { scope: 'tenant' })).id;
});
