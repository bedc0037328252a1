import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import { createApiKey } from '@steward/core/identity/api-key-service';
import { createRole } from '@steward/core/identity/role-service';
import { createPlatformAdmin } from '@steward/core/identity/user-service';
import { runStep } from '@steward/core/executor/run-step';
import { planTask } from '@steward/core/planner/plan-task';
import { createPlaybook } from '@steward/core/planner/playbook-service';
import { getTask, submitEvent } from '@steward/core/tasks/task-service';
import { SYSTEM_ACTOR } from '@steward/core/resources';
import { createSchedule } from '@steward/core/watchers/schedule-service';
import { createWebhook } from '@steward/core/watchers/webhook-service';
import { createConnection } from '@steward/core/connections/connection-service';
import { createMcpServer } from '@steward/core/mcp/mcp-service';
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

/**
 * Every state-changing route under /api/v1 leaves an audit entry when it succeeds: in the right
 * tenant's chain, with the actor, the request id and the outcome. A new POST/PATCH/PUT/DELETE
 * route without a case below fails the first test.
 */

/** Public and audited only on failure (reuse): a refresh changes no tenant data. */
const NOT_AUDITED = new Set(['POST /api/v1/auth/refresh']);

interface Caller {
  kind: 'user' | 'api_key';
  headers: Record<string, string>;
  actorId: string;
}

interface Outcome {
  response: LightMyRequestResponse;
  tenantId: string;
  action: string;
  actorType: 'user' | 'api_key';
  actorId: string;
  targetId?: string;
}

type Run = (requestId: string, caller: Caller) => Promise<Outcome>;

let t: TestApp;
let a: TenantFixture;
let b: TenantFixture;
let ownerId: string;
let seq = 0;
const unique = () => `${Date.now().toString(36)}${++seq}`;

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'audit-a');
  b = await createTenantFixture(t, 'audit-b');
  ownerId = expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(a.token) }), 200).json().user
    .id;
  // Playbooks the loop cases below rely on: one step that needs approval, one that fails for good.
  await createPlaybook(t.res, a.tenant.id, SYSTEM_ACTOR, {
    name: 'needs approval',
    when: { subject: { contains: 'audit-approve' } },
    steps: [{ key: 'pay', tool: 'noop', args: { note: 'pay' }, risk: 'high' }],
  });
  await createPlaybook(t.res, a.tenant.id, SYSTEM_ACTOR, {
    name: 'dead letter',
    when: { subject: { contains: 'audit-dead' } },
    steps: [{ key: 'tell', tool: 'notify.user', args: { to: 'nobody@audit-a.invalid', title: 'hi' } }],
  });
});
afterAll(() => t?.close());

const inject = (
  requestId: string,
  opts: { method: string; url: string; headers?: Record<string, string>; payload?: unknown },
) =>
  t.app.inject({
    method: opts.method as 'POST',
    url: opts.url,
    headers: { ...opts.headers, 'x-request-id': requestId },
    ...(opts.payload === undefined ? {} : { payload: opts.payload as Record<string, unknown> }),
  });

/** A case for a permission route: driven by A's owner token and by A's admin API key. */
function tenantCase(
  method: string,
  url: string,
  action: string,
  prepare: () => Promise<{ id?: string; payload?: unknown }>,
  /** The audited target of a route that answers 202 with what it created. */
  targetOf?: (body: Record<string, string>) => string,
): Run {
  return async (requestId, caller) => {
    const { id, payload } = await prepare();
    const response = await inject(requestId, {
      method,
      url: id ? url.replace(':id', id) : url,
      headers: caller.headers,
      payload,
    });
    const created =
      response.statusCode === 201
        ? (response.json() as { id?: string }).id
        : response.statusCode === 202 && targetOf
          ? targetOf(response.json())
          : undefined;
    const targetId = id ?? created;
    return {
      response,
      tenantId: a.tenant.id,
      action,
      actorType: caller.kind,
      actorId: caller.actorId,
      ...(targetId ? { targetId } : {}),
    };
  };
}

const newUser = async () => ({
  id: (await addUser(t, a.tenant.id, `u${unique()}@audit-a.test`, 'viewer')).id,
});
const newRole = async () => ({
  id: (
    await createRole(t.res, a.tenant.id, SYSTEM_ACTOR, new Set(['tenant:read']), {
      name: `r${unique()}`,
      permissions: ['tenant:read'],
    })
  ).id,
});

const newPlaybook = async () => ({
  id: (
    await createPlaybook(t.res, a.tenant.id, SYSTEM_ACTOR, {
      name: `p${unique()}`,
      when: { subject: { equals: `never-${unique()}` } },
      steps: [{ key: 'n', tool: 'noop', args: {} }],
    })
  ).id,
});

/** A task nobody has planned yet (no worker runs in this file). */
const newTask = async () => ({
  id: (await submitEvent(t.res, a.tenant.id, SYSTEM_ACTOR, { source: 'api', type: 'note', subject: 'idle' }))
    .taskId,
});

/** A task planned by its playbook, as the worker would. */
async function plannedTask(subject: string) {
  const { taskId } = await submitEvent(t.res, a.tenant.id, SYSTEM_ACTOR, {
    source: 'api',
    type: 'note',
    subject,
  });
  await planTask(t.res, a.tenant.id, taskId);
  return getTask(t.res, a.tenant.id, taskId);
}

/** A step that failed for good: notify.user to someone who is not a member. */
const deadStep = async () => {
  const task = await plannedTask(`audit-dead ${unique()}`);
  await runStep(t.res, a.tenant.id, task.steps[0]!.id);
  const after = await getTask(t.res, a.tenant.id, task.id);
  expect(after.steps[0]!.status).toBe('dead');
  return { id: after.steps[0]!.id };
};

/** Routes any caller with the permission may use (run with a user and with an API key). */
const newWebhook = async () => ({
  id: (await createWebhook(t.res, a.tenant.id, SYSTEM_ACTOR, { name: `h${unique()}` })).id,
});
const newSchedule = async () => ({
  id: (
    await createSchedule(t.res, a.tenant.id, SYSTEM_ACTOR, {
      name: `s${unique()}`,
      cron: '@daily',
      event: { type: 'reminder' },
    })
  ).id,
});

const newConnection = async () => ({
  id: (
    await createConnection(t.res, a.tenant.id, SYSTEM_ACTOR, {
      kind: 'smtp',
      name: `c${unique()}`,
      config: { host: 'smtp.example.com', from: 'robot@audit-a.test' },
      secret: 'audit-connection-secret',
    })
  ).id,
});

const newMcpServer = async () => ({
  id: (
    await createMcpServer(t.res, a.tenant.id, SYSTEM_ACTOR, {
      name: `m${unique()}`,
      transport: 'http',
      url: 'https://mcp.example.com/mcp',
      secret: { authorization: 'audit-mcp-secret' },
    })
  ).id,
});

const TENANT_CASES: Record<string, Run> = {
  'POST /api/v1/mcp-servers': tenantCase('POST', '/api/v1/mcp-servers', 'mcp_server.created', async () => ({
    payload: {
      name: `m${unique()}`,
      transport: 'http',
      url: 'https://mcp.example.com/mcp',
      secret: { authorization: 'Bearer audit-mcp-secret' },
      allowedTools: ['lookup'],
    },
  })),
  'PATCH /api/v1/mcp-servers/:id': tenantCase(
    'PATCH',
    '/api/v1/mcp-servers/:id',
    'mcp_server.updated',
    async () => ({
      ...(await newMcpServer()),
      payload: {
        allowedTools: ['lookup'],
        riskOverrides: { lookup: 'critical' },
        secret: { authorization: 'rotated' },
      },
    }),
  ),
  'DELETE /api/v1/mcp-servers/:id': tenantCase(
    'DELETE',
    '/api/v1/mcp-servers/:id',
    'mcp_server.deleted',
    newMcpServer,
  ),
  'POST /api/v1/connections': tenantCase('POST', '/api/v1/connections', 'connection.created', async () => ({
    payload: {
      kind: 'http',
      name: `c${unique()}`,
      config: { baseUrl: 'https://api.example.com/' },
      secret: 'Bearer audit-connection-secret',
    },
  })),
  'PATCH /api/v1/connections/:id': tenantCase(
    'PATCH',
    '/api/v1/connections/:id',
    'connection.updated',
    async () => ({
      ...(await newConnection()),
      payload: { config: { port: 2525 }, secret: 'rotated-secret' },
    }),
  ),
  'DELETE /api/v1/connections/:id': tenantCase(
    'DELETE',
    '/api/v1/connections/:id',
    'connection.deleted',
    newConnection,
  ),
  'POST /api/v1/webhooks': tenantCase('POST', '/api/v1/webhooks', 'webhook.created', async () => ({
    payload: { name: `h${unique()}` },
  })),
  'DELETE /api/v1/webhooks/:id': tenantCase('DELETE', '/api/v1/webhooks/:id', 'webhook.deleted', newWebhook),
  'POST /api/v1/schedules': tenantCase('POST', '/api/v1/schedules', 'schedule.created', async () => ({
    payload: {
      name: `s${unique()}`,
      cron: '0 9 * * 1-5',
      timezone: 'Europe/Paris',
      event: { type: 'review' },
    },
  })),
  'PATCH /api/v1/schedules/:id': tenantCase(
    'PATCH',
    '/api/v1/schedules/:id',
    'schedule.updated',
    async () => ({ ...(await newSchedule()), payload: { enabled: false } }),
  ),
  'DELETE /api/v1/schedules/:id': tenantCase(
    'DELETE',
    '/api/v1/schedules/:id',
    'schedule.deleted',
    newSchedule,
  ),
  'PATCH /api/v1/tenant': tenantCase('PATCH', '/api/v1/tenant', 'tenant.updated', async () => ({
    payload: { name: `Audit A ${unique()}`, settings: { locale: 'en' } },
  })),
  'POST /api/v1/users': tenantCase('POST', '/api/v1/users', 'user.added', async () => ({
    payload: { email: `new${unique()}@audit-a.test`, password: TEST_PASSWORD, role: 'viewer' },
  })),
  'PATCH /api/v1/users/:id': tenantCase('PATCH', '/api/v1/users/:id', 'user.updated', async () => ({
    ...(await newUser()),
    payload: { role: 'member', name: 'Renamed' },
  })),
  'DELETE /api/v1/users/:id': tenantCase('DELETE', '/api/v1/users/:id', 'user.removed', newUser),
  'POST /api/v1/roles': tenantCase('POST', '/api/v1/roles', 'role.created', async () => ({
    payload: { name: `r${unique()}`, permissions: ['tasks:read'] },
  })),
  'PATCH /api/v1/roles/:id': tenantCase('PATCH', '/api/v1/roles/:id', 'role.updated', async () => ({
    ...(await newRole()),
    payload: { description: 'changed', permissions: ['tenant:read', 'tasks:read'] },
  })),
  'DELETE /api/v1/roles/:id': tenantCase('DELETE', '/api/v1/roles/:id', 'role.deleted', newRole),
  'POST /api/v1/api-keys': tenantCase('POST', '/api/v1/api-keys', 'api_key.created', async () => ({
    payload: { name: `k${unique()}`, role: 'viewer' },
  })),
  'DELETE /api/v1/api-keys/:id': tenantCase(
    'DELETE',
    '/api/v1/api-keys/:id',
    'api_key.revoked',
    async () => ({
      id: (await createApiKey(t.res, a.tenant.id, SYSTEM_ACTOR, { name: `k${unique()}`, role: 'viewer' }))
        .apiKey.id,
    }),
  ),
  'POST /api/v1/events': tenantCase(
    'POST',
    '/api/v1/events',
    'task.created',
    async () => ({
      payload: { source: 'email', type: 'message', externalId: `m-${unique()}`, subject: 'hello' },
    }),
    (body) => body.taskId!,
  ),
  'POST /api/v1/tasks': tenantCase(
    'POST',
    '/api/v1/tasks',
    'task.created',
    async () => ({ payload: { title: `By hand ${unique()}`, body: 'please' } }),
    (body) => body.taskId!,
  ),
  'POST /api/v1/tasks/:id/cancel': tenantCase('POST', '/api/v1/tasks/:id/cancel', 'task.cancelled', newTask),
  'POST /api/v1/playbooks': tenantCase('POST', '/api/v1/playbooks', 'playbook.created', async () => ({
    payload: {
      name: `p${unique()}`,
      when: { subject: { contains: `never-${unique()}` } },
      steps: [{ key: 'n', tool: 'noop', args: { note: '{{event.subject}}' } }],
    },
  })),
  'PATCH /api/v1/playbooks/:id': tenantCase(
    'PATCH',
    '/api/v1/playbooks/:id',
    'playbook.updated',
    async () => ({ ...(await newPlaybook()), payload: { enabled: false, description: 'off' } }),
  ),
  'DELETE /api/v1/playbooks/:id': tenantCase(
    'DELETE',
    '/api/v1/playbooks/:id',
    'playbook.deleted',
    newPlaybook,
  ),
  'POST /api/v1/dead-letters/:id/retry': tenantCase(
    'POST',
    '/api/v1/dead-letters/:id/retry',
    'step.retried',
    deadStep,
  ),
  'POST /api/v1/briefings': tenantCase('POST', '/api/v1/briefings', 'briefing.created', async () => ({
    payload: {},
  })),
};

/** Routes for a signed-in user only (sessions, platform administration, approvals). */
const USER_CASES: Record<string, (requestId: string) => Promise<Outcome>> = {
  'POST /api/v1/approvals/:id/decision': async (requestId) => {
    const task = await plannedTask(`audit-approve ${unique()}`);
    const approvalId = task.approvals[0]!.id;
    const response = await inject(requestId, {
      method: 'POST',
      url: `/api/v1/approvals/${approvalId}/decision`,
      headers: bearer(a.token),
      payload: { decision: 'approve', comment: 'fine' },
    });
    return {
      response,
      tenantId: a.tenant.id,
      action: 'approval.approved',
      actorType: 'user',
      actorId: ownerId,
      targetId: approvalId,
    };
  },
  'POST /api/v1/auth/login': async (requestId) => {
    const response = await inject(requestId, {
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: a.ownerEmail, password: TEST_PASSWORD, tenant: 'audit-a' },
    });
    return { response, tenantId: a.tenant.id, action: 'auth.login', actorType: 'user', actorId: ownerId };
  },
  'POST /api/v1/auth/logout': async (requestId) => {
    const session = await loginAs(t, a.ownerEmail, 'audit-a');
    const response = await inject(requestId, {
      method: 'POST',
      url: '/api/v1/auth/logout',
      headers: bearer(session.accessToken),
    });
    return { response, tenantId: a.tenant.id, action: 'auth.logout', actorType: 'user', actorId: ownerId };
  },
  'POST /api/v1/auth/switch-tenant': async (requestId) => {
    const email = `dual${unique()}@audit.test`;
    const user = await addUser(t, a.tenant.id, email, 'viewer');
    await addUser(t, b.tenant.id, email, 'viewer');
    const session = await loginAs(t, email, 'audit-a');
    const response = await inject(requestId, {
      method: 'POST',
      url: '/api/v1/auth/switch-tenant',
      headers: bearer(session.accessToken),
      payload: { tenant: 'audit-b' },
    });
    return {
      response,
      tenantId: b.tenant.id,
      action: 'auth.switch_tenant',
      actorType: 'user',
      actorId: user.id,
    };
  },
  'POST /api/v1/tenants': async (requestId) => {
    const email = `root${unique()}@platform.test`;
    const admin = await createPlatformAdmin(t.res, SYSTEM_ACTOR, { email, password: TEST_PASSWORD });
    const session = await loginAs(t, email);
    const slug = `audit-new-${unique()}`;
    const response = await inject(requestId, {
      method: 'POST',
      url: '/api/v1/tenants',
      headers: bearer(session.accessToken),
      payload: { slug, name: 'New', ownerEmail: `owner@${slug}.test`, ownerPassword: TEST_PASSWORD },
    });
    const tenantId = response.statusCode === 201 ? (response.json() as { id: string }).id : 'none';
    return {
      response,
      tenantId,
      action: 'tenant.created',
      actorType: 'user',
      actorId: admin.id,
      targetId: tenantId,
    };
  },
};

interface AuditRow {
  tenant_id: string;
  action: string;
  outcome: string;
  actor_type: string;
  actor_id: string | null;
  target_id: string | null;
  ip: string | null;
}

/** Audit entries written under one request id, read as the database owner (across tenants). */
async function entriesFor(requestId: string): Promise<AuditRow[]> {
  return t.db.owner<AuditRow[]>`
    select tenant_id, action, outcome, actor_type, actor_id, target_id, ip
    from audit_log where request_id = ${requestId} order by tenant_id, seq`;
}

async function expectAudited(route: string, requestId: string, outcome: Outcome) {
  expect(outcome.response.statusCode, `${route}: ${outcome.response.body}`).toBeGreaterThanOrEqual(200);
  expect(outcome.response.statusCode, `${route}: ${outcome.response.body}`).toBeLessThan(300);
  const rows = await entriesFor(requestId);
  expect(rows, `${route} left no audit entry`).toContainEqual(
    expect.objectContaining({
      tenant_id: outcome.tenantId,
      action: outcome.action,
      outcome: 'success',
      actor_type: outcome.actorType,
      actor_id: outcome.actorId,
      ...(outcome.targetId ? { target_id: outcome.targetId } : {}),
    }),
  );
  for (const row of rows) expect(row.ip).toBeTruthy();
}

describe('state-changing routes', () => {
  it('each has an audit case (add one for every new POST, PUT, PATCH or DELETE route)', () => {
    const changing = t.app.routeTable
      .filter((r) => r.url.startsWith('/api/v1/') && ['POST', 'PUT', 'PATCH', 'DELETE'].includes(r.method))
      .map((r) => `${r.method} ${r.url}`)
      .filter((key) => !NOT_AUDITED.has(key));
    expect(changing.length).toBeGreaterThanOrEqual(13);
    const cases = new Set([...Object.keys(TENANT_CASES), ...Object.keys(USER_CASES)]);
    expect(changing.filter((key) => !cases.has(key))).toEqual([]);
    expect([...cases].filter((key) => !changing.includes(key))).toEqual([]);
  });

  it('leave an audit entry when a user succeeds', async () => {
    const caller: Caller = { kind: 'user', headers: bearer(a.token), actorId: ownerId };
    for (const [route, run] of Object.entries(TENANT_CASES)) {
      const requestId = `audit-user-${unique()}`;
      await expectAudited(route, requestId, await run(requestId, caller));
    }
    for (const [route, run] of Object.entries(USER_CASES)) {
      const requestId = `audit-session-${unique()}`;
      await expectAudited(route, requestId, await run(requestId));
    }
  });

  it('leave an audit entry when an API key succeeds', async () => {
    const caller: Caller = { kind: 'api_key', headers: bearer(a.apiKey), actorId: a.apiKeyId };
    for (const [route, run] of Object.entries(TENANT_CASES)) {
      const requestId = `audit-key-${unique()}`;
      await expectAudited(route, requestId, await run(requestId, caller));
    }
  });

  it('leave the chains intact', async () => {
    for (const token of [a.token, b.token]) {
      const verify = expectStatus(
        await t.app.inject({ url: '/api/v1/audit/verify', headers: bearer(token) }),
        200,
      ).json();
      expect(verify.ok).toBe(true);
      expect(verify.checked).toBeGreaterThan(1);
    }
  });
});
