import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { toolsForTenant } from '@steward/core/mcp/mcp-service';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpMcp, type HttpMcpServer } from './testing/mcp-http.ts';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from './testing/test-app.ts';
import { startWorker, type WorkerHandle } from './worker/worker-runner.ts';

const STDIO_SCRIPT = fileURLToPath(new URL('./testing/mcp-invoice-server.mjs', import.meta.url));

let t: TestApp;
let a: TenantFixture;
let worker: WorkerHandle;
let mcp: HttpMcpServer;
let tmp: string;

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'mcp');
  mcp = await startHttpMcp();
  tmp = await mkdtemp(path.join(tmpdir(), 'steward-mcp-'));
  worker = await startWorker(t.res, {
    appUrl: t.runtime.appUrl,
    concurrency: 4,
    pollIntervalMs: 100,
    log: (l, m) => process.env.SHOW_LOGS && console.log(l, m),
  });
});
afterAll(async () => {
  await worker?.stop();
  await mcp?.close();
  await t?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const api = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown, token = a.token) =>
  t.app.inject({
    method,
    url: `/api/v1${url}`,
    headers: bearer(token),
    ...(payload === undefined ? {} : { payload: payload as object }),
  });

async function waitFor(taskId: string, ok: (task: TaskJson) => boolean, ms = 20_000): Promise<TaskJson> {
  const deadline = Date.now() + ms;
  for (;;) {
    const task = expectStatus(await api('GET', `/tasks/${taskId}`), 200).json() as TaskJson;
    if (ok(task)) return task;
    if (Date.now() > deadline) throw new Error(`task did not get there: ${JSON.stringify(task)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface TaskJson {
  status: string;
  needsActionReason?: string | null;
  steps: { id: string; key: string; tool: string; status: string; needsApproval: boolean; error?: unknown }[];
  approvals: {
    id: string;
    stepId: string;
    status: string;
    action: unknown;
    preview: { summary: string }[];
  }[];
}

async function setSettings(settings: Record<string, unknown>) {
  expectStatus(await api('PATCH', '/tenant', { settings }), 200);
}

describe('MCP servers', () => {
  let serverId = '';

  it('rejects bad registrations with clear 4xx', async () => {
    expectStatus(await api('POST', '/mcp-servers', { name: 'x', transport: 'http' }), 400);
    expectStatus(await api('POST', '/mcp-servers', { name: 'x', transport: 'http', command: ['node'] }), 400);
    expectStatus(
      await api('POST', '/mcp-servers', {
        name: 'Bad Name',
        transport: 'http',
        url: 'https://mcp.example.com/',
      }),
      400,
    );
    expectStatus(
      await api('POST', '/mcp-servers', {
        name: 'x',
        transport: 'http',
        url: 'https://u:p@mcp.example.com/',
      }),
      400,
    );
    expectStatus(
      await api('POST', '/mcp-servers', {
        name: 'x',
        transport: 'http',
        url: 'https://mcp.example.com/',
        riskOverrides: { lookup: 'none' },
      }),
      400,
    );
    expectStatus(
      await api('POST', '/mcp-servers', {
        name: 'x',
        transport: 'http',
        url: 'https://mcp.example.com/',
        secret: { 'bad header\n': 'v' },
      }),
      400,
    );
    expectStatus(
      await api('POST', '/mcp-servers', {
        name: 'x',
        transport: 'http',
        url: 'https://mcp.example.com/',
        secret: { Host: 'internal.example' },
      }),
      400,
    );
  });

  it('registers an HTTP server with a write-only secret; the SSRF guard applies to it', async () => {
    const created = expectStatus(
      await api('POST', '/mcp-servers', {
        name: 'inv',
        transport: 'http',
        url: mcp.url,
        secret: { authorization: 'Bearer mcp-secret-123' },
        allowedTools: ['lookup_invoice', 'pay_invoice'],
      }),
      201,
    );
    expect(created.body).not.toContain('mcp-secret-123');
    const view = created.json();
    serverId = view.id;
    expect(view).toMatchObject({ name: 'inv', transport: 'http', hasSecret: true, enabled: true });
    expectStatus(await api('POST', '/mcp-servers', { name: 'inv', transport: 'http', url: mcp.url }), 409);

    // 127.0.0.1 is a loopback address: blocked until the tenant allows private networks.
    const blocked = expectStatus(await api('GET', `/mcp-servers/${serverId}/tools`), 503);
    expect(blocked.json().error.message).toContain('loopback');
    expect(mcp.headers).toHaveLength(0);

    await setSettings({ network: { allowPrivate: true } });
    const tools = expectStatus(await api('GET', `/mcp-servers/${serverId}/tools`), 200).json().items;
    expect(tools.map((x: { name: string }) => x.name)).toEqual([
      'lookup_invoice',
      'pay_invoice',
      'delete_everything',
    ]);
    const byName = Object.fromEntries(tools.map((x: { name: string }) => [x.name, x]));
    // Read-only annotations lower the default (high) to medium, never further.
    expect(byName.lookup_invoice).toMatchObject({
      risk: 'medium',
      allowed: true,
      stewardName: 'mcp.inv.lookup_invoice',
    });
    expect(byName.pay_invoice).toMatchObject({ risk: 'high', allowed: true });
    expect(byName.delete_everything).toMatchObject({ risk: 'medium', allowed: false });
    expect(mcp.headers.at(-1)?.authorization).toBe('Bearer mcp-secret-123');

    const listed = expectStatus(await api('GET', '/mcp-servers'), 200);
    expect(listed.body).not.toContain('mcp-secret-123');
    expect(listed.json().items).toHaveLength(1);
    const one = expectStatus(await api('GET', `/mcp-servers/${serverId}`), 200).json();
    expect(one.catalogRefreshedAt).not.toBeNull();
  });

  it('only allow-listed tools are plannable', async () => {
    const tools = await t.res.db.withTenant(a.tenant.id, async (tx) => {
      const [row] = await tx<
        { settings: Record<string, unknown> }[]
      >`select settings from tenants where id = ${a.tenant.id}`;
      return toolsForTenant(t.res, tx, a.tenant.id, row!.settings);
    });
    expect(tools.has('mcp.inv.lookup_invoice')).toBe(true);
    expect(tools.has('mcp.inv.pay_invoice')).toBe(true);
    expect(tools.has('mcp.inv.delete_everything')).toBe(false);
    expect(tools.has('email.send')).toBe(true);
    expect(tools.get('mcp.inv.pay_invoice')!.preview({ number: 'INV-1', amount: 5 })[0]!.summary).toBe(
      'call pay_invoice on inv with {"number":"INV-1","amount":5}',
    );

    const rejected = expectStatus(
      await api('POST', '/playbooks', {
        name: 'Disallowed',
        when: { subject: { contains: 'wipe' } },
        steps: [{ key: 'wipe', tool: 'mcp.inv.delete_everything', args: {} }],
      }),
      400,
    );
    expect(rejected.json().error.message).toContain('mcp.inv.delete_everything');
  });

  it('a playbook step calls MCP tools end to end, each after the approval the policy asks for', async () => {
    expectStatus(
      await api('POST', '/playbooks', {
        name: 'Pay invoices',
        when: { subject: { contains: 'MCP invoice' } },
        steps: [
          { key: 'lookup', tool: 'mcp.inv.lookup_invoice', args: { number: 'INV-42' } },
          {
            key: 'pay',
            tool: 'mcp.inv.pay_invoice',
            args: { number: 'INV-42', amount: 250 },
            dependsOn: ['lookup'],
          },
        ],
      }),
      201,
    );
    const intake = expectStatus(
      await api('POST', '/events', { source: 'api', type: 'note', subject: 'MCP invoice INV-42' }, a.apiKey),
      202,
    ).json();
    let task = await waitFor(intake.taskId, (x) => x.status === 'pending_approval');
    const lookup = task.steps.find((s) => s.key === 'lookup')!;
    const pay = task.steps.find((s) => s.key === 'pay')!;
    expect(lookup.needsApproval).toBe(true);
    expect(pay.needsApproval).toBe(true);
    expect(mcp.calls).toHaveLength(0);
    const lookupApproval = task.approvals.find((x) => x.stepId === lookup.id)!;
    expect(lookupApproval.action).toEqual({ tool: 'mcp.inv.lookup_invoice', args: { number: 'INV-42' } });
    expect(lookupApproval.preview[0]!.summary).toBe('call lookup_invoice on inv with {"number":"INV-42"}');

    expectStatus(await api('POST', `/approvals/${lookupApproval.id}/decision`, { decision: 'approve' }), 200);
    task = await waitFor(
      intake.taskId,
      (x) => x.steps.find((s) => s.key === 'lookup')!.status === 'succeeded',
    );
    expect(mcp.calls).toHaveLength(1);
    expect(mcp.calls[0]).toMatchObject({
      tool: 'lookup_invoice',
      args: { number: 'INV-42' },
      meta: { 'steward/idempotency-key': `stw-${lookup.id}` },
    });
    expect(task.steps.find((s) => s.key === 'pay')!.status).not.toBe('succeeded');

    const payApproval = task.approvals.find((x) => x.stepId === pay.id)!;
    expectStatus(await api('POST', `/approvals/${payApproval.id}/decision`, { decision: 'approve' }), 200);
    task = await waitFor(intake.taskId, (x) => x.status === 'done' || x.status === 'failed');
    expect(task.status).toBe('done');
    expect(mcp.calls.map((c) => c.tool)).toEqual(['lookup_invoice', 'pay_invoice']);
    expect(mcp.calls[1]!.meta['steward/idempotency-key']).toBe(`stw-${pay.id}`);
  });

  it('a tool removed from the allow-list after planning is not executed', async () => {
    const intake = expectStatus(
      await api('POST', '/events', { source: 'api', type: 'note', subject: 'MCP invoice INV-7' }, a.apiKey),
      202,
    ).json();
    const task = await waitFor(intake.taskId, (x) => x.status === 'pending_approval');
    const lookup = task.steps.find((s) => s.key === 'lookup')!;
    const before = mcp.calls.length;
    expectStatus(await api('PATCH', `/mcp-servers/${serverId}`, { allowedTools: ['pay_invoice'] }), 200);
    const approval = task.approvals.find((x) => x.stepId === lookup.id)!;
    expectStatus(await api('POST', `/approvals/${approval.id}/decision`, { decision: 'approve' }), 200);
    const after = await waitFor(intake.taskId, (x) =>
      ['dead', 'failed'].includes(x.steps.find((s) => s.key === 'lookup')!.status),
    );
    expect(JSON.stringify(after.steps.find((s) => s.key === 'lookup')!.error)).toContain('TOOL_UNAVAILABLE');
    expect(mcp.calls.length).toBe(before);
    expectStatus(
      await api('PATCH', `/mcp-servers/${serverId}`, { allowedTools: ['lookup_invoice', 'pay_invoice'] }),
      200,
    );
  });

  it('mutations are audited without the secret; delete removes the tools', async () => {
    expectStatus(
      await api('PATCH', `/mcp-servers/${serverId}`, { secret: { authorization: 'Bearer rotated-456' } }),
      200,
    );
    const audit = expectStatus(await api('GET', '/audit?limit=200'), 200);
    expect(audit.body).not.toContain('rotated-456');
    expect(audit.body).not.toContain('mcp-secret-123');
    const actions = audit
      .json()
      .items.filter((e: { targetId: string }) => e.targetId === serverId)
      .map((e: { action: string }) => e.action);
    expect(actions).toEqual(expect.arrayContaining(['mcp_server.created', 'mcp_server.updated']));
  });

  it('stdio servers need the installation and the tenant to allow them', async () => {
    const log = path.join(tmp, 'calls.jsonl');
    const body = {
      name: 'local',
      transport: 'stdio',
      command: [process.execPath, STDIO_SCRIPT],
      secret: { MCP_CALL_LOG: log },
      allowedTools: ['lookup_invoice'],
      riskOverrides: { lookup_invoice: 'high' },
    };
    const previous = t.res.mcp;
    try {
      t.res.mcp = { allowStdio: false };
      expect(expectStatus(await api('POST', '/mcp-servers', body), 403).json().error.message).toContain(
        'STEWARD_MCP_STDIO',
      );
      t.res.mcp = { allowStdio: true };
      expectStatus(await api('POST', '/mcp-servers', body), 403);
      await setSettings({ mcp: { allowStdio: true } });
      const created = expectStatus(await api('POST', '/mcp-servers', body), 201).json();
      const tools = expectStatus(await api('GET', `/mcp-servers/${created.id}/tools`), 200).json().items;
      expect(tools.find((x: { name: string }) => x.name === 'lookup_invoice')).toMatchObject({
        risk: 'high',
        allowed: true,
        stewardName: 'mcp.local.lookup_invoice',
      });

      expectStatus(
        await api('POST', '/playbooks', {
          name: 'Local lookup',
          when: { subject: { contains: 'stdio lookup' } },
          steps: [{ key: 'look', tool: 'mcp.local.lookup_invoice', args: { number: 'INV-9' } }],
        }),
        201,
      );
      const intake = expectStatus(
        await api(
          'POST',
          '/events',
          { source: 'api', type: 'note', subject: 'stdio lookup please' },
          a.apiKey,
        ),
        202,
      ).json();
      let task = await waitFor(intake.taskId, (x) => x.status === 'pending_approval');
      expectStatus(
        await api('POST', `/approvals/${task.approvals[0]!.id}/decision`, { decision: 'approve' }),
        200,
      );
      task = await waitFor(intake.taskId, (x) => x.status === 'done' || x.status === 'failed');
      expect(task.status).toBe('done');
      const calls = (await readFile(log, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(calls).toEqual([
        {
          tool: 'lookup_invoice',
          args: { number: 'INV-9' },
          meta: { 'steward/idempotency-key': `stw-${task.steps[0]!.id}` },
        },
      ]);

      // With the installation switch off again, the stdio tools disappear.
      t.res.mcp = { allowStdio: false };
      const tenantTools = await t.res.db.withTenant(a.tenant.id, async (tx) => {
        const [row] = await tx<
          { settings: Record<string, unknown> }[]
        >`select settings from tenants where id = ${a.tenant.id}`;
        return toolsForTenant(t.res, tx, a.tenant.id, row!.settings);
      });
      expect(tenantTools.has('mcp.local.lookup_invoice')).toBe(false);
      expectStatus(await api('DELETE', `/mcp-servers/${created.id}`), 204);
      expectStatus(await api('GET', `/mcp-servers/${created.id}`), 404);
    } finally {
      t.res.mcp = previous;
    }
  });
});
