import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { appliedVersion } from '@steward/db/migrate';

export function systemRoutes(res: Resources, metrics: Registry, expectedSchemaVersion: number) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/healthz',
      {
        schema: {
          tags: ['system'],
          summary: 'The process is alive',
          security: [],
          response: { 200: Type.Object({ ok: Type.Boolean() }) },
        },
      },
      async () => ({ ok: true }),
    );
    app.get(
      '/readyz',
      {
        schema: {
          tags: ['system'],
          summary: 'The database answers and its schema is current',
          security: [],
          response: {
            200: Type.Object({ ok: Type.Boolean(), schemaVersion: Type.Integer() }),
            503: Type.Object({ ok: Type.Boolean(), reason: Type.String() }),
          },
        },
      },
      async (_request, reply) => {
        try {
          const version = await res.db.withSystemAccess((tx) => appliedVersion(tx));
          if (version < expectedSchemaVersion) {
            return reply
              .code(503)
              .send({ ok: false, reason: `schema version ${version}, expected ${expectedSchemaVersion}` });
          }
          return { ok: true, schemaVersion: version };
        } catch {
          return reply.code(503).send({ ok: false, reason: 'database unreachable' });
        }
      },
    );
    app.get(
      '/metrics',
      { schema: { tags: ['system'], summary: 'Prometheus metrics', security: [], produces: ['text/plain'] } },
      async (_request, reply) => reply.type(metrics.contentType).send(await metrics.metrics()),
    );
    app.get(
      '/openapi.json',
      { schema: { tags: ['system'], summary: 'This OpenAPI 3.1 document', security: [] } },
      async () => instance.swagger(),
    );
  };
}
