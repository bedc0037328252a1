import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vaultFor } from '@steward/core/connections/connection-service';
import { createTestPki, type TestPki } from '@steward/core/guard/testing/test-certificates';
import { httpRequestTool } from '@steward/core/tools/builtin/http-request-tool';
import { ToolError, type ToolContext } from '@steward/core/tools/tool';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';
import { startHttpMcp } from '../testing/mcp-http.ts';

let t: TestApp;
let a: TenantFixture;
let pki: TestPki;
let server: https.Server;
let port: number;
const seen: string[] = [];

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'mtls');
  pki = await createTestPki();
  // A connector endpoint that requires a client certificate from the test CA.
  server = https.createServer(
    { ...pki.server, ca: pki.ca, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      seen.push(String(peer.subject?.CN));
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ client: peer.subject?.CN }));
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await t.close();
});

function ctx(key: string): ToolContext {
  return {
    tenantId: a.tenant.id,
    tenantSlug: 'mtls',
    taskId: '00000000-0000-4000-8000-000000000000',
    idempotencyKey: key,
    signal: new AbortController().signal,
    withTenant: (fn) => t.res.db.withTenant(a.tenant.id, fn),
  };
}

function create(body: object) {
  return t.app.inject({
    method: 'POST',
    url: '/api/v1/connections',
    headers: bearer(a.token),
    payload: body,
  });
}

describe('mutual TLS for HTTP connections', () => {
  it('stores the client key write-only and presents the certificate to a server that requires one', async () => {
    const r = expectStatus(
      await create({
        kind: 'http',
        name: 'mtls-api',
        config: {
          baseUrl: `https://127.0.0.1:${port}/`,
          allowPrivateNetwork: true,
          clientCertificate: pki.client.cert,
          caCertificate: pki.ca,
        },
        clientKey: pki.client.key,
      }),
      201,
    );
    expect(r.json()).toMatchObject({ hasClientKey: true, hasSecret: false });
    expect(r.body).not.toContain('PRIVATE KEY');
    const got = expectStatus(
      await t.app.inject({
        method: 'GET',
        url: `/api/v1/connections/${r.json().id}`,
        headers: bearer(a.token),
      }),
      200,
    );
    expect(got.body).not.toContain('PRIVATE KEY');
    expect(t.logs()).not.toContain(pki.client.key.split('\n')[1]!);

    const tool = httpRequestTool({ vault: vaultFor(t.res.master) });
    const out = (await tool.execute(ctx('m-1'), {
      method: 'GET',
      url: `https://127.0.0.1:${port}/orders`,
      connection: 'mtls-api',
    })) as { status: number; body: string };
    expect(out.status).toBe(200);
    expect(JSON.parse(out.body)).toEqual({ client: 'steward-connector' });
    expect(seen).toEqual(['steward-connector']);
  });

  it('without the client key the server refuses the handshake (negative control)', async () => {
    expectStatus(
      await create({
        kind: 'http',
        name: 'no-cert',
        config: { baseUrl: `https://127.0.0.1:${port}/`, allowPrivateNetwork: true, caCertificate: pki.ca },
      }),
      201,
    );
    const tool = httpRequestTool({ vault: vaultFor(t.res.master) });
    const error = await tool
      .execute(ctx('m-2'), { method: 'GET', url: `https://127.0.0.1:${port}/orders`, connection: 'no-cert' })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(ToolError);
    expect(['HTTP_TLS_FAILED', 'HTTP_CONNECTION_FAILED']).toContain((error as ToolError).code);
    expect(seen).toHaveLength(1);
  });

  it('rejects a key that does not match the certificate, or a key without a certificate', async () => {
    const other = await createTestPki();
    const mismatch = expectStatus(
      await create({
        kind: 'http',
        name: 'mismatch',
        config: { baseUrl: `https://127.0.0.1:${port}/`, clientCertificate: pki.client.cert },
        clientKey: other.client.key,
      }),
      400,
    );
    expect(mismatch.json().error.message).toContain('clientKey');
    expect(mismatch.body).not.toContain('PRIVATE KEY');
    expectStatus(
      await create({
        kind: 'http',
        name: 'nocert',
        config: { baseUrl: 'https://x.example/' },
        clientKey: pki.client.key,
      }),
      400,
    );
    expectStatus(
      await create({
        kind: 'http',
        name: 'badcert',
        config: { baseUrl: 'https://x.example/', clientCertificate: '-----BEGIN CERTIFICATE-----\nnope' },
      }),
      400,
    );
  });
});

describe('mutual TLS for MCP servers', () => {
  it('lists the tools of an HTTPS MCP server that requires a client certificate', async () => {
    const mcp = await startHttpMcp({ tls: { ...pki.server, ca: pki.ca } });
    try {
      expectStatus(
        await t.app.inject({
          method: 'PATCH',
          url: '/api/v1/tenant',
          headers: bearer(a.token),
          payload: { settings: { network: { allowPrivate: true } } },
        }),
        200,
      );
      const mcpApi = (method: 'GET' | 'POST', url: string, payload?: object) =>
        t.app.inject({
          method,
          url: `/api/v1${url}`,
          headers: bearer(a.token),
          ...(payload ? { payload } : {}),
        });
      const created = expectStatus(
        await mcpApi('POST', '/mcp-servers', {
          name: 'mtls-mcp',
          transport: 'http',
          url: mcp.url,
          tls: { clientCertificate: pki.client.cert, caCertificate: pki.ca },
          clientKey: pki.client.key,
          allowedTools: ['lookup_invoice'],
        }),
        201,
      );
      expect(created.json()).toMatchObject({
        hasClientKey: true,
        tls: { clientCertificate: pki.client.cert },
      });
      expect(created.body).not.toContain('PRIVATE KEY');
      const tools = expectStatus(await mcpApi('GET', `/mcp-servers/${created.json().id}/tools`), 200).json();
      expect(tools.items.map((x: { name: string }) => x.name)).toContain('lookup_invoice');
      const heard = mcp.headers.length;
      expect(heard).toBeGreaterThan(0);

      // Negative control: the same server without the client key is refused at the handshake.
      const keyless = expectStatus(
        await mcpApi('POST', '/mcp-servers', {
          name: 'mtls-keyless',
          transport: 'http',
          url: mcp.url,
          tls: { caCertificate: pki.ca },
        }),
        201,
      );
      const refused = await mcpApi('GET', `/mcp-servers/${keyless.json().id}/tools`);
      expect(refused.statusCode).toBeGreaterThanOrEqual(500);
      expect(refused.json().error.code).toBe('UNAVAILABLE');
      expect(mcp.headers).toHaveLength(heard);
      // A key is refused on a stdio server and when it does not match.
      expectStatus(
        await mcpApi('POST', '/mcp-servers', {
          name: 'mtls-bad',
          transport: 'http',
          url: mcp.url,
          tls: { clientCertificate: pki.client.cert },
          clientKey: (await createTestPki()).client.key,
        }),
        400,
      );
    } finally {
      await mcp.close();
    }
  });
});
