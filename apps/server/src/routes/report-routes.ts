import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Resources } from '@steward/core/resources';
import { generateReport } from '@steward/core/reports/report-service';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors } from '../http/schemas.ts';

export function reportRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/reports/:kind',
      {
        config: { access: 'reports:read' },
        schema: {
          tags: ['reports'],
          summary:
            'A compliance report of the tenant: access-review, config-changes or violations, as CSV, PDF or JSON (audited)',
          params: Type.Object(
            {
              kind: Type.String({
                maxLength: 40,
                description: 'access-review, config-changes or violations (another kind: 404)',
              }),
            },
            { additionalProperties: false },
          ),
          querystring: Type.Object(
            {
              format: Type.Union([Type.Literal('csv'), Type.Literal('pdf'), Type.Literal('json')], {
                default: 'json',
              }),
              since: Type.Optional(
                Type.String({ maxLength: 40, description: 'ISO 8601; audit-based reports' }),
              ),
              until: Type.Optional(Type.String({ maxLength: 40, description: 'ISO 8601, exclusive' })),
            },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Unknown({ description: 'text/csv (RFC 4180), application/pdf or the report as JSON' }),
            ...errors(400, 401, 403, 404),
          },
        },
      },
      async (request, reply) => {
        const { format, since, until } = request.query;
        const out = await generateReport(
          res,
          principalOf(request).tenantId,
          actorOf(request),
          request.params.kind,
          format,
          { since, until },
        );
        reply.header('cache-control', 'no-store');
        if (format === 'json') return out.body;
        return reply
          .type(out.contentType)
          .header('content-disposition', `attachment; filename="${out.filename}"`)
          .send(out.body);
      },
    );
  };
}
