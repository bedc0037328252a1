import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import { logout, refresh, switchTenant } from '@steward/core/identity/session-service';
import { guardedLogin } from '@steward/core/guard/guarded-login';
import type { FastifyInstance } from 'fastify';
import { principalOf, requestInfo } from '../http/request-actor.ts';
import { Email, errors, Password } from '../http/schemas.ts';

const TenantRef = Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9-]*$' });

export const Tokens = Type.Object({
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

/** The answer of a sign-in that needs a second factor (POST /auth/mfa) or its enrolment. */
export const MfaRequiredSchema = Type.Object({
  mfaRequired: Type.Literal(true),
  mfaToken: Type.String({ description: 'for POST /auth/mfa; valid 5 minutes, bound to the user and tenant' }),
  methods: Type.Array(
    Type.Union([Type.Literal('totp'), Type.Literal('backup_code'), Type.Literal('webauthn')]),
  ),
  enrolmentRequired: Type.Boolean({
    description:
      'the tenant requires MFA and the user has none: enrol TOTP (/auth/mfa/enrol/totp) or a passkey (/auth/mfa/webauthn/options), then /auth/mfa',
  }),
  expiresIn: Type.Integer(),
});

export { Tokens as TokensSchema, TenantRef as TenantRefSchema };

export function authRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.post(
      '/auth/login',
      {
        config: { access: 'public' },
        schema: {
          tags: ['auth'],
          summary: 'Sign in with email and password (answers mfaRequired when a second factor is needed)',
          security: [],
          body: Type.Object(
            { email: Email, password: Password, tenant: Type.Optional(TenantRef) },
            { additionalProperties: false },
          ),
          response: { 200: Type.Union([Tokens, MfaRequiredSchema]), ...errors(400, 401, 429) },
        },
      },
      async (request) => guardedLogin(res, request.body, requestInfo(request)),
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
