import { Type, type Static } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import { AppError } from '@steward/core/errors/app-error';
import { isDatabaseUnavailable } from '@steward/core/errors/database-unavailable';
import { scimErrorBody, ScimError } from '@steward/core/scim/scim-error';
import {
  createScimGroup,
  deleteScimGroup,
  getScimGroup,
  listScimGroups,
  patchScimGroup,
  replaceScimGroup,
} from '@steward/core/scim/scim-group-service';
import { getScimSettings, putScimSettings } from '@steward/core/scim/scim-settings-service';
import {
  authenticateScim,
  createScimToken,
  listScimTokens,
  revokeScimToken,
  type ScimCaller,
} from '@steward/core/scim/scim-token-service';
import {
  createScimUser,
  deleteScimUser,
  getScimUser,
  listScimUsers,
  patchScimUser,
  replaceScimUser,
} from '@steward/core/scim/scim-user-service';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { DATABASE_UNAVAILABLE_MESSAGE, noteDatabaseUnavailable } from '../http/error-handler.ts';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors, IdParams, Page, PageQuery } from '../http/schemas.ts';

const SCIM_TYPE = 'application/scim+json; charset=utf-8';

const ListQuery = Type.Object(
  {
    filter: Type.Optional(Type.String({ maxLength: 1000 })),
    startIndex: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    count: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000 })),
  },
  { additionalProperties: true },
);
const ResourceParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });
const Resource = Type.Object({}, { additionalProperties: true });

type Body = Record<string, unknown>;
/** The six SCIM operations of one resource type (Users, Groups), as the services export them. */
interface ScimResourceHandlers {
  list(res: Resources, caller: ScimCaller, base: string, query: Static<typeof ListQuery>): Promise<unknown>;
  get(res: Resources, caller: ScimCaller, base: string, id: string): Promise<unknown>;
  create(res: Resources, caller: ScimCaller, base: string, body: Body): Promise<unknown>;
  replace(res: Resources, caller: ScimCaller, base: string, id: string, body: Body): Promise<unknown>;
  patch(res: Resources, caller: ScimCaller, base: string, id: string, body: Body): Promise<unknown>;
  delete(res: Resources, caller: ScimCaller, base: string, id: string): Promise<void>;
}
type Summaries = Record<keyof ScimResourceHandlers, string>;

/**
 * SCIM 2.0 at /scim/v2 (outside /api/v1): its own bearer token (a tenant's SCIM token), its own
 * media type and error format. Fastify sees these routes as public; the hook below authenticates.
 */
export function scimRoutes(res: Resources) {
  const base = `${res.tokens.issuer.replace(/\/+$/, '')}/scim/v2`;
  const callers = new WeakMap<FastifyRequest, ScimCaller>();
  const callerOf = (request: FastifyRequest) => {
    const c = callers.get(request);
    if (!c) throw new ScimError(401, 'not authenticated');
    return c;
  };
  const send = (reply: FastifyReply, status: number, body: unknown) =>
    reply.code(status).type(SCIM_TYPE).send(JSON.stringify(body));

  return async (instance: FastifyInstance) => {
    instance.addContentTypeParser(
      ['application/scim+json', 'application/json'],
      { parseAs: 'string' },
      (_request, body, done) => {
        try {
          const parsed: unknown = JSON.parse(body as string);
          if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
            return done(new ScimError(400, 'the body must be a JSON object', 'invalidSyntax'), undefined);
          done(null, parsed);
        } catch {
          done(new ScimError(400, 'the body is not valid JSON', 'invalidSyntax'), undefined);
        }
      },
    );
    instance.addHook('onRequest', async (request) => {
      const header = request.headers.authorization;
      const token = header ? /^Bearer\s+(\S+)$/i.exec(header)?.[1] : undefined;
      callers.set(
        request,
        await authenticateScim(res, token, { requestId: String(request.id), ip: request.ip }),
      );
    });
    instance.setErrorHandler((error: FastifyError, request, reply) => {
      if (error instanceof ScimError) {
        if (error.status === 401) reply.header('www-authenticate', 'Bearer realm="scim"');
        if (error.status >= 500) request.log.error({ err: error }, 'SCIM request failed');
        return send(reply, error.status, scimErrorBody(error.status, error.message, error.scimType));
      }
      if (error instanceof AppError) {
        if (error.status >= 500) request.log.error({ err: error }, 'SCIM request failed');
        return send(reply, error.status, scimErrorBody(error.status, error.message));
      }
      if (isDatabaseUnavailable(error)) {
        noteDatabaseUnavailable(request, reply, error);
        return send(reply, 503, scimErrorBody(503, DATABASE_UNAVAILABLE_MESSAGE));
      }
      if (error.validation) {
        const first = error.validation[0];
        return send(
          reply,
          400,
          scimErrorBody(
            400,
            `${error.validationContext ?? 'request'}${first?.instancePath ?? ''} ${first?.message ?? 'is invalid'}`,
            'invalidValue',
          ),
        );
      }
      const pgCode = (error as { code?: unknown }).code;
      if ((error as Error).name === 'PostgresError' && typeof pgCode === 'string' && pgCode.startsWith('22'))
        return send(
          reply,
          400,
          scimErrorBody(400, 'a value cannot be stored (for example a NUL character)', 'invalidValue'),
        );
      if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500)
        return send(
          reply,
          error.statusCode,
          scimErrorBody(error.statusCode, 'the request could not be processed'),
        );
      request.log.error({ err: error }, 'unhandled SCIM error');
      return send(reply, 500, scimErrorBody(500, 'internal error; quote the request id when reporting it'));
    });
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    const common = { config: { access: 'public' as const } };
    const tags = ['scim'];

    app.get(
      '/ServiceProviderConfig',
      { ...common, schema: { tags, summary: 'What this SCIM service supports', security: [] } },
      async (_request, reply) =>
        send(reply, 200, {
          schemas: ['urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig'],
          patch: { supported: true },
          bulk: { supported: false, maxOperations: 0, maxPayloadSize: 0 },
          filter: { supported: true, maxResults: 500 },
          changePassword: { supported: false },
          sort: { supported: false },
          etag: { supported: false },
          authenticationSchemes: [
            { type: 'oauthbearertoken', name: 'SCIM token', description: 'A tenant SCIM token (scim_...)' },
          ],
        }),
    );

    const resource = (path: '/Users' | '/Groups', handlers: ScimResourceHandlers, summaries: Summaries) => {
      app.get(
        path,
        { ...common, schema: { tags, summary: summaries.list, security: [], querystring: ListQuery } },
        async (request, reply) =>
          send(reply, 200, await handlers.list(res, callerOf(request), base, request.query)),
      );
      app.get(
        `${path}/:id`,
        { ...common, schema: { tags, summary: summaries.get, security: [], params: ResourceParams } },
        async (request, reply) =>
          send(reply, 200, await handlers.get(res, callerOf(request), base, request.params.id)),
      );
      app.post(
        path,
        { ...common, schema: { tags, summary: summaries.create, security: [], body: Resource } },
        async (request, reply) =>
          send(reply, 201, await handlers.create(res, callerOf(request), base, request.body)),
      );
      app.put(
        `${path}/:id`,
        {
          ...common,
          schema: { tags, summary: summaries.replace, security: [], params: ResourceParams, body: Resource },
        },
        async (request, reply) =>
          send(
            reply,
            200,
            await handlers.replace(res, callerOf(request), base, request.params.id, request.body),
          ),
      );
      app.patch(
        `${path}/:id`,
        {
          ...common,
          schema: { tags, summary: summaries.patch, security: [], params: ResourceParams, body: Resource },
        },
        async (request, reply) =>
          send(
            reply,
            200,
            await handlers.patch(res, callerOf(request), base, request.params.id, request.body),
          ),
      );
      app.delete(
        `${path}/:id`,
        { ...common, schema: { tags, summary: summaries.delete, security: [], params: ResourceParams } },
        async (request, reply) => {
          await handlers.delete(res, callerOf(request), base, request.params.id);
          return reply.code(204).send();
        },
      );
    };

    resource(
      '/Users',
      {
        list: listScimUsers,
        get: getScimUser,
        create: createScimUser,
        replace: replaceScimUser,
        patch: patchScimUser,
        delete: deleteScimUser,
      },
      {
        list: 'List users (filter, startIndex, count)',
        get: 'One user',
        create: 'Provision a user (member of the tenant)',
        replace: 'Replace a user',
        patch: 'PatchOp on a user (active=false deprovisions)',
        delete: 'Deprovision: remove from the tenant, revoke sessions',
      },
    );
    resource(
      '/Groups',
      {
        list: listScimGroups,
        get: getScimGroup,
        create: createScimGroup,
        replace: replaceScimGroup,
        patch: patchScimGroup,
        delete: deleteScimGroup,
      },
      {
        list: 'List groups (filter, startIndex, count)',
        get: 'One group',
        create: 'Create a group (its members get its mapped role)',
        replace: 'Replace a group',
        patch: 'PatchOp on a group (members, displayName)',
        delete: 'Delete a group (its members lose its role)',
      },
    );
  };
}

const ScimTokenSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  prefix: Type.String({ description: 'the public part of the token, to recognise it' }),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});
const RoleName = Type.String({ pattern: '^[a-z][a-z0-9_-]{0,39}$' });
const ScimSettingsSchema = Type.Object(
  {
    defaultRole: RoleName,
    groupRoles: Type.Record(Type.String({ minLength: 1, maxLength: 256 }), RoleName, {
      description: 'SCIM group displayName -> role; of several, the strongest role wins',
    }),
  },
  { additionalProperties: false },
);

/** Admin API (under /api/v1) for SCIM tokens and settings. */
export function scimAdminRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/scim-tokens',
      {
        config: { access: 'sso:read' },
        schema: {
          tags: ['scim'],
          summary: 'SCIM tokens of the tenant (never their secrets)',
          querystring: PageQuery,
          response: { 200: Page(ScimTokenSchema), ...errors(400, 401, 403) },
        },
      },
      async (request) => listScimTokens(res, principalOf(request).tenantId, request.query),
    );
    app.post(
      '/scim-tokens',
      {
        config: { access: 'sso:manage' },
        schema: {
          tags: ['scim'],
          summary: 'Create a SCIM bearer token; the token is in this response only',
          body: Type.Object(
            { name: Type.String({ minLength: 1, maxLength: 100 }) },
            { additionalProperties: false },
          ),
          response: {
            201: Type.Composite([ScimTokenSchema, Type.Object({ token: Type.String() })]),
            ...errors(400, 401, 403),
          },
        },
      },
      async (request, reply) => {
        const p = principalOf(request);
        const { scimToken, token } = await createScimToken(res, p.tenantId, actorOf(request), {
          name: request.body.name,
          createdBy: p.userId,
        });
        return reply.code(201).send({ ...scimToken, token });
      },
    );
    app.delete(
      '/scim-tokens/:id',
      {
        config: { access: 'sso:manage' },
        schema: {
          tags: ['scim'],
          summary: 'Revoke a SCIM token (effective at once)',
          params: IdParams,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404, 409) },
        },
      },
      async (request, reply) => {
        await revokeScimToken(res, principalOf(request).tenantId, actorOf(request), request.params.id);
        return reply.code(204).send(null);
      },
    );
    app.get(
      '/scim-settings',
      {
        config: { access: 'sso:read' },
        schema: {
          tags: ['scim'],
          summary: 'The role SCIM gives provisioned users, and which group gives which role',
          response: { 200: ScimSettingsSchema, ...errors(401, 403) },
        },
      },
      async (request) => getScimSettings(res, principalOf(request).tenantId),
    );
    app.put(
      '/scim-settings',
      {
        config: { access: 'sso:manage' },
        schema: {
          tags: ['scim'],
          summary: 'Set the SCIM default role and the group-to-role mapping',
          body: ScimSettingsSchema,
          response: { 200: ScimSettingsSchema, ...errors(400, 401, 403) },
        },
      },
      async (request) => {
        const p = principalOf(request);
        return putScimSettings(res, p.tenantId, actorOf(request), request.body, p.permissions);
      },
    );
  };
}
