import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import { createApiKey, listApiKeys, revokeApiKey } from '@steward/core/identity/api-key-service';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors, IdParams, Page, PageQuery } from '../http/schemas.ts';

const Nullable = (s: ReturnType<typeof Type.String>) => Type.Union([s, Type.Null()]);

const ApiKeySchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  prefix: Type.String({ description: 'the public part of the key, to recognise it' }),
  role: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  expiresAt: Nullable(Type.String({ format: 'date-time' })),
  lastUsedAt: Nullable(Type.String({ format: 'date-time' })),
  revokedAt: Nullable(Type.String({ format: 'date-time' })),
});

export function apiKeyRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/api-keys',
      {
        config: { access: 'apikeys:read' },
        schema: {
          tags: ['api-keys'],
          summary: 'API keys of the tenant (never their secrets)',
          querystring: Type.Composite(
            [PageQuery, Type.Object({ includeRevoked: Type.Optional(Type.Boolean()) })],
            {
              additionalProperties: false,
            },
          ),
          response: { 200: Page(ApiKeySchema), ...errors(400, 401, 403) },
        },
      },
      async (request) => listApiKeys(res, principalOf(request).tenantId, request.query),
    );
    app.post(
      '/api-keys',
      {
        config: { access: 'apikeys:manage' },
        schema: {
          tags: ['api-keys'],
          summary: 'Create an API key scoped to a role; the key is in this response only',
          body: Type.Object(
            {
              name: Type.String({ minLength: 1, maxLength: 100 }),
              role: Type.String({ pattern: '^[a-z][a-z0-9_-]{0,39}$' }),
              expiresAt: Type.Optional(Type.String({ format: 'date-time' })),
            },
            { additionalProperties: false },
          ),
          response: {
            201: Type.Composite([ApiKeySchema, Type.Object({ key: Type.String() })]),
            ...errors(400, 401, 403),
          },
        },
      },
      async (request, reply) => {
        const p = principalOf(request);
        const { apiKey, key } = await createApiKey(
          res,
          p.tenantId,
          actorOf(request),
          { ...request.body, createdBy: p.userId },
          p.permissions,
        );
        return reply.code(201).send({ ...apiKey, key });
      },
    );
    app.delete(
      '/api-keys/:id',
      {
        config: { access: 'apikeys:manage' },
        schema: {
          tags: ['api-keys'],
          summary: 'Revoke an API key (effective within a second)',
          params: IdParams,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404, 409) },
        },
      },
      async (request, reply) => {
        await revokeApiKey(res, principalOf(request).tenantId, actorOf(request), request.params.id);
        return reply.code(204).send(null);
      },
    );
  };
}
