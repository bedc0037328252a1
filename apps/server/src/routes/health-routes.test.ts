import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vaultFor } from '@steward/core/connections/connection-service';
import { createMcpServer, listServerTools } from '@steward/core/mcp/mcp-service';
import { emailTool } from '@steward/core/tools/builtin/email-tool';
import { httpRequestTool } from '@steward/core/tools/builtin/http-request-tool';
import type { ToolContext } from '@steward/core/tools/tool';
import { createDestination } from '@steward/core/siem/destination-service';
import { createConnection } from '@steward/core/connections/connection-service';
import { createRole } from '@steward/core/identity/role-service';
import { SYSTEM_ACTOR } from '@steward/core/resources';
import { tenantHealth, type TenantHealth } from '@steward/core/watchers/health-service';
import {
  addUser,
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  loginAs,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

let t: TestApp;
let a: TenantFixture;
let b: TenantFixture;

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'health-a');
  b = await createTenantFixture(t, 'health-b');
});
afterAll(() => t?.close());

/** The client's view of the answer: the server's own declarations, no copy. */
type Health = TenantHealth;

const health = async (token: string) =>
  expectStatus(await t.app.inject({ url: '/api/v1/health', headers: bearer(token) }), 200).json() as Health;

describe('GET /api/v1/health', () => {
  it('shows the watcher leases as recorded, without the holder for tenant users', async () => {
    await t.db.owner`delete from leases where name in ('watch:folder', 'scheduler', 'watch:imap')`;
    await t.db.owner`
      insert into leases (name, holder, expires_at, renewed_at) values
        ('scheduler', 'host-1:abc:42:ffff', now() + interval '30 seconds', now() - interval '2 seconds'),
        ('watch:folder', 'host-2:abc:43:eeee', now() - interval '1 minute', now() - interval '2 minutes')`;
    const h = await health(a.token);
    const byName = Object.fromEntries(h.watchers.map((w) => [w.name, w]));
    expect(byName['scheduler']).toMatchObject({ state: 'held', holder: null });
    expect(byName['watch:folder']!.state).toBe('expired');
    expect(byName['watch:imap']).toMatchObject({ state: 'never', renewedAt: null });
    expect(Date.now() - new Date(byName['scheduler']!.renewedAt!).getTime()).toBeGreaterThan(1000);
    // Platform administrators see which process holds each.
    const admin = await tenantHealth(t.res, a.tenant.id, { showHolders: true });
    expect(admin.watchers.find((w) => w.name === 'scheduler')!.holder).toBe('host-1:abc:42:ffff');
  });

  it("shows the tenant's own mailboxes and SIEM lag and failures, never another tenant's", async () => {
    const dest = await createDestination(t.res, a.tenant.id, SYSTEM_ACTOR, {
      name: 'siem-a',
      kind: 'https',
      config: { url: 'https://siem.example.com/ingest' },
    });
    await createDestination(t.res, b.tenant.id, SYSTEM_ACTOR, {
      name: 'siem-b',
      kind: 'https',
      config: { url: 'https://siem.example.com/ingest' },
    });
    const box = await createConnection(t.res, a.tenant.id, SYSTEM_ACTOR, {
      kind: 'imap',
      name: 'inbox-a',
      config: { host: 'imap.example.com', username: 'robot' },
      secret: 'imap-password',
    });
    let h = await health(a.token);
    expect(h.siem.map((s) => s.name)).toEqual(['siem-a']);
    const [head] = await t.db.owner<
      { seq: string }[]
    >`select seq from audit_heads where tenant_id = ${a.tenant.id}`;
    expect(h.siem[0]).toMatchObject({
      id: dest.id,
      lag: Number(head!.seq),
      failing: false,
      lastErrorAt: null,
    });
    expect(h.mailboxes).toEqual([{ id: box.id, name: 'inbox-a', lastProgressAt: null }]);

    await t.db.owner`
      insert into siem_cursors (tenant_id, destination, last_seq, attempts, last_error, last_error_at)
      values (${a.tenant.id}, ${'tenant:' + dest.id}, 1, 3, 'connection refused', now())`;
    await t.db.owner`
      insert into imap_state (tenant_id, connection_id, uidvalidity, last_uid) values (${a.tenant.id}, ${box.id}, 1, 7)`;
    h = await health(a.token);
    expect(h.siem[0]!.failing).toBe(true);
    expect(h.siem[0]!.lastErrorAt).not.toBeNull();
    expect(h.siem[0]!.lag).toBeGreaterThanOrEqual(Number(head!.seq) - 1);
    expect(h.mailboxes[0]!.lastProgressAt).not.toBeNull();
    expect(JSON.stringify(h)).not.toContain('connection refused');

    const other = await health(b.token);
    expect(other.siem.map((s) => s.name)).toEqual(['siem-b']);
    expect(other.mailboxes).toEqual([]);
  });

  it('needs tasks:read', async () => {
    await createRole(t.res, a.tenant.id, SYSTEM_ACTOR, new Set(['tenant:read']), {
      name: 'outsider',
      permissions: ['tenant:read'],
    });
    await addUser(t, a.tenant.id, 'outsider@health-a.test', 'outsider');
    const outsider = await loginAs(t, 'outsider@health-a.test', 'health-a');
    expectStatus(await t.app.inject({ url: '/api/v1/health', headers: bearer(outsider.accessToken) }), 403);
    expectStatus(await t.app.inject({ url: '/api/v1/health' }), 401);
  });

  it('records when tools last used each connection and MCP server, and why one failed, without secrets', async () => {
    const CANARY = 'health-canary-5e1f-secret';
    const hits: string[] = [];
    const server: Server = createServer((req, res) => {
      hits.push(String(req.headers.authorization));
      const status = req.url === '/ok' ? 200 : req.url === '/denied' ? 401 : 404;
      res.writeHead(status, { 'content-type': 'text/plain' }).end(`echo ${req.headers.authorization}`);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const api = await createConnection(t.res, a.tenant.id, SYSTEM_ACTOR, {
        kind: 'http',
        name: 'api-a',
        config: { baseUrl: `${base}/`, allowPrivateNetwork: true },
        secret: CANARY,
      });
      const mail = await createConnection(t.res, a.tenant.id, SYSTEM_ACTOR, {
        kind: 'smtp',
        name: 'mail-a',
        // Nothing listens on port 9 of the loopback: the send fails to connect.
        config: {
          host: '127.0.0.1',
          port: 9,
          from: 'robot@example.com',
          username: 'robot',
          allowPrivateNetwork: true,
        },
        secret: CANARY,
      });
      const mcp = await createMcpServer(t.res, a.tenant.id, SYSTEM_ACTOR, {
        name: 'tools-a',
        transport: 'http',
        url: 'http://127.0.0.1:9/mcp',
        secret: { 'x-api-key': CANARY },
      });
      const byId = async (token = a.token) =>
        Object.fromEntries((await health(token)).connections.map((c) => [c.id, c]));

      let h = await byId();
      for (const id of [api.id, mail.id, mcp.id])
        expect(h[id]).toMatchObject({
          state: 'never',
          lastSuccessAt: null,
          lastErrorAt: null,
          lastError: null,
        });
      expect(h[mcp.id]).toMatchObject({ kind: 'mcp', name: 'tools-a', enabled: true });

      const ctx: ToolContext = {
        tenantId: a.tenant.id,
        tenantSlug: a.tenant.slug,
        taskId: '00000000-0000-4000-8000-000000000000',
        withTenant: (fn) => t.res.db.withTenant(a.tenant.id, fn),
        idempotencyKey: 'health-test',
        signal: new AbortController().signal,
      };
      const http = httpRequestTool({ vault: vaultFor(t.res.master) });
      const call = (path: string) =>
        http.execute(ctx, { method: 'GET', url: `${base}${path}`, connection: 'api-a' });

      await expect(call('/denied')).rejects.toMatchObject({ code: 'HTTP_STATUS' });
      h = await byId();
      expect(h[api.id]).toMatchObject({ state: 'failing', lastSuccessAt: null });
      expect(h[api.id]!.lastError).toMatch(/^HTTP_STATUS: 127\.0\.0\.1:\d+ answered 401$/);
      const failedAt = h[api.id]!.lastErrorAt;

      await call('/ok');
      h = await byId();
      expect(h[api.id]).toMatchObject({ state: 'ok', lastErrorAt: failedAt });
      const okAt = h[api.id]!.lastSuccessAt!;
      expect(new Date(okAt).getTime()).toBeGreaterThanOrEqual(new Date(failedAt!).getTime());

      // A 404 is about the request, not the connection: still ok, the failure is not newer.
      await expect(call('/missing')).rejects.toMatchObject({ code: 'HTTP_STATUS' });
      h = await byId();
      expect(h[api.id]!.state).toBe('ok');
      expect(h[api.id]!.lastErrorAt).toBe(failedAt);
      expect(hits).toContain(CANARY);

      const email = emailTool({ vault: vaultFor(t.res.master), timeoutSeconds: 5 });
      await expect(
        email.execute(ctx, { to: 'someone@example.com', subject: 'hi', text: 'hello', connection: 'mail-a' }),
      ).rejects.toMatchObject({ name: 'ToolError' });
      h = await byId();
      expect(h[mail.id]).toMatchObject({ state: 'failing', lastSuccessAt: null });
      expect(h[mail.id]!.lastError).toMatch(/^[A-Z_]+: /);

      // Listing an MCP server's tools uses it too (here it is unreachable).
      await expect(listServerTools(t.res, a.tenant.id, mcp.id)).rejects.toBeTruthy();
      h = await byId();
      expect(h[mcp.id]!.state).toBe('failing');
      expect(h[mcp.id]!.lastError).toMatch(/^[A-Z_]+: /);

      // The connection and MCP server views carry the same health as GET /health.
      const get = async (url: string) =>
        expectStatus(await t.app.inject({ url, headers: bearer(a.token) }), 200).json() as {
          health?: object;
          items?: { id: string; health: object }[];
        };
      const healthOf = ({ state, lastSuccessAt, lastErrorAt, lastError }: Health['connections'][number]) => ({
        state,
        lastSuccessAt,
        lastErrorAt,
        lastError,
      });
      expect((await get(`/api/v1/connections/${api.id}`)).health).toEqual(healthOf(h[api.id]!));
      expect((await get(`/api/v1/mcp-servers/${mcp.id}`)).health).toEqual(healthOf(h[mcp.id]!));
      const listed = (await get('/api/v1/connections?limit=50')).items!;
      expect(listed.find((c) => c.id === mail.id)!.health).toEqual(healthOf(h[mail.id]!));

      const body = JSON.stringify(await health(a.token));
      expect(body).not.toContain(CANARY);
      expect(JSON.stringify(listed)).not.toContain(CANARY);
      const rows = await t.db.owner<{ last_error: string | null }[]>`
        select last_error from connections where tenant_id = ${a.tenant.id}
        union all select last_error from mcp_servers where tenant_id = ${a.tenant.id}`;
      for (const r of rows) expect(r.last_error ?? '').not.toContain(CANARY);

      // Tenant B sees none of it.
      const other = await byId(b.token);
      for (const id of [api.id, mail.id, mcp.id]) expect(other[id]).toBeUndefined();
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
