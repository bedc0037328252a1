import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vaultFor } from '@steward/core/connections/connection-service';
import { emailTool } from '@steward/core/tools/builtin/email-tool';
import { httpRequestTool, MAX_RESPONSE_BYTES } from '@steward/core/tools/builtin/http-request-tool';
import { ToolError, type ToolContext } from '@steward/core/tools/tool';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from './testing/test-app.ts';
import { startWorker, type WorkerHandle } from './worker/worker-runner.ts';

/**
 * The connector tools on real parts: email.send through the loop (playbook → approval → worker →
 * a local SMTP server), and http.request against local HTTP servers with the SSRF guard.
 */

const SMTP_PASSWORD = 'smtp-pass-canary-91be7c';

interface Received {
  rcpt: string[];
  raw: string;
}

let t: TestApp;
let a: TenantFixture;
let worker: WorkerHandle;
let smtp: SMTPServer;
let smtpPort = 0;
const received: Received[] = [];
const rcptAttempts = new Map<string, number>();

function header(raw: string, name: string): string | undefined {
  const head = raw.split(/\r?\n\r?\n/)[0] ?? '';
  const m = new RegExp(`^${name}:\\s*(.*(?:\\r?\\n[ \\t].*)*)`, 'im').exec(head);
  return m?.[1]?.replace(/\r?\n[ \t]/g, ' ').trim();
}

beforeAll(async () => {
  smtp = new SMTPServer({
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    logger: false,
    onAuth(auth, _session, cb) {
      if (auth.username === 'mailer' && auth.password === SMTP_PASSWORD) return cb(null, { user: 'mailer' });
      cb(Object.assign(new Error('bad credentials'), { responseCode: 535 }));
    },
    onRcptTo(address, _session, cb) {
      const n = (rcptAttempts.get(address.address) ?? 0) + 1;
      rcptAttempts.set(address.address, n);
      if (address.address.startsWith('flaky') && n === 1)
        return cb(Object.assign(new Error('try again later'), { responseCode: 451 }));
      if (address.address.startsWith('bounce'))
        return cb(Object.assign(new Error('no such user'), { responseCode: 550 }));
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        received.push({
          rcpt: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString('utf8'),
        });
        cb();
      });
    },
  });
  await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
  smtpPort = (smtp.server.address() as AddressInfo).port;

  t = await createTestApp();
  a = await createTenantFixture(t, 'mail');
  worker = await startWorker(t.res, {
    appUrl: t.runtime.appUrl,
    concurrency: 4,
    pollIntervalMs: 200,
    log: (l, m) => process.env.SHOW_LOGS && console.log(l, m),
  });
});
afterAll(async () => {
  await worker?.stop();
  await t?.close();
  await new Promise<void>((resolve) => (smtp ? smtp.close(() => resolve()) : resolve()));
});

const api = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown, token = a.token) =>
  t.app.inject({
    method,
    url: `/api/v1${url}`,
    headers: bearer(token),
    ...(payload === undefined ? {} : { payload: payload as object }),
  });

async function waitFor(taskId: string, statuses: string[], ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const task = expectStatus(await api('GET', `/tasks/${taskId}`), 200).json();
    if (statuses.includes(task.status)) return task;
    if (Date.now() > deadline) throw new Error(`task stayed ${task.status}: ${JSON.stringify(task)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Submit an event, approve every approval its task asks for, and wait for the end. */
async function runEmailTask(externalId: string, from: string, subject: string) {
  const intake = expectStatus(
    // Submitted with the API key and approved by the owner (self-approval is forbidden by default).
    await api(
      'POST',
      '/events',
      { source: 'email', type: 'message', externalId, from, subject, body: 'hello' },
      a.apiKey,
    ),
    202,
  ).json();
  const waiting = await waitFor(intake.taskId, ['pending_approval']);
  for (const approval of waiting.approvals) {
    expectStatus(await api('POST', `/approvals/${approval.id}/decision`, { decision: 'approve' }), 200);
  }
  return { waiting, final: await waitFor(intake.taskId, ['done', 'failed', 'needs_action']) };
}

/** A tool context like the executor's, for calling a tool directly. */
function toolContext(tenantId: string, key: string): ToolContext {
  return {
    tenantId,
    tenantSlug: 'mail',
    taskId: '00000000-0000-4000-8000-000000000000',
    idempotencyKey: key,
    signal: new AbortController().signal,
    withTenant: (fn) => t.res.db.withTenant(tenantId, fn),
  };
}

async function toolError(p: Promise<unknown>): Promise<ToolError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ToolError) return e;
    throw e;
  }
  throw new Error('the call succeeded');
}

describe('email.send', () => {
  beforeAll(async () => {
    expectStatus(
      await api('POST', '/connections', {
        kind: 'smtp',
        name: 'Outbox',
        config: {
          host: '127.0.0.1',
          port: smtpPort,
          secure: false,
          from: 'steward@mail.test',
          fromName: 'Steward',
          username: 'mailer',
          allowPrivateNetwork: true,
        },
        secret: SMTP_PASSWORD,
        isDefault: true,
      }),
      201,
    );
    expectStatus(
      await api('POST', '/playbooks', {
        name: 'Answer quotes',
        when: { subject: { contains: 'quote' } },
        steps: [
          {
            key: 'reply',
            tool: 'email.send',
            args: {
              to: '{{event.from}}',
              subject: 'Re: {{event.subject}}',
              text: 'Thanks, we will send a quote.',
            },
          },
        ],
      }),
      201,
    );
  });

  it('event → approval for a new recipient → approve → delivered once with the idempotency key → done', async () => {
    const { waiting, final } = await runEmailTask('q-1', 'client@customer.test', 'Need a quote');
    const step = waiting.steps[0];
    expect(step.tool).toBe('email.send');
    expect(step.needsApproval).toBe(true);
    expect(step.approvalReasons.join(' ')).toContain('new recipient: client@customer.test');
    expect(waiting.approvals[0].action).toEqual({
      tool: 'email.send',
      args: {
        to: 'client@customer.test',
        subject: 'Re: Need a quote',
        text: 'Thanks, we will send a quote.',
      },
    });
    expect(final.status).toBe('done');
    expect(final.steps[0].status).toBe('succeeded');

    const mine = received.filter((m) => m.rcpt.includes('client@customer.test'));
    expect(mine).toHaveLength(1);
    const raw = mine[0]!.raw;
    const key = `stw-${step.id}`;
    expect(header(raw, 'X-Steward-Idempotency-Key')).toBe(key);
    expect(header(raw, 'Message-ID')).toBe(`<${key}@mail.test>`);
    expect(header(raw, 'Subject')).toBe('Re: Need a quote');
    expect(header(raw, 'From')).toContain('steward@mail.test');
    expect(raw).toContain('Thanks, we will send a quote.');
    expect(final.steps[0].result).toMatchObject({ accepted: ['client@customer.test'], rejected: [] });

    const audit = expectStatus(await api('GET', '/audit?limit=200'), 200);
    expect(audit.body).not.toContain(SMTP_PASSWORD);
    const actions = audit
      .json()
      .items.filter(
        (e: { targetId: string; details: { taskId?: string } }) =>
          e.targetId === final.id || e.details.taskId === final.id,
      )
      .map((e: { action: string }) => e.action);
    expect(actions).toEqual(expect.arrayContaining(['step.started', 'step.succeeded', 'task.done']));
    expect(t.logs()).not.toContain(SMTP_PASSWORD);
  });

  it('retries a 4xx reply and then delivers', async () => {
    const { final } = await runEmailTask('q-2', 'flaky@customer.test', 'Another quote');
    expect(final.status).toBe('done');
    const step = final.steps[0];
    expect(step.status).toBe('succeeded');
    expect(step.attempts).toBe(2);
    expect(rcptAttempts.get('flaky@customer.test')).toBe(2);
    const mine = received.filter((m) => m.rcpt.includes('flaky@customer.test'));
    expect(mine).toHaveLength(1);
    expect(header(mine[0]!.raw, 'X-Steward-Idempotency-Key')).toBe(`stw-${step.id}`);
  });

  it('sends a 5xx reply to the dead letters without retrying', async () => {
    const { final } = await runEmailTask('q-3', 'bounce@customer.test', 'Bad quote');
    expect(final.status).toBe('failed');
    const step = final.steps[0];
    expect(step.status).toBe('dead');
    expect(step.attempts).toBe(1);
    expect(step.error).toMatchObject({ code: 'SMTP_REJECTED', retryable: false });
    expect(step.error.message).toContain('550');
    expect(rcptAttempts.get('bounce@customer.test')).toBe(1);
    const dead = expectStatus(await api('GET', '/dead-letters'), 200).json();
    expect(dead.items.map((s: { id: string }) => s.id)).toContain(step.id);
    expect(received.some((m) => m.rcpt.includes('bounce@customer.test'))).toBe(false);
  });

  it('blocks a private SMTP host unless the connection or the tenant allows it; bad credentials are final', async () => {
    const tool = emailTool({ vault: vaultFor(t.res.master) });
    const other = expectStatus(
      await api('POST', '/connections', {
        kind: 'smtp',
        name: 'Local no-private',
        config: { host: '127.0.0.1', port: smtpPort, from: 'x@mail.test', username: 'mailer' },
        secret: 'wrong-password',
      }),
      201,
    ).json();
    const args = { to: 'x@customer.test', subject: 's', text: 't', connection: 'Local no-private' };
    const blocked = await toolError(tool.execute(toolContext(a.tenant.id, 'k-1'), args));
    expect(blocked.code).toBe('ADDRESS_BLOCKED');
    expect(blocked.retryable).toBe(false);
    expectStatus(
      await api('PATCH', `/connections/${other.id}`, { config: { allowPrivateNetwork: true } }),
      200,
    );
    const auth = await toolError(tool.execute(toolContext(a.tenant.id, 'k-2'), args));
    expect(auth.code).toBe('SMTP_REJECTED');
    expect(auth.message).toContain('535');
    expect(auth.retryable).toBe(false);
    expect(auth.message).not.toContain('wrong-password');
    const missing = await toolError(
      tool.execute(toolContext(a.tenant.id, 'k-3'), { ...args, connection: 'No such connection' }),
    );
    expect(missing.code).toBe('CONNECTION_UNAVAILABLE');
    expect(
      tool.recipients!({
        to: ['A@x.test', 'b@x.test'],
        cc: 'c@x.test',
        bcc: ['d@x.test'],
        subject: 's',
        text: '',
      }),
    ).toEqual(['a@x.test', 'b@x.test', 'c@x.test', 'd@x.test']);
  });
});

interface Hit {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A local HTTP server recording what reaches it; `route` decides the answer. */
async function recorder(host: string, route: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const hits: Hit[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      hits.push({
        method: req.method!,
        url: req.url!,
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      });
      route(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as AddressInfo).port;
  return { hits, port, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe('http.request', () => {
  let target: Awaited<ReturnType<typeof recorder>>;
  let front: Awaited<ReturnType<typeof recorder>>;
  const setPrivate = async (allow: boolean) =>
    expectStatus(await api('PATCH', '/tenant', { settings: { network: { allowPrivate: allow } } }), 200);

  beforeAll(async () => {
    // The "private" service: 127.0.0.1 is loopback, blocked by default.
    target = await recorder('127.0.0.1', (req, res) => {
      const to = new URL(req.url!, 'http://x').searchParams.get('to');
      if (to) return void res.writeHead(302, { location: to }).end();
      if (req.url === '/big') return res.end('x'.repeat(MAX_RESPONSE_BYTES * 2));
      if (req.url === '/fail') return void res.writeHead(503).end('busy');
      if (req.url === '/missing') return void res.writeHead(404).end('no');
      if (req.url === '/loop') return void res.writeHead(302, { location: '/loop' }).end();
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ok: true }));
    });
    // The "public" front: listens on 127.0.0.2, which only this test treats as a public address.
    front = await recorder('127.0.0.2', (req, res) => {
      const to = new URL(req.url!, 'http://x').searchParams.get('to');
      if (to) return void res.writeHead(302, { location: to }).end();
      res.end('front');
    });
  });
  afterAll(async () => {
    await target?.close();
    await front?.close();
    await setPrivate(false);
  });

  it('blocks 127.0.0.1, a name that resolves to it, and IPv6/mapped forms by default', async () => {
    await setPrivate(false);
    const tool = httpRequestTool({ vault: vaultFor(t.res.master) });
    for (const url of [
      `http://127.0.0.1:${target.port}/`,
      `http://localhost:${target.port}/`,
      `http://[::ffff:127.0.0.1]:${target.port}/`,
      `http://[::1]:${target.port}/`,
      'http://169.254.169.254/latest/meta-data/',
      'http://0.0.0.0/',
    ]) {
      const e = await toolError(tool.execute(toolContext(a.tenant.id, 'h-1'), { method: 'GET', url }));
      expect(e.code, url).toBe('ADDRESS_BLOCKED');
      expect(e.retryable).toBe(false);
    }
    // A hostname whose (hooked) DNS answer is loopback is blocked too, and the answer is not trusted later.
    const hooked = httpRequestTool({
      vault: vaultFor(t.res.master),
      resolve: async () => [{ address: '127.0.0.1', family: 4 }],
    });
    const e = await toolError(
      hooked.execute(toolContext(a.tenant.id, 'h-2'), {
        method: 'GET',
        url: `http://api.example.com:${target.port}/`,
      }),
    );
    expect(e.code).toBe('ADDRESS_BLOCKED');
    expect(target.hits).toHaveLength(0);
  });

  it('does not follow a redirect from an allowed address to a blocked one', async () => {
    await setPrivate(false);
    // 127.0.0.2 stands in for a public server (the only test hook); DNS for the public-looking name
    // is hooked to it. Everything else goes through the real guard.
    const tool = httpRequestTool({
      vault: vaultFor(t.res.master),
      treatAsPublic: new Set(['127.0.0.2']),
      resolve: async (host) =>
        host === 'public.example.com'
          ? [{ address: '127.0.0.2', family: 4 }]
          : [{ address: '127.0.0.1', family: 4 }],
    });
    const ok = await tool.execute(toolContext(a.tenant.id, 'h-3'), {
      method: 'GET',
      url: `http://public.example.com:${front.port}/hello`,
    });
    expect(ok).toMatchObject({ status: 200, body: 'front' });
    for (const to of [`http://127.0.0.1:${target.port}/secret`, `http://localhost:${target.port}/secret`]) {
      const before = front.hits.length;
      const e = await toolError(
        tool.execute(toolContext(a.tenant.id, 'h-4'), {
          method: 'GET',
          url: `http://public.example.com:${front.port}/go?to=${encodeURIComponent(to)}`,
        }),
      );
      expect(e.code).toBe('ADDRESS_BLOCKED');
      expect(e.message).toContain('redirect');
      expect(front.hits.length).toBe(before + 1);
    }
    expect(target.hits).toHaveLength(0);
  });

  it('reaches private addresses when the tenant allows them, with the Idempotency-Key header', async () => {
    await setPrivate(true);
    const tool = httpRequestTool({ vault: vaultFor(t.res.master) });
    const r = await tool.execute(toolContext(a.tenant.id, 'stw-idem-1'), {
      method: 'POST',
      url: `http://127.0.0.1:${target.port}/items`,
      headers: { 'X-Trace': 'abc' },
      body: { name: 'widget' },
    });
    expect(r).toMatchObject({ status: 200, body: '{"ok":true}', truncated: false });
    const hit = target.hits.at(-1)!;
    expect(hit).toMatchObject({ method: 'POST', url: '/items', body: '{"name":"widget"}' });
    expect(hit.headers['idempotency-key']).toBe('stw-idem-1');
    expect(hit.headers['x-trace']).toBe('abc');
    expect(hit.headers['content-type']).toBe('application/json');

    // Followed redirects are re-checked and allowed now; the key goes with every hop.
    const viaFront = await tool.execute(toolContext(a.tenant.id, 'stw-idem-2'), {
      method: 'GET',
      url: `http://127.0.0.2:${front.port}/go?to=${encodeURIComponent(`http://127.0.0.1:${target.port}/after`)}`,
    });
    expect(viaFront).toMatchObject({ status: 200, redirects: 1 });
    expect(target.hits.at(-1)).toMatchObject({ url: '/after' });
    expect(target.hits.at(-1)!.headers['idempotency-key']).toBe('stw-idem-2');

    // Metadata stays blocked even so.
    const meta = await toolError(
      tool.execute(toolContext(a.tenant.id, 'h-5'), { method: 'GET', url: 'http://169.254.169.254/' }),
    );
    expect(meta.code).toBe('ADDRESS_BLOCKED');
  });

  it('truncates big bodies, retries 5xx only, stops redirect loops, refuses reserved headers', async () => {
    await setPrivate(true);
    const tool = httpRequestTool({ vault: vaultFor(t.res.master) });
    const ctx = toolContext(a.tenant.id, 'h-6');
    const big = await tool.execute(ctx, { method: 'GET', url: `http://127.0.0.1:${target.port}/big` });
    expect(big.truncated).toBe(true);
    expect((big.body as string).length).toBe(MAX_RESPONSE_BYTES);
    const busy = await toolError(
      tool.execute(ctx, { method: 'GET', url: `http://127.0.0.1:${target.port}/fail` }),
    );
    expect(busy).toMatchObject({ code: 'HTTP_STATUS', retryable: true });
    const missing = await toolError(
      tool.execute(ctx, { method: 'GET', url: `http://127.0.0.1:${target.port}/missing` }),
    );
    expect(missing).toMatchObject({ code: 'HTTP_STATUS', retryable: false });
    const loop = await toolError(
      tool.execute(ctx, { method: 'GET', url: `http://127.0.0.1:${target.port}/loop` }),
    );
    expect(loop.code).toBe('TOO_MANY_REDIRECTS');
    const reserved = await toolError(
      tool.execute(ctx, {
        method: 'GET',
        url: `http://127.0.0.1:${target.port}/`,
        headers: { 'Idempotency-Key': 'mine' },
      }),
    );
    expect(reserved.code).toBe('HEADER_NOT_ALLOWED');
    const closed = await toolError(tool.execute(ctx, { method: 'GET', url: 'http://127.0.0.1:1/' }));
    expect(closed).toMatchObject({ code: 'HTTP_CONNECTION_FAILED', retryable: true });
    expect(tool.recipients!({ method: 'GET', url: 'https://API.Example.com/x' })).toEqual([
      'api.example.com',
    ]);
  });

  it("sends an http connection's secret only to URLs under its base URL", async () => {
    await setPrivate(true);
    const secret = 'Bearer http-canary-4d1f';
    expectStatus(
      await api('POST', '/connections', {
        kind: 'http',
        name: 'Target API',
        config: { baseUrl: `http://127.0.0.1:${target.port}/api/` },
        secret,
      }),
      201,
    );
    const tool = httpRequestTool({ vault: vaultFor(t.res.master) });
    await tool.execute(toolContext(a.tenant.id, 'h-7'), {
      method: 'GET',
      url: `http://127.0.0.1:${target.port}/api/items`,
      connection: 'Target API',
    });
    expect(target.hits.at(-1)!.headers.authorization).toBe(secret);
    const outside = await toolError(
      tool.execute(toolContext(a.tenant.id, 'h-8'), {
        method: 'GET',
        url: `http://127.0.0.1:${target.port}/other`,
        connection: 'Target API',
      }),
    );
    expect(outside.code).toBe('CONNECTION_MISMATCH');
    // Redirected to another origin: the credential and the step's own headers do not follow.
    const before = front.hits.length;
    await tool.execute(toolContext(a.tenant.id, 'h-9'), {
      method: 'GET',
      url: `http://127.0.0.1:${target.port}/api/go?to=${encodeURIComponent(`http://127.0.0.2:${front.port}/landed`)}`,
      headers: { 'X-Api-Key': 'user-header-secret', Accept: 'text/plain' },
      connection: 'Target API',
    });
    expect(target.hits.at(-1)!.headers.authorization).toBe(secret);
    expect(front.hits.length).toBe(before + 1);
    const landed = front.hits.at(-1)!;
    expect(landed.url).toBe('/landed');
    expect(landed.headers.authorization).toBeUndefined();
    expect(landed.headers['x-api-key']).toBeUndefined();
    expect(landed.headers.accept).toBe('text/plain');
    expect(landed.headers['idempotency-key']).toBe('h-9');
  });
});
