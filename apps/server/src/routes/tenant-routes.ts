import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import {
  createTenant,
  getTenant,
  listTenants,
  SLUG_PATTERN,
  updateTenant,
} from '@steward/core/tenants/tenant-service';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { Email, errors, Page, PageQuery, Password } from '../http/schemas.ts';

export const TenantSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  slug: Type.String(),
  name: Type.String(),
  status: Type.String(),
  settings: Type.Record(Type.String(), Type.Unknown()),
  createdAt: Type.String({ format: 'date-time' }),
});

const Settings = Type.Record(Type.String({ pattern: '^[a-zA-Z][a-zA-Z0-9_.-]{0,63}$' }), Type.Unknown(), {
  maxProperties: 100,
  description: 'Tenant settings; the keys given are merged into the stored settings',
});

export function tenantRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/me',
      {
        config: { access: 'authenticated' },
        schema: {
          tags: ['auth'],
          summary: 'Who is calling: user or API key, current tenant, role and permissions',
          response: {
            200: Type.Object({
              kind: Type.Union([Type.Literal('user'), Type.Literal('api_key')]),
              user: Type.Union([
                Type.Object({ id: Type.String(), email: Type.String(), isPlatformAdmin: Type.Boolean() }),
                Type.Null(),
              ]),
              apiKeyId: Type.Union([Type.String(), Type.Null()]),
              tenant: Type.Object({ id: Type.String(), slug: Type.String(), name: Type.String() }),
              role: Type.Union([Type.String(), Type.Null()]),
              permissions: Type.Array(Type.String()),
            }),
            ...errors(401),
          },
        },
      },
      async (request) => {
        const p = principalOf(request);
        const tenant = await getTenant(res, p.tenantId);
        return {
          kind: p.kind,
          user:
            p.kind === 'user' ? { id: p.userId!, email: p.label, isPlatformAdmin: p.isPlatformAdmin } : null,
          apiKeyId: p.apiKeyId ?? null,
          tenant: { id: tenant.id, slug: tenant.slug, name: tenant.name },
          role: p.role,
          permissions: [...p.permissions].sort(),
        };
      },
    );
    app.post(
      '/tenants',
      {
        config: { access: 'platform-admin' },
        schema: {
          tags: ['tenants'],
          summary: 'Create a tenant with its owner (platform administrators only)',
          body: Type.Object(
            {
              slug: Type.String({ pattern: SLUG_PATTERN }),
              name: Type.String({ minLength: 1, maxLength: 200 }),
              ownerEmail: Email,
              ownerPassword: Type.Optional(Password),
              ownerName: Type.Optional(Type.String({ maxLength: 200 })),
            },
            { additionalProperties: false },
          ),
          response: { 201: TenantSchema, ...errors(400, 401, 403, 409) },
        },
      },
      async (request, reply) => reply.code(201).send(await createTenant(res, actorOf(request), request.body)),
    );
    app.get(
      '/tenants',
      {
        config: { access: 'platform-admin' },
        schema: {
          tags: ['tenants'],
          summary: 'All tenants (platform administrators only)',
          querystring: PageQuery,
          response: { 200: Page(TenantSchema), ...errors(400, 401, 403) },
        },
      },
      async (request) => listTenants(res, request.query),
    );
    app.get(
      '/tenant',
      {
        config: { access: 'tenant:read' },
        schema: {
          tags: ['tenants'],
          summary: 'The current tenant and its settings',
          response: { 200: TenantSchema, ...errors(401, 403) },
        },
      },
      async (request) => getTenant(res, principalOf(request).tenantId),
    );
    app.patch(
      '/tenant',
      {
        config: { access: 'tenant:manage' },
        schema: {
          tags: ['tenants'],
          summary: 'Rename the tenant or change settings',
          body: Type.Object(
            {
              name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
              settings: Type.Optional(Settings),
            },
            { additionalProperties: false, minProperties: 1 },
          ),
          response: { 200: TenantSchema, ...errors(400, 401, 403) },
        },
      },
      async (request) => updateTenant(res, principalOf(request).tenantId, actorOf(request), request.body),
    );
  };
}
