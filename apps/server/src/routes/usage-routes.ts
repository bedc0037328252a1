import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import { usageSummary } from '@steward/core/planner/llm/llm-usage';
import type { FastifyInstance } from 'fastify';
import { principalOf } from '../http/request-actor.ts';
import { errors } from '../http/schemas.ts';

const Totals = Type.Object({
  calls: Type.Integer(),
  inputTokens: Type.Integer(),
  outputTokens: Type.Integer(),
});

const UsageDay = Type.Object({
  day: Type.String({ description: 'UTC day, YYYY-MM-DD' }),
  provider: Type.String(),
  model: Type.String(),
  calls: Type.Integer(),
  inputTokens: Type.Integer(),
  outputTokens: Type.Integer(),
});

export function usageRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/usage/llm',
      {
        config: { access: 'tenant:read' },
        schema: {
          tags: ['usage'],
          summary: "Tokens the tenant's LLM planner used, per UTC day, provider and model",
          querystring: Type.Object(
            {
              since: Type.Optional(
                Type.String({ format: 'date-time', description: 'default: 30 days before until' }),
              ),
              until: Type.Optional(Type.String({ format: 'date-time', description: 'default: now' })),
            },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Object({
              since: Type.String(),
              until: Type.String(),
              items: Type.Array(UsageDay),
              totals: Totals,
            }),
            ...errors(400, 401, 403),
          },
        },
      },
      async (request) => usageSummary(res, principalOf(request).tenantId, request.query),
    );
  };
}
