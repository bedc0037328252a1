import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { McpClientPool } from '@steward/core/mcp/mcp-pool';
import {
  createMcpServer,
  deleteMcpServer,
  listServerTools,
  toolsForTenant,
  updateMcpServer,
} from '@steward/core/mcp/mcp-service';
import { SYSTEM_ACTOR } from '@steward/core/resources';
import { updateTenant } from '@steward/core/tenants/tenant-service';
import { startHttpMcp, type HttpMcpServer } from './testing/mcp-http.ts';
import { invoiceServer, type RecordedMcpCall } from './testing/mcp-invoice-server.mjs';
import { createTenantFixture, createTestApp, type TenantFixture, type TestApp } from './testing/test-app.ts';

/**
 * The MCP connection pool with a real stdio server (a child process per connection) and a real HTTP
 * server: reuse across calls and listings, closing on a configuration change, deletion, idle
 * timeout and shutdown, the cap, and reconnection after the process died.
 */

const STDIO_SCRIPT = fileURLToPath(new URL('./testing/mcp-invoice-server.mjs', import.meta.url));

let t: TestApp;
let a: TenantFixture;
let tmp: string;
let http: HttpMcpServer;
let pool: McpClientPool;

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'mcp-pool');
  tmp = await mkdtemp(path.join(tmpdir(), 'steward-mcp-pool-'));
  http = await startHttpMcp();
  t.res.mcp = { allowStdio: true, treatAsPublic: new Set(['127.0.0.1']) };
  await updateTenant(t.res, a.tenant.id, SYSTEM_ACTOR, { settings: { mcp: { allowStdio: true } } });
});
afterAll(async () => {
  await pool?.closeAll();
  await http?.close();
  await t?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** A fresh pool for each test (the runtime's own is replaced). */
function usePool(opts: { idleMs?: number; max?: number } = {}): McpClientPool {
  pool = new McpClientPool(opts);
  t.res.mcpClients = pool;
  return pool;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The process ids the stdio server wrote at start, in order. */
async function started(pidLog: string): Promise<number[]> {
  const text = await readFile(pidLog, 'utf8').catch(() => '');
  return text.trim().split('\n').filter(Boolean).map(Number);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(check: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

async function stdioServer(name: string) {
  const pidLog = path.join(tmp, `${name}-${randomUUID()}.pids`);
  const server = await createMcpServer(t.res, a.tenant.id, SYSTEM_ACTOR, {
    name,
    transport: 'stdio',
    command: [process.execPath, STDIO_SCRIPT],
    secret: { MCP_PID_LOG: pidLog },
    allowedTools: ['lookup_invoice'],
  });
  // The tool snapshot planning and execution use (this opens the pooled connection).
  await listServerTools(t.res, a.tenant.id, server.id);
  return { id: server.id, pidLog };
}

/** Run the server's lookup tool as the executor would. */
async function lookup(server: string, n: number): Promise<string> {
  const tools = await t.res.db.withTenant(a.tenant.id, (tx) =>
    toolsForTenant(t.res, tx, a.tenant.id, { mcp: { allowStdio: true } }),
  );
  const tool = tools.get(`mcp.${server}.lookup_invoice`);
  if (!tool) throw new Error(`no tool mcp.${server}.lookup_invoice`);
  const result = await tool.execute(
    {
      tenantId: a.tenant.id,
      tenantSlug: 'mcp-pool',
      taskId: randomUUID(),
      withTenant: (fn) => t.res.db.withTenant(a.tenant.id, fn),
      idempotencyKey: `k-${server}-${n}`,
      signal: new AbortController().signal,
    },
    { number: `INV-${n}` },
  );
  return String(result.text);
}

/** The invoice server over HTTP with sessions, which it can forget (as after a restart). */
async function sessionfulMcp() {
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const calls: RecordedMcpCall[] = [];
  const server: Server = createServer((req, res) => {
    const id = req.headers['mcp-session-id'];
    if (typeof id === 'string') {
      const known = sessions.get(id);
      if (!known) return void res.writeHead(404).end('unknown session');
      return void known.handleRequest(req, res);
    }
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableJsonResponse: true,
      onsessioninitialized: (sid) => void sessions.set(sid, transport),
    });
    void invoiceServer((c) => calls.push(c))
      .connect(transport)
      .then(() => transport.handleRequest(req, res));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    calls,
    sessions,
    forget: () => sessions.clear(),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('MCP connection pool', () => {
  it('a listing and two tool calls share one stdio process; a configuration change closes it', async () => {
    const p = usePool();
    const s = await stdioServer('pooled');
    expect(await lookup('pooled', 1)).toContain('Invoice INV-1');
    expect(await lookup('pooled', 2)).toContain('Invoice INV-2');
    const pids = await started(s.pidLog);
    expect(pids).toHaveLength(1);
    expect(alive(pids[0]!)).toBe(true);
    expect(p.opened).toBe(1);
    expect(p.size).toBe(1);

    // Any change to the server closes its connection (here: a new secret, so a new environment).
    await updateMcpServer(t.res, a.tenant.id, SYSTEM_ACTOR, s.id, {
      secret: { MCP_PID_LOG: s.pidLog, EXTRA: 'x' },
    });
    await until(() => !alive(pids[0]!), 'the old process to exit');
    expect(p.size).toBe(0);
    // The next call starts a process with the new configuration, and keeps it.
    await lookup('pooled', 3);
    await lookup('pooled', 4);
    const after = await started(s.pidLog);
    expect(after).toHaveLength(2);
    expect(alive(after[1]!)).toBe(true);

    // Deleting the server closes it too.
    await deleteMcpServer(t.res, a.tenant.id, SYSTEM_ACTOR, s.id);
    await until(() => !alive(after[1]!), 'the process of the deleted server to exit');
    expect(p.size).toBe(0);
  });

  it('a change made elsewhere (another process) is noticed by its fingerprint at the next use', async () => {
    const p = usePool();
    const s = await stdioServer('elsewhere');
    await lookup('elsewhere', 1);
    const [first] = await started(s.pidLog);
    // Changed directly in the database, as another Steward process would: no closeServer here.
    await t.db.owner`update mcp_servers set command = ${[process.execPath, '--no-warnings', STDIO_SCRIPT]}
                     where id = ${s.id}`;
    await lookup('elsewhere', 2);
    const pids = await started(s.pidLog);
    expect(pids).toHaveLength(2);
    await until(() => !alive(first!), 'the process of the old configuration to exit');
    expect(alive(pids[1]!)).toBe(true);
    expect(p.size).toBe(1);
    await deleteMcpServer(t.res, a.tenant.id, SYSTEM_ACTOR, s.id);
  });

  it('reconnects after the server process died', async () => {
    const p = usePool();
    const s = await stdioServer('crashy');
    await lookup('crashy', 1);
    const [first] = await started(s.pidLog);
    process.kill(first!, 'SIGKILL');
    await until(() => p.size === 0, 'the dead connection to be dropped');
    expect(await lookup('crashy', 2)).toContain('INV-2');
    const pids = await started(s.pidLog);
    expect(pids).toHaveLength(2);
    expect(alive(pids[1]!)).toBe(true);
    await deleteMcpServer(t.res, a.tenant.id, SYSTEM_ACTOR, s.id);
  });

  it('keeps at most `max` connections open, and closes one after its idle time', async () => {
    const p = usePool({ max: 1 });
    const one = await stdioServer('cap-one');
    const [pidOne] = await started(one.pidLog);
    // A second server with the cap at one: the idle first connection makes room.
    const two = await stdioServer('cap-two');
    await until(() => !alive(pidOne!), 'the least recently used process to be closed');
    const [pidTwo] = await started(two.pidLog);
    expect(alive(pidTwo!)).toBe(true);
    expect(p.size).toBe(1);
    await lookup('cap-one', 1);
    await until(() => !alive(pidTwo!), 'the other process to make room');
    expect(await started(one.pidLog)).toHaveLength(2);
    expect(p.size).toBe(1);

    // Unused for longer than idleMs: closed.
    const idle = usePool({ idleMs: 300 });
    await lookup('cap-two', 1);
    const pids = await started(two.pidLog);
    expect(pids).toHaveLength(2);
    expect(idle.size).toBe(1);
    await until(() => !alive(pids[1]!), 'the idle process to exit');
    expect(idle.size).toBe(0);
    await p.closeAll();
    await deleteMcpServer(t.res, a.tenant.id, SYSTEM_ACTOR, one.id);
    await deleteMcpServer(t.res, a.tenant.id, SYSTEM_ACTOR, two.id);
  });

  it('reuses an HTTP session across calls; closeAll (shutdown) closes everything', async () => {
    const p = usePool();
    const server = await createMcpServer(t.res, a.tenant.id, SYSTEM_ACTOR, {
      name: 'web',
      transport: 'http',
      url: http.url,
      allowedTools: ['lookup_invoice'],
    });
    const before = http.headers.length;
    await listServerTools(t.res, a.tenant.id, server.id);
    expect(p.opened).toBe(1);
    await lookup('web', 1);
    await lookup('web', 2);
    const requests = http.headers.slice(before);
    // One initialize handshake (initialize + initialized) for all three operations, then one
    // request each for tools/list and the two tools/call - not a handshake per operation.
    const posts = requests.filter((h) => h['content-type']?.includes('application/json'));
    expect(posts.length).toBe(5);
    expect(p.opened).toBe(1);

    const s = await stdioServer('shutdown');
    await lookup('shutdown', 1);
    const [pid] = await started(s.pidLog);
    expect(p.size).toBe(2);
    await p.closeAll();
    expect(p.size).toBe(0);
    await until(() => !alive(pid!), 'the stdio process to exit at shutdown');
    // After shutdown a late call still works, on a connection of its own.
    expect(await lookup('shutdown', 2)).toContain('INV-2');
    expect(p.size).toBe(0);
    await until(async () => (await started(s.pidLog)).every((x) => !alive(x)), 'the one-off process to exit');
  });
  it('an HTTP session the server forgot: the call goes again on a new session, once', async () => {
    const p = usePool();
    const web = await sessionfulMcp();
    try {
      const server = await createMcpServer(t.res, a.tenant.id, SYSTEM_ACTOR, {
        name: 'sessions',
        transport: 'http',
        url: web.url,
        allowedTools: ['lookup_invoice'],
      });
      await listServerTools(t.res, a.tenant.id, server.id);
      await lookup('sessions', 1);
      expect(p.opened).toBe(1);
      expect(web.sessions.size).toBe(1);
      // The server restarted: it answers 404 to the old session, so the request never reached a tool.
      web.forget();
      expect(await lookup('sessions', 2)).toContain('INV-2');
      expect(p.opened).toBe(2);
      expect(web.calls.map((c) => c.args)).toEqual([{ number: 'INV-1' }, { number: 'INV-2' }]);
      await lookup('sessions', 3);
      expect(p.opened).toBe(2);
      await deleteMcpServer(t.res, a.tenant.id, SYSTEM_ACTOR, server.id);
    } finally {
      await web.close();
    }
  });
});
