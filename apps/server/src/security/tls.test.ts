import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki, type TestPki } from '@steward/core/guard/testing/test-certificates';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../app.ts';
import { createTestApp, type TestApp } from '../testing/test-app.ts';

let t: TestApp;
let pki: TestPki;
let tlsApp: FastifyInstance;

beforeAll(async () => {
  t = await createTestApp();
  pki = await createTestPki();
  tlsApp = await buildApp(t.res, {
    expectedSchemaVersion: 0,
    https: { cert: Buffer.from(pki.server.cert), key: Buffer.from(pki.server.key) },
  });
  await tlsApp.listen({ host: '127.0.0.1', port: 0 });
});
afterAll(async () => {
  await tlsApp.close();
  await t.close();
});

function get(path: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const { port } = tlsApp.server.address() as AddressInfo;
  return new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, path, ca: pki.ca, servername: 'localhost' }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      })
      .on('error', reject);
  });
}

describe('native TLS', () => {
  it('serves HTTPS with HSTS and the other security headers', async () => {
    const r = await get('/healthz');
    expect(r.status).toBe(200);
    expect(r.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    const csp = String(r.headers['content-security-policy']);
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain('upgrade-insecure-requests');
    expect(r.headers['x-frame-options']).toBe('DENY');
    expect(r.headers['referrer-policy']).toBe('no-referrer');
    expect(r.headers['x-content-type-options']).toBe('nosniff');
  });

  it('a plain-HTTP app sends the same headers without HSTS', async () => {
    const r = await t.app.inject({ method: 'GET', url: '/healthz' });
    expect(r.headers['strict-transport-security']).toBeUndefined();
    expect(String(r.headers['content-security-policy'])).toContain("frame-ancestors 'none'");
    expect(String(r.headers['content-security-policy'])).not.toContain('upgrade-insecure-requests');
    expect(r.headers['x-frame-options']).toBe('DENY');
    expect(r.headers['referrer-policy']).toBe('no-referrer');
  });

  it('errors carry the headers too', async () => {
    const r = await get('/api/v1/me');
    expect(r.status).toBe(401);
    expect(r.headers['strict-transport-security']).toContain('max-age=');
  });
});
