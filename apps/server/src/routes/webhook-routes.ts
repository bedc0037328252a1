import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import {
  createWebhook,
  deleteWebhook,
  listWebhooks,
  MAX_ROTATION_GRACE_SECONDS,
  receiveWebhook,
  rotateWebhookSecret,
  SIGNATURE_HEADER,
} from '@steward/core/watchers/webhook-service';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors, IdParams, Page, PageQuery } from '../http/schemas.ts';

const WebhookSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  path: Type.String({ description: 'POST deliveries here (after the base URL of this installation)' }),
  lastReceivedAt: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
});

const CreatedWebhookSchema = Type.Composite([
  WebhookSchema,
  Type.Object({
    secret: Type.String({
      description:
        'shown once: send it as Authorization: Bearer <secret>, or sign with it (X-Steward-Signature)',
    }),
  }),
]);

const RotatedWebhookSchema = Type.Composite([
  CreatedWebhookSchema,
  Type.Object({
    previousValidUntil: Type.Union([Type.String(), Type.Null()], {
      description: 'the previous secret keeps working until then (null: it stopped at once)',
    }),
  }),
]);

/** Management of inbound webhooks, under /api/v1. */
export function webhookRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/webhooks',
      {
        config: { access: 'connections:read' },
        schema: {
          tags: ['webhooks'],
          summary: 'Inbound webhooks of the tenant (never their secrets)',
          querystring: PageQuery,
          response: { 200: Page(WebhookSchema), ...errors(400, 401, 403) },
        },
      },
      async (request) => listWebhooks(res, principalOf(request).tenantId, request.query),
    );
    app.post(
      '/webhooks',
      {
        config: { access: 'connections:manage' },
        schema: {
          tags: ['webhooks'],
          summary: 'Create an inbound webhook; its secret is in this response only',
          body: Type.Object(
            { name: Type.String({ minLength: 1, maxLength: 100, pattern: '\\S' }) },
            { additionalProperties: false },
          ),
          response: { 201: CreatedWebhookSchema, ...errors(400, 401, 403, 409) },
        },
      },
      async (request, reply) =>
        reply
          .code(201)
          .header('cache-control', 'no-store')
          .send(await createWebhook(res, principalOf(request).tenantId, actorOf(request), request.body)),
    );
    app.post(
      '/webhooks/:id/rotate-secret',
      {
        config: { access: 'connections:manage' },
        schema: {
          tags: ['webhooks'],
          summary:
            'Give a webhook a new secret (in this response only); the previous one keeps working for graceSeconds',
          params: IdParams,
          body: Type.Object(
            {
              graceSeconds: Type.Optional(
                Type.Integer({
                  minimum: 0,
                  maximum: MAX_ROTATION_GRACE_SECONDS,
                  description: 'how long the previous secret keeps working (default 86400; 0: not at all)',
                }),
              ),
            },
            { additionalProperties: false },
          ),
          response: { 200: RotatedWebhookSchema, ...errors(400, 401, 403, 404) },
        },
      },
      async (request, reply) =>
        reply
          .header('cache-control', 'no-store')
          .send(
            await rotateWebhookSecret(
              res,
              principalOf(request).tenantId,
              actorOf(request),
              request.params.id,
              request.body ?? {},
            ),
          ),
    );
    app.delete(
      '/webhooks/:id',
      {
        config: { access: 'connections:manage' },
        schema: {
          tags: ['webhooks'],
          summary: 'Delete an inbound webhook (its URL answers 404 from now on)',
          params: IdParams,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        await deleteWebhook(res, principalOf(request).tenantId, actorOf(request), request.params.id);
        return reply.code(204).send(null);
      },
    );
  };
}

const header = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);

/**
 * The public inbound route, outside /api (no bearer token of a user or API key): the hook's own
 * secret or signature authenticates it. The body is kept raw (for the HMAC) by a content parser
 * that applies to this plugin only.
 */
export function inboundHookRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    instance.removeAllContentTypeParsers();
    instance.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.post(
      '/hooks/:tenantSlug/:hookId',
      {
        config: { access: 'public' },
        schema: {
          tags: ['webhooks'],
          summary: 'Deliver an event to an inbound webhook',
          description:
            `Authenticate with Authorization: Bearer <secret>, or sign: ${SIGNATURE_HEADER}: ` +
            't=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed with the secret> ' +
            '(5-minute window; a signature is accepted once). The JSON body maps to an event: ' +
            'type, id (dedupe key; or the X-Steward-Event-Id / Idempotency-Key header), subject, ' +
            'body, from, data.',
          security: [],
          params: Type.Object({ tenantSlug: Type.String(), hookId: Type.String() }),
          response: {
            202: Type.Object({
              eventId: Type.String({ format: 'uuid' }),
              taskId: Type.String({ format: 'uuid' }),
              duplicate: Type.Boolean(),
            }),
            ...errors(400, 401, 404, 413, 415),
          },
        },
      },
      async (request, reply) => {
        const intake = await receiveWebhook(res, {
          tenantSlug: request.params.tenantSlug,
          hookId: request.params.hookId,
          authorization: request.headers.authorization,
          signature: header(request.headers[SIGNATURE_HEADER]),
          eventIdHeader:
            header(request.headers['x-steward-event-id']) ?? header(request.headers['idempotency-key']),
          contentType: request.headers['content-type'],
          rawBody: Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0),
          requestId: String(request.id),
          ip: request.ip,
        });
        return reply.code(202).send(intake);
      },
    );
  };
}
