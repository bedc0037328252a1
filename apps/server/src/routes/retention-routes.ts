import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import {
  listRetentionPolicies,
  purgeTenant,
  setRetentionPolicies,
} from '@steward/core/privacy/retention-service';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors } from '../http/schemas.ts';

const DataClass = Type.Union([
  Type.Literal('tasks'),
  Type.Literal('events'),
  Type.Literal('webhook_deliveries'),
  Type.Literal('notifications'),
  Type.Literal('llm_usage'),
  Type.Literal('exports'),
  Type.Literal('consents'),
]);

const Policies = Type.Array(
  Type.Object({ dataClass: DataClass, days: Type.Integer(), updatedAt: Type.String() }),
);

/** Retention per data class; a daily job (and POST /retention-policies/purge) deletes what is older. */
export function retentionRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/retention-policies',
      {
        config: { access: 'privacy:read' },
        schema: {
          tags: ['privacy'],
          summary: 'Retention policies (data classes without one are kept)',
          response: { 200: Type.Object({ items: Policies }), ...errors(401, 403) },
        },
      },
      async (request) => ({ items: await listRetentionPolicies(res, principalOf(request).tenantId) }),
    );
    app.put(
      '/retention-policies',
      {
        config: { access: 'privacy:manage' },
        schema: {
          tags: ['privacy'],
          summary: 'Replace the retention policies (data classes left out are kept forever)',
          body: Type.Object(
            {
              policies: Type.Array(
                Type.Object(
                  { dataClass: DataClass, days: Type.Integer({ minimum: 1, maximum: 36500 }) },
                  { additionalProperties: false },
                ),
                { maxItems: 20 },
              ),
            },
            { additionalProperties: false },
          ),
          response: { 200: Type.Object({ items: Policies }), ...errors(400, 401, 403) },
        },
      },
      async (request) => ({
        items: await setRetentionPolicies(
          res,
          principalOf(request).tenantId,
          actorOf(request),
          request.body.policies,
        ),
      }),
    );
    app.post(
      '/retention-policies/purge',
      {
        config: { access: 'privacy:manage' },
        schema: {
          tags: ['privacy'],
          summary: 'Run the retention purge for this tenant now (it also runs daily)',
          response: {
            200: Type.Object({ purged: Type.Record(Type.String(), Type.Integer()) }),
            ...errors(401, 403),
          },
        },
      },
      async (request) => ({
        purged: await purgeTenant(res, principalOf(request).tenantId, actorOf(request)),
      }),
    );
  };
}
