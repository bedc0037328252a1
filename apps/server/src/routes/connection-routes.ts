import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import {
  CONNECTION_NAME_PATTERN,
  createConnection,
  deleteConnection,
  getConnection,
  listConnections,
  MAX_SECRET_LENGTH,
  updateConnection,
} from '@steward/core/connections/connection-service';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors, IdParams, Page, PageQuery, UseHealthSchema } from '../http/schemas.ts';

const Kind = Type.Union([Type.Literal('smtp'), Type.Literal('http'), Type.Literal('imap')]);

const ConnectionSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  kind: Kind,
  name: Type.String(),
  config: Type.Record(Type.String(), Type.Unknown(), { description: 'non-secret settings' }),
  isDefault: Type.Boolean(),
  hasSecret: Type.Boolean({ description: 'a secret is stored (it is never returned)' }),
  hasClientKey: Type.Optional(
    Type.Boolean({ description: 'a mutual-TLS client key is stored (it is never returned)' }),
  ),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  health: UseHealthSchema,
});

const Name = Type.String({ pattern: CONNECTION_NAME_PATTERN, maxLength: 100 });
const Secret = Type.String({
  minLength: 1,
  maxLength: MAX_SECRET_LENGTH,
  description: 'password (smtp) or header value (http); write-only, stored encrypted',
});
const ClientKey = Type.String({
  minLength: 1,
  maxLength: MAX_SECRET_LENGTH,
  description:
    'http: the PEM private key of config.clientCertificate (mutual TLS); write-only, stored encrypted',
});
const Config = Type.Record(Type.String(), Type.Unknown(), {
  description:
    'smtp: host, port?, secure?, requireTls?, from, fromName?, username?, allowPrivateNetwork?; ' +
    'http: baseUrl, headerName?, allowPrivateNetwork?, clientCertificate? (PEM, mutual TLS), caCertificate? (PEM)',
});

export function connectionRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/connections',
      {
        config: { access: 'connections:read' },
        schema: {
          tags: ['connections'],
          summary:
            'Connections (SMTP servers, HTTP APIs, IMAP mailboxes), by name; secrets are never returned',
          querystring: Type.Composite([PageQuery, Type.Object({ kind: Type.Optional(Kind) })], {
            additionalProperties: false,
          }),
          response: { 200: Page(ConnectionSchema), ...errors(400, 401, 403) },
        },
      },
      async (request) => listConnections(res, principalOf(request).tenantId, request.query),
    );
    app.post(
      '/connections',
      {
        config: { access: 'connections:manage' },
        schema: {
          tags: ['connections'],
          summary: 'Add a connection; its secret is stored encrypted and can only be replaced',
          body: Type.Object(
            {
              kind: Kind,
              name: Name,
              config: Config,
              secret: Type.Optional(Secret),
              clientKey: Type.Optional(ClientKey),
              isDefault: Type.Optional(Type.Boolean({ description: 'the default connection of its kind' })),
            },
            { additionalProperties: false },
          ),
          response: { 201: ConnectionSchema, ...errors(400, 401, 403, 409) },
        },
      },
      async (request, reply) =>
        reply
          .code(201)
          .send(await createConnection(res, principalOf(request).tenantId, actorOf(request), request.body)),
    );
    app.get(
      '/connections/:id',
      {
        config: { access: 'connections:read' },
        schema: {
          tags: ['connections'],
          summary: 'One connection (without its secret)',
          params: IdParams,
          response: { 200: ConnectionSchema, ...errors(400, 401, 403, 404) },
        },
      },
      async (request) => getConnection(res, principalOf(request).tenantId, request.params.id),
    );
    app.patch(
      '/connections/:id',
      {
        config: { access: 'connections:manage' },
        schema: {
          tags: ['connections'],
          summary:
            'Change a connection: config is merged (null removes a setting); secret replaces or (null) removes',
          params: IdParams,
          body: Type.Object(
            {
              name: Type.Optional(Name),
              config: Type.Optional(Config),
              secret: Type.Optional(Type.Union([Secret, Type.Null()])),
              clientKey: Type.Optional(Type.Union([ClientKey, Type.Null()])),
              isDefault: Type.Optional(Type.Boolean()),
            },
            { additionalProperties: false, minProperties: 1 },
          ),
          response: { 200: ConnectionSchema, ...errors(400, 401, 403, 404, 409) },
        },
      },
      async (request) =>
        updateConnection(
          res,
          principalOf(request).tenantId,
          actorOf(request),
          request.params.id,
          request.body,
        ),
    );
    app.delete(
      '/connections/:id',
      {
        config: { access: 'connections:manage' },
        schema: {
          tags: ['connections'],
          summary: 'Delete a connection and its secret',
          params: IdParams,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        await deleteConnection(res, principalOf(request).tenantId, actorOf(request), request.params.id);
        return reply.code(204).send(null);
      },
    );
  };
}
