import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { Resources } from '@steward/core/resources';
import {
  createDestination,
  deleteDestination,
  getDestination,
  listDestinations,
  updateDestination,
} from '@steward/core/siem/destination-service';
import { MAX_SIEM_SECRET_LENGTH, SIEM_NAME_PATTERN } from '@steward/core/siem/siem-destination';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors, IdParams, NullableString, Page, PageQuery } from '../http/schemas.ts';

const Kind = Type.Union([Type.Literal('syslog'), Type.Literal('https')]);

const DestinationSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  kind: Kind,
  config: Type.Record(Type.String(), Type.Unknown(), { description: 'non-secret settings' }),
  enabled: Type.Boolean(),
  hasSecret: Type.Boolean({ description: 'a token is stored (it is never returned)' }),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  status: Type.Object({
    forwardedSeq: Type.Integer({ description: 'the last audit seq the destination acknowledged' }),
    headSeq: Type.Integer({ description: "the newest seq of the tenant's audit chain" }),
    lag: Type.Integer(),
    forwarded: Type.Integer({ description: 'entries delivered so far' }),
    attempts: Type.Integer({ description: 'failed attempts since the last delivery' }),
    lastError: NullableString(),
    lastErrorAt: NullableString(),
  }),
});

const Name = Type.String({ pattern: SIEM_NAME_PATTERN, maxLength: 100 });
const Secret = Type.String({
  minLength: 1,
  maxLength: MAX_SIEM_SECRET_LENGTH,
  description: 'https: the token sent in tokenHeader (default Authorization: Bearer …); write-only',
});
const Config = Type.Record(Type.String(), Type.Unknown(), {
  description:
    'syslog: host, port, tls?, caCert?, facility?, hostname?, batchSize?, allowPrivateNetwork?; ' +
    'https: url, headers?, tokenHeader?, tokenPrefix?, timeoutSeconds?, caCert?, batchSize?, allowPrivateNetwork?',
});

export function siemRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/siem/destinations',
      {
        config: { access: 'siem:read' },
        schema: {
          tags: ['siem'],
          summary: 'SIEM destinations of the audit stream, with how far each has forwarded',
          querystring: PageQuery,
          response: { 200: Page(DestinationSchema), ...errors(400, 401, 403) },
        },
      },
      async (request) => listDestinations(res, principalOf(request).tenantId, request.query),
    );
    app.post(
      '/siem/destinations',
      {
        config: { access: 'siem:manage' },
        schema: {
          tags: ['siem'],
          summary: 'Add a destination: syslog (RFC 5424 over TCP or TLS) or an HTTPS JSON endpoint',
          body: Type.Object(
            {
              name: Name,
              kind: Kind,
              config: Config,
              secret: Type.Optional(Secret),
              enabled: Type.Optional(Type.Boolean()),
            },
            { additionalProperties: false },
          ),
          response: { 201: DestinationSchema, ...errors(400, 401, 403, 409) },
        },
      },
      async (request, reply) =>
        reply
          .code(201)
          .send(await createDestination(res, principalOf(request).tenantId, actorOf(request), request.body)),
    );
    app.get(
      '/siem/destinations/:id',
      {
        config: { access: 'siem:read' },
        schema: {
          tags: ['siem'],
          summary: 'One SIEM destination and its forwarding status',
          params: IdParams,
          response: { 200: DestinationSchema, ...errors(400, 401, 403, 404) },
        },
      },
      async (request) => getDestination(res, principalOf(request).tenantId, request.params.id),
    );
    app.patch(
      '/siem/destinations/:id',
      {
        config: { access: 'siem:manage' },
        schema: {
          tags: ['siem'],
          summary: 'Change a destination: config is merged (null removes); secret replaces or (null) removes',
          params: IdParams,
          body: Type.Object(
            {
              name: Type.Optional(Name),
              config: Type.Optional(Config),
              secret: Type.Optional(Type.Union([Secret, Type.Null()])),
              enabled: Type.Optional(Type.Boolean()),
            },
            { additionalProperties: false, minProperties: 1 },
          ),
          response: { 200: DestinationSchema, ...errors(400, 401, 403, 404, 409) },
        },
      },
      async (request) =>
        updateDestination(
          res,
          principalOf(request).tenantId,
          actorOf(request),
          request.params.id,
          request.body,
        ),
    );
    app.delete(
      '/siem/destinations/:id',
      {
        config: { access: 'siem:manage' },
        schema: {
          tags: ['siem'],
          summary: 'Delete a destination, its token and its cursor',
          params: IdParams,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        await deleteDestination(res, principalOf(request).tenantId, actorOf(request), request.params.id);
        return reply.code(204).send(null);
      },
    );
  };
}
