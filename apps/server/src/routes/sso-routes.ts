import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import { AppError } from '@steward/core/errors/app-error';
import {
  createSsoConnection,
  deleteSsoConnection,
  getSsoConnection,
  listSsoConnections,
  updateSsoConnection,
} from '@steward/core/sso/sso-connection-service';
import {
  assertSsoCallback,
  exchangeSsoCode,
  finishSsoLogin,
  ssoMetadata,
  startSsoLogin,
} from '@steward/core/sso/sso-login-service';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { actorOf, principalOf, requestInfo } from '../http/request-actor.ts';
import { errors, IdParams, Page, PageQuery } from '../http/schemas.ts';
import { MfaRequiredSchema, Tokens } from './auth-routes.ts';

const Protocol = Type.Union([Type.Literal('oidc'), Type.Literal('saml')]);
const RoleName = Type.String({ pattern: '^[a-z][a-z0-9_-]{0,39}$' });
const RoleMapping = Type.Record(Type.String({ minLength: 1, maxLength: 256 }), RoleName, {
  description:
    'group name (as the provider sends it) -> role name; of several matches the strongest role wins',
});
const GroupsAttribute = Type.String({
  minLength: 1,
  maxLength: 256,
  description: 'the ID token claim or SAML attribute that lists the groups',
});
const Name = Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$' });
const ClientSecret = Type.String({
  minLength: 1,
  maxLength: 4096,
  description: 'OIDC client secret; write-only, stored encrypted with the tenant key',
});
const Config = Type.Record(Type.String(), Type.Unknown(), {
  description:
    'oidc: issuer, clientId, scopes?, emailClaim?, nameClaim?; ' +
    'saml: entryPoint, idpCert, idpIssuer?, spEntityId?, emailAttribute?, nameAttribute?, requireSignedResponse?',
});

const SsoConnectionSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  protocol: Protocol,
  name: Type.String(),
  enabled: Type.Boolean(),
  config: Type.Record(Type.String(), Type.Unknown()),
  defaultRole: Type.String(),
  groupsAttribute: Type.Union([Type.String(), Type.Null()]),
  roleMapping: Type.Record(Type.String(), Type.String()),
  hasSecret: Type.Boolean({ description: 'a client secret is stored (it is never returned)' }),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  startUrl: Type.String({ description: 'where a browser starts signing in' }),
  callbackUrl: Type.String({ description: 'redirect URI (OIDC) / assertion consumer service URL (SAML)' }),
});

const FlowParams = Type.Object(
  {
    tenantSlug: Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9-]*$' }),
    connectionId: Type.String({ format: 'uuid' }),
  },
  { additionalProperties: false },
);
const CallbackFields = Type.Record(Type.String({ maxLength: 100 }), Type.String({ maxLength: 200_000 }));
/** The redirect's query: the OIDC answer (RFC 6749 4.1.2, RFC 9207 `iss`); providers may add more. */
const CallbackQuery = Type.Object(
  {
    code: Type.Optional(Type.String({ maxLength: 4000 })),
    state: Type.Optional(Type.String({ maxLength: 400 })),
    iss: Type.Optional(Type.String({ maxLength: 2000 })),
    error: Type.Optional(Type.String({ maxLength: 200 })),
    error_description: Type.Optional(Type.String({ maxLength: 2000 })),
  },
  { additionalProperties: Type.String({ maxLength: 4000 }) },
);

export function ssoRoutes(res: Resources) {
  const base = res.tokens.issuer.replace(/\/+$/, '');
  const withUrls = <T extends { id: string }>(tenantSlug: string, c: T) => ({
    ...c,
    startUrl: `${base}/api/v1/sso/${tenantSlug}/${c.id}/start`,
    callbackUrl: `${base}/api/v1/sso/${tenantSlug}/${c.id}/callback`,
  });
  const slugOf = async (request: FastifyRequest) => {
    const [row] = await res.db.withTenant(
      principalOf(request).tenantId,
      (tx) => tx<{ slug: string }[]>`select slug from tenants where id = ${principalOf(request).tenantId}`,
    );
    return row?.slug ?? '';
  };

  /** The callback's answer: a redirect to the web app with a one-time code (tokens never in a URL). */
  async function callback(
    request: FastifyRequest,
    reply: FastifyReply,
    query: Record<string, string>,
    body: Record<string, string>,
  ) {
    const { tenantSlug, connectionId } = request.params as { tenantSlug: string; connectionId: string };
    // HEAD (link scanners, mail-security proxies) must not consume the one-time login state: answer
    // without looking at it (only that the connection exists), so the browser's GET still signs in.
    if (request.method === 'HEAD') {
      await assertSsoCallback(res, tenantSlug, connectionId);
      reply.header('cache-control', 'no-store');
      return reply.code(204).send();
    }
    try {
      const { code } = await finishSsoLogin(
        res,
        tenantSlug,
        connectionId,
        { query, body },
        requestInfo(request),
      );
      reply.header('cache-control', 'no-store');
      return reply.redirect(`${base}/#/sso?code=${encodeURIComponent(code)}`, 303);
    } catch (error) {
      const html = (request.headers.accept ?? '').includes('text/html');
      if (html && error instanceof AppError && error.status < 500)
        return reply.redirect(`${base}/#/sso?error=${encodeURIComponent(error.code)}`, 303);
      throw error;
    }
  }

  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();

    app.get(
      '/sso-connections',
      {
        config: { access: 'sso:read' },
        schema: {
          tags: ['sso'],
          summary: 'Single sign-on connections of the tenant (client secrets are never returned)',
          querystring: PageQuery,
          response: { 200: Page(SsoConnectionSchema), ...errors(400, 401, 403) },
        },
      },
      async (request) => {
        const page = await listSsoConnections(res, principalOf(request).tenantId, request.query);
        const slug = await slugOf(request);
        return { ...page, items: page.items.map((c) => withUrls(slug, c)) };
      },
    );
    app.get(
      '/sso-connections/:id',
      {
        config: { access: 'sso:read' },
        schema: {
          tags: ['sso'],
          summary: 'One single sign-on connection',
          params: IdParams,
          response: { 200: SsoConnectionSchema, ...errors(400, 401, 403, 404) },
        },
      },
      async (request) =>
        withUrls(
          await slugOf(request),
          await getSsoConnection(res, principalOf(request).tenantId, request.params.id),
        ),
    );
    app.post(
      '/sso-connections',
      {
        config: { access: 'sso:manage' },
        schema: {
          tags: ['sso'],
          summary: 'Add an OIDC or SAML identity provider',
          body: Type.Object(
            {
              protocol: Protocol,
              name: Name,
              enabled: Type.Optional(Type.Boolean()),
              config: Config,
              clientSecret: Type.Optional(ClientSecret),
              defaultRole: Type.Optional(RoleName),
              groupsAttribute: Type.Optional(Type.Union([GroupsAttribute, Type.Null()])),
              roleMapping: Type.Optional(RoleMapping),
            },
            { additionalProperties: false },
          ),
          response: { 201: SsoConnectionSchema, ...errors(400, 401, 403, 409) },
        },
      },
      async (request, reply) => {
        const p = principalOf(request);
        const created = await createSsoConnection(
          res,
          p.tenantId,
          actorOf(request),
          request.body,
          p.permissions,
        );
        return reply.code(201).send(withUrls(await slugOf(request), created));
      },
    );
    app.patch(
      '/sso-connections/:id',
      {
        config: { access: 'sso:manage' },
        schema: {
          tags: ['sso'],
          summary: 'Change a connection (config is merged; null removes a setting or the client secret)',
          params: IdParams,
          body: Type.Object(
            {
              name: Type.Optional(Name),
              enabled: Type.Optional(Type.Boolean()),
              config: Type.Optional(Config),
              clientSecret: Type.Optional(Type.Union([ClientSecret, Type.Null()])),
              defaultRole: Type.Optional(RoleName),
              groupsAttribute: Type.Optional(Type.Union([GroupsAttribute, Type.Null()])),
              roleMapping: Type.Optional(RoleMapping),
            },
            { additionalProperties: false },
          ),
          response: { 200: SsoConnectionSchema, ...errors(400, 401, 403, 404, 409) },
        },
      },
      async (request) => {
        const p = principalOf(request);
        const updated = await updateSsoConnection(
          res,
          p.tenantId,
          actorOf(request),
          request.params.id,
          request.body,
          p.permissions,
        );
        return withUrls(await slugOf(request), updated);
      },
    );
    app.delete(
      '/sso-connections/:id',
      {
        config: { access: 'sso:manage' },
        schema: {
          tags: ['sso'],
          summary: 'Remove a connection (its users keep their accounts)',
          params: IdParams,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        await deleteSsoConnection(res, principalOf(request).tenantId, actorOf(request), request.params.id);
        return reply.code(204).send(null);
      },
    );

    app.get(
      '/sso/:tenantSlug/:connectionId/start',
      {
        config: { access: 'public' },
        schema: {
          tags: ['sso'],
          summary: 'Start signing in with a tenant identity provider (redirects to it)',
          security: [],
          params: FlowParams,
          response: { 302: Type.Null(), ...errors(400, 404, 503) },
        },
      },
      async (request, reply) => {
        const { redirectUrl } = await startSsoLogin(
          res,
          request.params.tenantSlug,
          request.params.connectionId,
        );
        reply.header('cache-control', 'no-store');
        return reply.redirect(redirectUrl, 302);
      },
    );
    app.get(
      '/sso/:tenantSlug/:connectionId/callback',
      {
        config: { access: 'public' },
        schema: {
          tags: ['sso'],
          summary: 'OIDC redirect URI: validates the answer, then redirects to /#/sso?code=<one-time code>',
          security: [],
          params: FlowParams,
          querystring: CallbackQuery,
          response: {
            204: Type.Null({ description: 'HEAD only: nothing is checked or consumed' }),
            303: Type.Null(),
            ...errors(400, 401, 404),
          },
        },
      },
      async (request, reply) => callback(request, reply, request.query, {}),
    );
    app.get(
      '/sso/:tenantSlug/:connectionId/metadata',
      {
        config: { access: 'public' },
        schema: {
          tags: ['sso'],
          summary: 'SAML service provider metadata of a connection (entity id, ACS URL), for the IdP',
          security: [],
          params: FlowParams,
          produces: ['application/samlmetadata+xml'],
          response: { 200: Type.String(), ...errors(400, 404) },
        },
      },
      async (request, reply) => {
        const xml = await ssoMetadata(res, request.params.tenantSlug, request.params.connectionId);
        return reply.type('application/samlmetadata+xml; charset=utf-8').send(xml);
      },
    );
    await instance.register(async (acs) => {
      // The SAML HTTP-POST binding sends a form: only this route (in its own context) reads one.
      acs.addContentTypeParser(
        'application/x-www-form-urlencoded',
        { parseAs: 'string', bodyLimit: 512 * 1024 },
        (_request, body, done) => {
          const fields: Record<string, string> = {};
          for (const [k, v] of new URLSearchParams(body as string)) fields[k] = v;
          done(null, fields);
        },
      );
      const acsApp = acs.withTypeProvider<TypeBoxTypeProvider>();
      acsApp.post(
        '/sso/:tenantSlug/:connectionId/callback',
        {
          config: { access: 'public' },
          schema: {
            tags: ['sso'],
            summary:
              'SAML assertion consumer service (HTTP-POST binding); redirects to /#/sso?code=<one-time code>',
            security: [],
            params: FlowParams,
            consumes: ['application/x-www-form-urlencoded'],
            body: CallbackFields,
            response: { 303: Type.Null(), ...errors(400, 401, 404) },
          },
        },
        async (request, reply) => callback(request, reply, {}, request.body),
      );
    });
    app.post(
      '/auth/sso/exchange',
      {
        config: { access: 'public' },
        schema: {
          tags: ['auth'],
          summary:
            'Trade the one-time code of a finished single sign-on for tokens (works once, for a minute)',
          security: [],
          body: Type.Object(
            { code: Type.String({ minLength: 1, maxLength: 200 }) },
            { additionalProperties: false },
          ),
          response: { 200: Type.Union([Tokens, MfaRequiredSchema]), ...errors(400, 401) },
        },
      },
      async (request) => exchangeSsoCode(res, request.body.code, requestInfo(request)),
    );
  };
}
