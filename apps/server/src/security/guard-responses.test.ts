import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPublic } from '../http/access.ts';
import { createTestApp, type TestApp } from '../testing/test-app.ts';

/** Every route's OpenAPI responses name what the guard can answer: 429 everywhere, 403 where it applies. */

interface Operation {
  responses?: Record<string, { description?: string; content?: Record<string, { schema: unknown }> }>;
}
type OpenApi = { paths: Record<string, Record<string, Operation>> };

let t: TestApp;
let doc: OpenApi;
beforeAll(async () => {
  t = await createTestApp();
  doc = t.app.swagger() as unknown as OpenApi;
});
afterAll(() => t?.close());

/** Fastify's `/a/:id` is OpenAPI's `/a/{id}`. */
const openApiPath = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

describe('guard responses in the OpenAPI document', () => {
  it('every /api/v1 and /scim/v2 operation lists 429, and every authenticated or sign-in one 403', () => {
    const missing: string[] = [];
    let checked = 0;
    for (const route of t.app.routeTable) {
      if (!/^\/(api\/v1|scim\/v2)\//.test(route.url) || route.method === 'HEAD') continue;
      const op = doc.paths[openApiPath(route.url)]?.[route.method.toLowerCase()];
      if (!op?.responses) continue; // not in the document (hidden) or no declared responses
      checked++;
      const codes = Object.keys(op.responses);
      if (!codes.includes('429')) missing.push(`${route.method} ${route.url}: 429`);
      const signIn = /^\/api\/v1\/(auth|sso)\//.test(route.url);
      if ((!isPublic(route.access) || signIn) && !codes.includes('403')) {
        missing.push(`${route.method} ${route.url}: 403`);
      }
    }
    expect(checked).toBeGreaterThan(100);
    expect(missing).toEqual([]);
  });

  it('the added responses are the error shape, and say what they mean', () => {
    const op = doc.paths['/api/v1/tasks']!.get!;
    expect(op.responses!['429']!.description).toContain('RATE_LIMITED');
    expect(JSON.stringify(op.responses!['429']!.content)).toContain('#/components/schemas/ErrorResponse');
    expect(op.responses!['403']!.description).toContain('IP_NOT_ALLOWED');
    const login = doc.paths['/api/v1/auth/login']!.post!;
    expect(Object.keys(login.responses!)).toEqual(expect.arrayContaining(['403', '429']));
  });
});
