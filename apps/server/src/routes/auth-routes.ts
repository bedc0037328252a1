import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import { login, logout, refresh, switchTenant } from '@steward/core/identity/session-service';
import type { FastifyInstance } from 'fastify';
import { principalOf, requestInfo } from '../http/request-actor.ts';
import { Email, errors, Password } from '../http/schemas.ts';

const TenantRef = Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9-]*$' });

const Tokens = Type.Object({
  accessToken: Type.String(),
  refreshToken: Type.String(),
  expiresIn: Type.Integer({ description: 'access token lifetime in seconds' }),
  user: Type.Object({
    id: Type.String(),
    email: Type.String(),
    name: Type.String(),
    isPlatformAdmin: Type.Boolean(),
  }),
  tenant: Type.Object({ id: Type.String(), slug: Type.String(), name: Type.String() }),
});

export function authRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.post(
      '/auth/login',
      {
        config: { access: 'public' },
        schema: {
          tags: ['auth'],
          summary: 'Sign in with email and password',
          security: [],
          body: Type.Object(
            { email: Email, password: Password, tenant: Type.Optional(TenantRef) },
            { additionalProperties: false },
          ),
          response: { 200: Tokens, ...errors(400, 401) },
        },
      },
      async (request) => login(res, request.body, requestInfo(request)),
    );
    app.post(
      '/auth/refresh',
      {
        config: { access: 'public' },
        schema: {
          tags: ['auth'],
          summary: 'Exchange a refresh token for a new pair (each refresh token works once)',
          security: [],
          body: Type.Object(
            { refreshToken: Type.String({ minLength: 1, maxLength: 200 }) },
            { additionalProperties: false },
          ),
          response: { 200: Tokens, ...errors(400, 401) },
        },
      },
      async (request) => refresh(res, request.body.refreshToken, requestInfo(request)),
    );
    app.post(
      '/auth/logout',
      {
        config: { access: 'session' },
        schema: {
          tags: ['auth'],
          summary: 'Revoke the current session (its access and refresh tokens)',
          response: { 204: Type.Null(), ...errors(401, 403) },
        },
      },
      async (request, reply) => {
        const p = principalOf(request);
        await logout(
          res,
          { sessionId: p.sessionId!, tenantId: p.tenantId, userId: p.userId!, label: p.label },
          requestInfo(request),
        );
        return reply.code(204).send(null);
      },
    );
    app.post(
      '/auth/switch-tenant',
      {
        config: { access: 'session' },
        schema: {
          tags: ['auth'],
          summary: 'Tokens for another tenant the user belongs to',
          body: Type.Object({ tenant: TenantRef }, { additionalProperties: false }),
          response: { 200: Tokens, ...errors(400, 401, 403, 404) },
        },
      },
      async (request) => {
        const p = principalOf(request);
        return switchTenant(
          res,
          { sessionId: p.sessionId!, userId: p.userId! },
          request.body.tenant,
          requestInfo(request),
        );
      },
    );
  };
}
