import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import type { Resources } from '@steward/core/resources';
import {
  deletePasskey,
  listPasskeys,
  passkeyLogin,
  passkeyLoginOptions,
  passkeyRegistrationOptions,
  registerPasskey,
  renamePasskey,
} from '@steward/core/identity/passkey-service';
import type { FastifyInstance } from 'fastify';
import { principalOf, requestInfo } from '../http/request-actor.ts';
import { errors, IdParams } from '../http/schemas.ts';
import { MfaRequiredSchema, TenantRefSchema, TokensSchema } from './auth-routes.ts';
import { asJson, me, webauthnJson, WebauthnOptions, WebauthnResponse } from './mfa-routes.ts';

const PasskeySchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});
const Name = Type.String({ minLength: 1, maxLength: 100 });

export function passkeyRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.post(
      '/auth/passkey/options',
      {
        config: { access: 'public' },
        schema: {
          tags: ['auth'],
          summary: 'Passwordless sign-in, step 1: a WebAuthn challenge (valid 5 minutes, works once)',
          security: [],
          body: Type.Object({ tenant: Type.Optional(TenantRefSchema) }, { additionalProperties: false }),
          response: { 200: WebauthnOptions, ...errors(400) },
        },
      },
      async (request) => asJson(await passkeyLoginOptions(res, request.body)),
    );
    app.post(
      '/auth/passkey/verify',
      {
        config: { access: 'public' },
        schema: {
          tags: ['auth'],
          summary: 'Passwordless sign-in, step 2: a user-verified passkey assertion gives tokens',
          security: [],
          body: Type.Object(
            { response: WebauthnResponse, tenant: Type.Optional(TenantRefSchema) },
            { additionalProperties: false },
          ),
          response: { 200: Type.Union([TokensSchema, MfaRequiredSchema]), ...errors(400, 401) },
        },
      },
      async (request) =>
        passkeyLogin(
          res,
          {
            response: webauthnJson<AuthenticationResponseJSON>(request.body.response),
            tenant: request.body.tenant,
          },
          requestInfo(request),
        ),
    );
    app.post(
      '/passkeys/options',
      {
        config: { access: 'session' },
        schema: {
          tags: ['passkeys'],
          summary: 'Start registering a passkey: WebAuthn creation options',
          response: { 200: WebauthnOptions, ...errors(401, 403) },
        },
      },
      async (request) => asJson(await passkeyRegistrationOptions(res, me(request))),
    );
    app.post(
      '/passkeys',
      {
        config: { access: 'session' },
        schema: {
          tags: ['passkeys'],
          summary: "Register a passkey from the authenticator's response; revokes other sessions",
          body: Type.Object(
            { response: WebauthnResponse, name: Type.Optional(Name) },
            { additionalProperties: false },
          ),
          response: { 201: PasskeySchema, ...errors(400, 401, 403) },
        },
      },
      async (request, reply) =>
        reply.code(201).send(
          await registerPasskey(res, me(request), {
            response: webauthnJson<RegistrationResponseJSON>(request.body.response),
            name: request.body.name,
          }),
        ),
    );
    app.get(
      '/passkeys',
      {
        config: { access: 'session' },
        schema: {
          tags: ['passkeys'],
          summary: "The caller's passkeys",
          response: { 200: Type.Object({ items: Type.Array(PasskeySchema) }), ...errors(401, 403) },
        },
      },
      async (request) => ({ items: await listPasskeys(res, principalOf(request).userId!) }),
    );
    app.patch(
      '/passkeys/:id',
      {
        config: { access: 'session' },
        schema: {
          tags: ['passkeys'],
          summary: 'Rename a passkey',
          params: IdParams,
          body: Type.Object({ name: Name }, { additionalProperties: false }),
          response: { 200: PasskeySchema, ...errors(400, 401, 403, 404) },
        },
      },
      async (request) => renamePasskey(res, me(request), request.params.id, request.body.name),
    );
    app.delete(
      '/passkeys/:id',
      {
        config: { access: 'session' },
        schema: {
          tags: ['passkeys'],
          summary: 'Delete a passkey; revokes other sessions',
          params: IdParams,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        await deletePasskey(res, me(request), request.params.id);
        return reply.code(204).send(null);
      },
    );
  };
}
