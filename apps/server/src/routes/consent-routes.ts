import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import { listConsents, recordConsent } from '@steward/core/privacy/consent-service';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors, IdParams } from '../http/schemas.ts';

const Consent = Type.Object({
  id: Type.String({ format: 'uuid' }),
  userId: Type.String({ format: 'uuid' }),
  purpose: Type.String(),
  granted: Type.Boolean(),
  source: Type.String(),
  recordedAt: Type.String(),
});

/** Consent records per member: purpose, granted or withdrawn, when, from where (append-only). */
export function consentRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/users/:id/consents',
      {
        config: { access: 'privacy:read' },
        schema: {
          tags: ['privacy'],
          summary: "A member's consent: the current state per purpose and the full history",
          params: IdParams,
          response: {
            200: Type.Object({ current: Type.Array(Consent), history: Type.Array(Consent) }),
            ...errors(400, 401, 403, 404),
          },
        },
      },
      async (request) => listConsents(res, principalOf(request).tenantId, request.params.id),
    );
    app.post(
      '/users/:id/consents',
      {
        config: { access: 'privacy:manage' },
        schema: {
          tags: ['privacy'],
          summary: 'Record that a member granted or withdrew consent for a purpose',
          params: IdParams,
          body: Type.Object(
            {
              purpose: Type.String({
                pattern: '^[a-z][a-z0-9_.-]{0,63}$',
                description: 'e.g. marketing-email',
              }),
              granted: Type.Boolean(),
              source: Type.String({
                minLength: 1,
                maxLength: 200,
                pattern: '\\S',
                description: 'where it was given, e.g. signup-form',
              }),
            },
            { additionalProperties: false },
          ),
          response: { 201: Consent, ...errors(400, 401, 403, 404) },
        },
      },
      async (request, reply) =>
        reply
          .code(201)
          .send(
            await recordConsent(
              res,
              principalOf(request).tenantId,
              actorOf(request),
              request.params.id,
              request.body,
            ),
          ),
    );
  };
}
