import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setIpAllowList, setRateLimits } from '@steward/core/guard/guard-settings-service';
import { createPlatformAdmin } from '@steward/core/identity/user-service';
import { SYSTEM_ACTOR } from '@steward/core/resources';
import { validOrNot, type JsonSchema } from '../testing/schema-arbitrary.ts';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  loginAs,
  TEST_PASSWORD,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

/**
 * Schema-driven fuzzing of every route: arbitraries built from each route's own OpenAPI schemas
 * (path, query, body), valid and invalid, sent with an owner token that is also a platform
 * administrator. No answer may be a 5xx, and every answer must match the schema its route
 * declares for that status (undeclared 4xx: the standard error shape).
 */

const RUNS = Number(process.env.FUZZ_RUNS ?? 25);
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

interface Operation {
  parameters?: { in: string; name: string; required?: boolean; schema: JsonSchema }[];
  requestBody?: { content?: Record<string, { schema: JsonSchema }> };
  responses?: Record<string, { content?: Record<string, { schema: JsonSchema }> }>;
}
interface OpenApi {
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, JsonSchema> };
}

let t: TestApp;
let f: TenantFixture;
let doc: OpenApi;
const ajv = addFormats(new Ajv({ strict: false, allErrors: false, validateFormats: true }));
const validators = new Map<string, ValidateFunction>();

/** Replace `$ref`s to components by the components themselves. */
function resolve(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(resolve);
  if (!schema || typeof schema !== 'object') return schema;
  const ref = (schema as { $ref?: string }).$ref;
  if (typeof ref === 'string') {
    const name = ref.split('/').at(-1)!;
    const target = doc.components?.schemas?.[name];
    if (!target) throw new Error(`unresolved ${ref}`);
    return resolve(target);
  }
  return Object.fromEntries(
    Object.entries(schema)
      .map(([k, v]) => [k, k === '$id' ? undefined : resolve(v)])
      .filter(([, v]) => v !== undefined),
  );
}

function validator(key: string, schema: JsonSchema): ValidateFunction {
  let v = validators.get(key);
  if (!v) {
    v = ajv.compile(resolve(schema) as object);
    validators.set(key, v);
  }
  return v;
}

beforeAll(async () => {
  t = await createTestApp();
  f = await createTenantFixture(t, 'fuzz');
  await createPlatformAdmin(t.res, SYSTEM_ACTOR, { email: f.ownerEmail, password: TEST_PASSWORD });
  doc = t.app.swagger() as unknown as OpenApi;
}, 60_000);
afterAll(() => t.close());

function toQuery(values: Record<string, unknown>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined) continue;
    q.set(k, typeof v === 'object' ? JSON.stringify(v) : String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

describe('schema-driven fuzzing of every route', () => {
  it('never answers 5xx, and every answer matches its declared schema', async () => {
    const routes = t.app.routeTable.filter(
      // '/*' is the dashboard's single-page-app fallback (HTML, tested in apps/web/e2e).
      (r) => r.method !== 'HEAD' && !r.url.startsWith('/docs') && r.url !== '*' && r.url !== '/*',
    );
    expect(routes.length).toBeGreaterThan(40);
    const ErrorSchema = doc.components!.schemas!.ErrorResponse!;
    let requests = 0;
    const succeeded = new Set<string>();
    const tokens: string[] = [];
    // Ids seen in successful answers, by collection (`/api/v1/users`), so :id routes reach real rows.
    const pools = new Map<string, Set<string>>();
    const { user: owner } = await loginAs(t, f.ownerEmail, 'fuzz').then(
      (r) => r as unknown as { user: { id: string } },
    );
    const harvest = (collection: string, body: unknown) => {
      const ids = pools.get(collection) ?? new Set<string>();
      pools.set(collection, ids);
      const take = (o: unknown) => {
        const id = (o as { id?: unknown } | null)?.id;
        if (typeof id === 'string' && id !== owner.id && id !== f.apiKeyId) ids.add(id);
      };
      take(body);
      for (const item of ((body as { items?: unknown[] } | null)?.items ?? []).slice(0, 20)) take(item);
    };
    for (const route of routes) {
      const path = route.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
      const op = doc.paths[path]?.[route.method.toLowerCase()];
      expect(op, `${route.method} ${route.url} is in the OpenAPI document`).toBeDefined();
      const params = op!.parameters ?? [];
      const pathParams = params.filter((p) => p.in === 'path');
      const queryParams = params.filter((p) => p.in === 'query');
      const bodySchema = op!.requestBody?.content?.['application/json']?.schema;
      // Each route starts from a clean slate: a fresh session, no allow-list, default quotas.
      await setIpAllowList(t.res, f.tenant.id, SYSTEM_ACTOR, { entries: [] });
      await setRateLimits(
        t.res,
        f.tenant.id,
        { ...SYSTEM_ACTOR, isPlatformAdmin: true },
        {
          requestsPerMinute: null,
          apiKeyRequestsPerMinute: null,
        },
      );
      const { accessToken } = await loginAs(t, f.ownerEmail, 'fuzz');
      tokens.push(accessToken);

      const collection = route.url.split('/:')[0]!;
      const known = [...(pools.get(collection) ?? [])];
      const pathArb = fc.record(
        Object.fromEntries(
          pathParams.map((p) => {
            const fuzzed = validOrNot(resolve(p.schema) as JsonSchema);
            return [
              p.name,
              p.name === 'id' && known.length
                ? fc.oneof(
                    { weight: 3, arbitrary: fc.constantFrom(...known) },
                    { weight: 1, arbitrary: fuzzed },
                  )
                : fuzzed,
            ];
          }),
        ),
      );
      const queryArb = fc.record(
        Object.fromEntries(queryParams.map((p) => [p.name, validOrNot(resolve(p.schema) as JsonSchema)])),
        { requiredKeys: [] },
      );
      const bodyArb = bodySchema ? validOrNot(resolve(bodySchema) as JsonSchema) : fc.constant(undefined);

      await fc.assert(
        fc.asyncProperty(pathArb, queryArb, bodyArb, async (pathValues, queryValues, body) => {
          let url = route.url;
          for (const [name, value] of Object.entries(pathValues)) {
            const text = typeof value === 'object' ? JSON.stringify(value) : String(value);
            url = url.replace(`:${name}`, encodeURIComponent(text || 'x'));
          }
          url += toQuery(queryValues as Record<string, unknown>);
          const r = await t.app.inject({
            method: route.method as 'GET',
            url,
            headers: bearer(accessToken),
            ...(bodySchema && body !== undefined
              ? {
                  payload: JSON.stringify(body),
                  headers: { ...bearer(accessToken), 'content-type': 'application/json' },
                }
              : {}),
          });
          requests++;
          if (r.statusCode < 300) {
            succeeded.add(`${route.method} ${route.url}`);
            if (String(r.headers['content-type'] ?? '').includes('json')) harvest(collection, r.json());
          }
          const where = `${route.method} ${url} ${JSON.stringify(body)?.slice(0, 300)} -> ${r.statusCode} ${r.body.slice(0, 300)}`;
          expect(r.statusCode, where).toBeLessThan(500);
          // The session's own token is a canary: no answer carries it back.
          expect(r.body.includes(accessToken), `${where}: the access token is in the answer`).toBe(false);
          if (r.statusCode === 204 || !String(r.headers['content-type'] ?? '').includes('json')) return;
          // Routes outside /api (health, the OpenAPI document) declare no response schemas.
          if (!route.url.startsWith('/api/')) return;
          const declared = op!.responses?.[String(r.statusCode)]?.content?.['application/json']?.schema;
          const schema = declared ?? (r.statusCode >= 400 ? ErrorSchema : undefined);
          expect(schema, `${where}: status ${r.statusCode} is not declared`).toBeDefined();
          const validate = validator(`${route.method} ${route.url} ${r.statusCode}`, schema!);
          const ok = validate(r.json());
          expect(ok, `${where}: ${JSON.stringify(validate.errors)}`).toBe(true);
        }),
        { numRuns: RUNS, endOnFailure: true },
      );
    }
    const logs = t.logs();
    expect(logs.length).toBeGreaterThan(1000);
    for (const secret of [f.apiKey, TEST_PASSWORD, ...tokens])
      expect(logs.includes(secret), 'a secret reached the logs').toBe(false);
    console.info(
      `fuzzed ${routes.length} routes with ${requests} requests; ${succeeded.size} routes answered 2xx at least once`,
    );
    if (process.env.FUZZ_REPORT)
      console.info(
        routes
          .map((r) => `${r.method} ${r.url}`)
          .filter((r) => !succeeded.has(r))
          .join('\n'),
      );
  }, 240_000);
});
