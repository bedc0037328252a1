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
import { createDestination } from '@steward/core/siem/destination-service';
import { createMcpServer } from '@steward/core/mcp/mcp-service';
import { generate } from 'otplib';
import { SoftAuthenticator } from '../testing/soft-authenticator.ts';
import { createSsoConnection } from '@steward/core/sso/sso-connection-service';
import { createInvitation } from '@steward/core/identity/invitation-service';
import { createScimToken } from '@steward/core/scim/scim-token-service';
import { randomToken, sha256 } from '@steward/core/shared/secrets';
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
const NOT_AUDITED = new Set([
  'POST /api/v1/auth/refresh',
  // WebAuthn challenges only (stored for 5 minutes); what answers them is audited.
  'POST /api/v1/auth/mfa/webauthn/options',
  'POST /api/v1/auth/passkey/options',
  'POST /api/v1/passkeys/options',
  // The SAML assertion consumer service needs a signed response from a test IdP: its audit entries
  // (auth.sso_login success and failure, user.provisioned) are checked in routes/sso-saml.test.ts.
  'POST /api/v1/sso/:tenantSlug/:connectionId/callback',
  // A stream ticket changes nothing either: it is a signed, 60-second permission to read change ids.
  'POST /api/v1/stream-tickets',
]);

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

const newSiemDestination = async () => ({
  id: (
    await createDestination(t.res, a.tenant.id, SYSTEM_ACTOR, {
      name: `siem${unique()}`,
      kind: 'syslog',
      config: { host: 'siem.example.com', port: 6514, tls: true },
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
  'POST /api/v1/siem/destinations': tenantCase(
    'POST',
    '/api/v1/siem/destinations',
    'siem.destination.created',
    async () => ({
      payload: {
        name: `siem${unique()}`,
        kind: 'https',
        config: { url: 'https://siem.example.com/ingest' },
        secret: 'audit-siem-token',
      },
    }),
  ),
  'PATCH /api/v1/siem/destinations/:id': tenantCase(
    'PATCH',
    '/api/v1/siem/destinations/:id',
    'siem.destination.updated',
    async () => ({ ...(await newSiemDestination()), payload: { enabled: false } }),
  ),
  'DELETE /api/v1/siem/destinations/:id': tenantCase(
    'DELETE',
    '/api/v1/siem/destinations/:id',
    'siem.destination.deleted',
    newSiemDestination,
  ),
  'POST /api/v1/webhooks': tenantCase('POST', '/api/v1/webhooks', 'webhook.created', async () => ({
    payload: { name: `h${unique()}` },
  })),
  'DELETE /api/v1/webhooks/:id': tenantCase('DELETE', '/api/v1/webhooks/:id', 'webhook.deleted', newWebhook),
  'POST /api/v1/webhooks/:id/rotate-secret': tenantCase(
    'POST',
    '/api/v1/webhooks/:id/rotate-secret',
    'webhook.secret_rotated',
    async () => ({ ...(await newWebhook()), payload: { graceSeconds: 60 } }),
  ),
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
  'POST /api/v1/invitations': tenantCase('POST', '/api/v1/invitations', 'invitation.created', async () => ({
    payload: { email: `inv${unique()}@audit-a.test`, role: 'viewer' },
  })),
  'DELETE /api/v1/invitations/:id': tenantCase(
    'DELETE',
    '/api/v1/invitations/:id',
    'invitation.revoked',
    async () => ({
      id: (
        await createInvitation(t.res, a.tenant.id, SYSTEM_ACTOR, {
          email: `inv${unique()}@audit-a.test`,
          role: 'viewer',
        })
      ).invitation.id,
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
  'PUT /api/v1/tenant/ip-allow-list': tenantCase(
    'PUT',
    '/api/v1/tenant/ip-allow-list',
    'tenant.ip_allow_list.updated',
    async () => ({ payload: { entries: [] } }),
  ),
  'PUT /api/v1/tenant/rate-limits': tenantCase(
    'PUT',
    '/api/v1/tenant/rate-limits',
    'tenant.rate_limits.updated',
    async () => ({ payload: { requestsPerMinute: null } }),
  ),
  'DELETE /api/v1/users/:id/mfa': tenantCase('DELETE', '/api/v1/users/:id/mfa', 'mfa.reset', newUser),
  'DELETE /api/v1/users/:id/sessions': tenantCase(
    'DELETE',
    '/api/v1/users/:id/sessions',
    'session.revoked_all',
    newUser,
  ),
  'DELETE /api/v1/users/:id/sessions/:sessionId': async (requestId, caller) => {
    const u = await signedInUser();
    const response = await inject(requestId, {
      method: 'DELETE',
      url: `/api/v1/users/${u.id}/sessions/${u.sessionId}`,
      headers: caller.headers,
    });
    return {
      response,
      tenantId: a.tenant.id,
      action: 'session.revoked',
      actorType: caller.kind,
      actorId: caller.actorId,
      targetId: u.sessionId,
    };
  },
  // Privacy (GDPR).
  'POST /api/v1/exports': tenantCase(
    'POST',
    '/api/v1/exports',
    'privacy.export_requested',
    async () => ({ payload: { scope: 'tenant' } }),
    (body) => body.id!,
  ),
  'POST /api/v1/users/:id/erase': async (requestId, caller) => {
    const { id } = await newUser();
    const response = await inject(requestId, {
      method: 'POST',
      url: `/api/v1/users/${id}/erase`,
      headers: caller.headers,
    });
    // The target is the user's pseudonym: the erased id itself is gone from the chain.
    return {
      response,
      tenantId: a.tenant.id,
      action: 'privacy.user_erased',
      actorType: caller.kind,
      actorId: caller.actorId,
    };
  },
  'POST /api/v1/users/:id/consents': tenantCase(
    'POST',
    '/api/v1/users/:id/consents',
    'privacy.consent_granted',
    async () => ({
      ...(await newUser()),
      payload: { purpose: 'analytics', granted: true, source: 'audit-test' },
    }),
  ),
  'PUT /api/v1/retention-policies': tenantCase(
    'PUT',
    '/api/v1/retention-policies',
    'privacy.retention_policy_set',
    async () => ({ payload: { policies: [{ dataClass: 'notifications', days: 3650 }] } }),
  ),
  'POST /api/v1/retention-policies/purge': tenantCase(
    'POST',
    '/api/v1/retention-policies/purge',
    'privacy.retention_purged',
    async () => ({}),
  ),
  'POST /api/v1/sso-connections': tenantCase(
    'POST',
    '/api/v1/sso-connections',
    'sso_connection.created',
    async () => ({
      payload: {
        protocol: 'oidc',
        name: `s${unique()}`,
        config: { issuer: 'https://idp.example.com', clientId: 'steward' },
        clientSecret: 'audit-sso-secret',
      },
    }),
  ),
  'PATCH /api/v1/sso-connections/:id': tenantCase(
    'PATCH',
    '/api/v1/sso-connections/:id',
    'sso_connection.updated',
    async () => ({ ...(await newSsoConnection()), payload: { enabled: false, clientSecret: 'rotated' } }),
  ),
  'DELETE /api/v1/sso-connections/:id': tenantCase(
    'DELETE',
    '/api/v1/sso-connections/:id',
    'sso_connection.deleted',
    newSsoConnection,
  ),
  'POST /api/v1/scim-tokens': tenantCase('POST', '/api/v1/scim-tokens', 'scim_token.created', async () => ({
    payload: { name: `scim ${unique()}` },
  })),
  'DELETE /api/v1/scim-tokens/:id': tenantCase(
    'DELETE',
    '/api/v1/scim-tokens/:id',
    'scim_token.revoked',
    async () => ({
      id: (await createScimToken(t.res, a.tenant.id, SYSTEM_ACTOR, { name: `scim ${unique()}` })).scimToken
        .id,
    }),
  ),
  'PUT /api/v1/scim-settings': tenantCase(
    'PUT',
    '/api/v1/scim-settings',
    'scim_settings.updated',
    async () => ({
      payload: { defaultRole: 'viewer', groupRoles: { Staff: 'member' } },
    }),
  ),
};

/** A new member of A, signed in. */
async function signedInUser() {
  const email = `s${unique()}@audit-a.test`;
  const { id } = await addUser(t, a.tenant.id, email, 'viewer');
  const { accessToken } = await loginAs(t, email, 'audit-a');
  const sessionId = (
    JSON.parse(Buffer.from(accessToken.split('.')[1]!, 'base64url').toString()) as { sid: string }
  ).sid;
  return { email, id, token: accessToken, sessionId };
}

async function withTotp(token: string) {
  const { secret } = expectStatus(
    await t.app.inject({ method: 'POST', url: '/api/v1/mfa/totp', headers: bearer(token) }),
    200,
  ).json() as { secret: string };
  const { backupCodes } = expectStatus(
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/mfa/totp/confirm',
      headers: bearer(token),
      payload: { code: await generate({ secret }) },
    }),
    200,
  ).json() as { backupCodes: string[] };
  return { secret, backupCodes };
}

async function withPasskey(token: string) {
  const auth = new SoftAuthenticator(t.config.baseUrl);
  const options = (
    await t.app.inject({ method: 'POST', url: '/api/v1/passkeys/options', headers: bearer(token) })
  ).json() as { challenge: string };
  const passkey = expectStatus(
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/passkeys',
      headers: bearer(token),
      payload: { response: auth.register(options) },
    }),
    201,
  ).json() as { id: string };
  return { auth, id: passkey.id };
}

/** A user-route case: a new signed-in member of A calls the route. */
function selfCase(
  action: string,
  run: (u: Awaited<ReturnType<typeof signedInUser>>, requestId: string) => Promise<LightMyRequestResponse>,
  target?: 'user' | 'created',
) {
  return async (requestId: string): Promise<Outcome> => {
    const u = await signedInUser();
    const response = await run(u, requestId);
    const targetId =
      target === 'user' ? u.id : target === 'created' ? (response.json() as { id: string }).id : undefined;
    return {
      response,
      tenantId: a.tenant.id,
      action,
      actorType: 'user',
      actorId: u.id,
      ...(targetId ? { targetId } : {}),
    };
  };
}

async function newSsoConnection() {
  return {
    id: (
      await createSsoConnection(t.res, a.tenant.id, SYSTEM_ACTOR, {
        protocol: 'oidc',
        name: `s${unique()}`,
        config: { issuer: 'https://idp.example.com', clientId: 'steward' },
      })
    ).id,
  };
}

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
  'POST /api/v1/auth/sso/exchange': async (requestId) => {
    // A finished single sign-on leaves a one-time code (as the callback would).
    const code = `ssx_${a.tenant.id.replaceAll('-', '')}_${randomToken(43)}`;
    await t.db.owner`
      insert into sso_exchange_codes (tenant_id, code_hash, user_id, connection_id, expires_at)
      values (${a.tenant.id}, ${sha256(code)}, ${ownerId}, gen_random_uuid(), now() + interval '1 minute')`;
    const response = await inject(requestId, {
      method: 'POST',
      url: '/api/v1/auth/sso/exchange',
      payload: { code },
    });
    return { response, tenantId: a.tenant.id, action: 'auth.login', actorType: 'user', actorId: ownerId };
  },
  'POST /api/v1/invitations/accept': async (requestId) => {
    const email = `accept${unique()}@audit-a.test`;
    const { invitation, token } = await createInvitation(t.res, a.tenant.id, SYSTEM_ACTOR, {
      email,
      role: 'viewer',
    });
    const response = await inject(requestId, {
      method: 'POST',
      url: '/api/v1/invitations/accept',
      payload: { token, password: TEST_PASSWORD },
    });
    const [user] = await t.db.owner<{ id: string }[]>`select id from users where email = ${email}`;
    return {
      response,
      tenantId: a.tenant.id,
      action: 'invitation.accepted',
      actorType: 'user',
      actorId: user?.id ?? 'none',
      targetId: invitation.id,
    };
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
  'POST /api/v1/auth/mfa': selfCase('auth.mfa', async (u, requestId) => {
    const { backupCodes } = await withTotp(u.token);
    const login = (
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { email: u.email, password: TEST_PASSWORD, tenant: 'audit-a' },
      })
    ).json() as { mfaToken: string };
    return inject(requestId, {
      method: 'POST',
      url: '/api/v1/auth/mfa',
      payload: { mfaToken: login.mfaToken, code: backupCodes[0] },
    });
  }),
  'POST /api/v1/auth/mfa/enrol/totp': async (requestId) => {
    // Tenant B requires MFA of auditors; a new auditor signs in and enrols.
    await t.app.inject({
      method: 'PATCH',
      url: '/api/v1/tenant',
      headers: bearer(b.token),
      payload: { settings: { mfaRequired: ['auditor'] } },
    });
    const email = `enrol${unique()}@audit-b.test`;
    const user = await addUser(t, b.tenant.id, email, 'auditor');
    const login = (
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { email, password: TEST_PASSWORD, tenant: 'audit-b' },
      })
    ).json() as { mfaToken: string };
    const response = await inject(requestId, {
      method: 'POST',
      url: '/api/v1/auth/mfa/enrol/totp',
      payload: { mfaToken: login.mfaToken },
    });
    return {
      response,
      tenantId: b.tenant.id,
      action: 'mfa.totp_enrolment_started',
      actorType: 'user',
      actorId: user.id,
      targetId: user.id,
    };
  },
  'POST /api/v1/auth/passkey/verify': selfCase('auth.login', async (u, requestId) => {
    const { auth } = await withPasskey(u.token);
    const options = (
      await t.app.inject({ method: 'POST', url: '/api/v1/auth/passkey/options', payload: {} })
    ).json();
    return inject(requestId, {
      method: 'POST',
      url: '/api/v1/auth/passkey/verify',
      payload: { response: auth.assert(options as { challenge: string }) },
    });
  }),
  'POST /api/v1/mfa/totp': selfCase(
    'mfa.totp_enrolment_started',
    (u, requestId) =>
      inject(requestId, { method: 'POST', url: '/api/v1/mfa/totp', headers: bearer(u.token) }),
    'user',
  ),
  'POST /api/v1/mfa/totp/confirm': selfCase(
    'mfa.totp_enabled',
    async (u, requestId) => {
      const { secret } = (
        await t.app.inject({ method: 'POST', url: '/api/v1/mfa/totp', headers: bearer(u.token) })
      ).json() as { secret: string };
      return inject(requestId, {
        method: 'POST',
        url: '/api/v1/mfa/totp/confirm',
        headers: bearer(u.token),
        payload: { code: await generate({ secret }) },
      });
    },
    'user',
  ),
  'POST /api/v1/mfa/totp/disable': selfCase(
    'mfa.totp_disabled',
    async (u, requestId) => {
      await withTotp(u.token);
      return inject(requestId, {
        method: 'POST',
        url: '/api/v1/mfa/totp/disable',
        headers: bearer(u.token),
        payload: { password: TEST_PASSWORD },
      });
    },
    'user',
  ),
  'POST /api/v1/mfa/backup-codes': selfCase(
    'mfa.backup_codes_replaced',
    async (u, requestId) => {
      await withTotp(u.token);
      return inject(requestId, {
        method: 'POST',
        url: '/api/v1/mfa/backup-codes',
        headers: bearer(u.token),
        payload: { password: TEST_PASSWORD },
      });
    },
    'user',
  ),
  'POST /api/v1/passkeys': selfCase(
    'passkey.registered',
    async (u, requestId) => {
      const auth = new SoftAuthenticator(t.config.baseUrl);
      const options = (
        await t.app.inject({ method: 'POST', url: '/api/v1/passkeys/options', headers: bearer(u.token) })
      ).json() as { challenge: string };
      return inject(requestId, {
        method: 'POST',
        url: '/api/v1/passkeys',
        headers: bearer(u.token),
        payload: { response: auth.register(options) },
      });
    },
    'created',
  ),
  'PATCH /api/v1/passkeys/:id': selfCase('passkey.renamed', async (u, requestId) => {
    const { id } = await withPasskey(u.token);
    return inject(requestId, {
      method: 'PATCH',
      url: `/api/v1/passkeys/${id}`,
      headers: bearer(u.token),
      payload: { name: 'Renamed' },
    });
  }),
  'DELETE /api/v1/passkeys/:id': selfCase('passkey.deleted', async (u, requestId) => {
    const { id } = await withPasskey(u.token);
    return inject(requestId, { method: 'DELETE', url: `/api/v1/passkeys/${id}`, headers: bearer(u.token) });
  }),
  'DELETE /api/v1/sessions/:id': selfCase('session.revoked', async (u, requestId) => {
    const other = await loginAs(t, u.email, 'audit-a');
    const sid = (
      JSON.parse(Buffer.from(other.accessToken.split('.')[1]!, 'base64url').toString()) as { sid: string }
    ).sid;
    return inject(requestId, { method: 'DELETE', url: `/api/v1/sessions/${sid}`, headers: bearer(u.token) });
  }),
  'POST /api/v1/me/password': selfCase(
    'user.password_changed',
    (u, requestId) =>
      inject(requestId, {
        method: 'POST',
        url: '/api/v1/me/password',
        headers: bearer(u.token),
        payload: { currentPassword: TEST_PASSWORD, newPassword: 'another long password' },
      }),
    'user',
  ),
  'POST /api/v1/tenant/erase': async (requestId) => {
    const slug = `audit-erase-${unique()}`;
    const fx = await createTenantFixture(t, slug);
    // The owner also belongs to tenant B, so the erasure does not anonymise them (their entries keep their IP).
    const owner = await addUser(t, b.tenant.id, fx.ownerEmail, 'viewer');
    const response = await inject(requestId, {
      method: 'POST',
      url: '/api/v1/tenant/erase',
      headers: bearer(fx.token),
      payload: { confirm: slug },
    });
    return {
      response,
      tenantId: fx.tenant.id,
      action: 'privacy.tenant_erased',
      actorType: 'user',
      actorId: owner.id,
      targetId: fx.tenant.id,
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
  'POST /api/v1/push/subscriptions': async (requestId) => {
    const response = await inject(requestId, {
      method: 'POST',
      url: '/api/v1/push/subscriptions',
      headers: bearer(a.token),
      payload: { endpoint: `https://push.invalid/${unique()}`, keys: { p256dh: 'BPk', auth: 'c2VjcmV0' } },
    });
    const id = response.statusCode === 201 ? (response.json() as { id: string }).id : undefined;
    return {
      response,
      tenantId: a.tenant.id,
      action: 'push.subscribed',
      actorType: 'user',
      actorId: ownerId,
      ...(id ? { targetId: id } : {}),
    };
  },
  'DELETE /api/v1/push/subscriptions': async (requestId) => {
    const endpoint = `https://push.invalid/${unique()}`;
    const created = await t.app.inject({
      method: 'POST',
      url: '/api/v1/push/subscriptions',
      headers: bearer(a.token),
      payload: { endpoint, keys: { p256dh: 'BPk', auth: 'c2VjcmV0' } },
    });
    const { id } = created.json() as { id: string };
    const response = await inject(requestId, {
      method: 'DELETE',
      url: '/api/v1/push/subscriptions',
      headers: bearer(a.token),
      payload: { endpoint },
    });
    return {
      response,
      tenantId: a.tenant.id,
      action: 'push.unsubscribed',
      actorType: 'user',
      actorId: ownerId,
      targetId: id,
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
