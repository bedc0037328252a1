import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import { forbidden, notFound } from '@steward/core/errors/app-error';
import { addPushSubscription, removePushSubscription } from '@steward/core/push/push-service';
import { vapidKeys } from '@steward/core/push/vapid';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors } from '../http/schemas.ts';

const Endpoint = Type.String({ minLength: 1, maxLength: 2000 });

/** Web push subscriptions: a signed-in approver's browsers, told about new approvals. */
export function pushRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    const publicKey = vapidKeys(res.master).publicKey;
    const userOf = (request: Parameters<typeof principalOf>[0]) => {
      const p = principalOf(request);
      if (p.kind !== 'user' || !p.userId) throw forbidden('push notifications are for people, not API keys');
      return p;
    };
    app.get(
      '/push/vapid-key',
      {
        config: { access: 'session' },
        schema: {
          tags: ['push'],
          summary: "The installation's VAPID public key (applicationServerKey for PushManager.subscribe)",
          response: { 200: Type.Object({ publicKey: Type.String() }), ...errors(401, 403) },
        },
      },
      async () => ({ publicKey }),
    );
    app.post(
      '/push/subscriptions',
      {
        config: { access: 'approvals:decide' },
        schema: {
          tags: ['push'],
          summary: 'Notify this browser (a PushSubscription) of new approvals in the current tenant',
          body: Type.Object(
            {
              endpoint: Endpoint,
              keys: Type.Object(
                {
                  p256dh: Type.String({ minLength: 1, maxLength: 200 }),
                  auth: Type.String({ minLength: 1, maxLength: 100 }),
                },
                { additionalProperties: false },
              ),
              expirationTime: Type.Optional(Type.Union([Type.Number(), Type.Null()])),
            },
            { additionalProperties: false },
          ),
          response: { 201: Type.Object({ id: Type.String() }), ...errors(400, 401, 403) },
        },
      },
      async (request, reply) => {
        const p = userOf(request);
        const { endpoint, keys } = request.body;
        return reply
          .code(201)
          .send(await addPushSubscription(res, p.tenantId, actorOf(request), p.userId!, { endpoint, keys }));
      },
    );
    app.delete(
      '/push/subscriptions',
      {
        config: { access: 'session' },
        schema: {
          tags: ['push'],
          summary: 'Stop notifying this browser',
          body: Type.Object({ endpoint: Endpoint }, { additionalProperties: false }),
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        const p = userOf(request);
        const removed = await removePushSubscription(
          res,
          p.tenantId,
          actorOf(request),
          p.userId!,
          request.body.endpoint,
        );
        if (!removed) throw notFound('push subscription');
        return reply.code(204).send(null);
      },
    );
  };
}
