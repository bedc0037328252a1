import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import type { Resources } from '@steward/core/resources';
import { completeMfa, enrolTotpWithMfaToken, mfaWebauthnOptions } from '@steward/core/identity/mfa/mfa-login';
import {
  confirmTotp,
  disableTotp,
  mfaStatus,
  regenerateBackupCodes,
  resetUserMfa,
  startTotpEnrolment,
  type Me,
} from '@steward/core/identity/mfa/mfa-service';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { actorOf, principalOf, requestInfo } from '../http/request-actor.ts';
import { errors, IdParams, Password } from '../http/schemas.ts';
import { TokensSchema } from './auth-routes.ts';

const MfaToken = Type.String({ minLength: 1, maxLength: 100 });
const Code = Type.String({
  minLength: 1,
  maxLength: 20,
  description: 'a 6-digit TOTP code or a backup code',
});

/** A WebAuthn response as the browser's PublicKeyCredential.toJSON() gives it. */
export const WebauthnResponse = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 1400 }),
    rawId: Type.String({ minLength: 1, maxLength: 1400 }),
    type: Type.Literal('public-key'),
    response: Type.Object(
      { clientDataJSON: Type.String({ minLength: 1, maxLength: 10_000 }) },
      {
        additionalProperties: Type.Union([
          Type.String({ maxLength: 20_000 }),
          Type.Integer(),
          Type.Array(Type.String({ maxLength: 40 }), { maxItems: 10 }),
        ]),
      },
    ),
    clientExtensionResults: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    authenticatorAttachment: Type.Optional(Type.String({ maxLength: 40 })),
  },
  { additionalProperties: false },
);

/** The validated body as the library's type (clientExtensionResults defaults to {}). */
export function webauthnJson<T>(body: { clientExtensionResults?: Record<string, unknown> | undefined }): T {
  return { clientExtensionResults: {}, ...body } as unknown as T;
}

/** WebAuthn options as the plain JSON object the route schema declares. */
export function asJson(options: object): Record<string, unknown> {
  return options as Record<string, unknown>;
}

export const WebauthnOptions = Type.Record(Type.String(), Type.Unknown(), {
  description: 'PublicKeyCredential options JSON for navigator.credentials (with @simplewebauthn/browser)',
});

const Secret = Type.Object({
  secret: Type.String({ description: 'base32 TOTP secret, shown once' }),
  otpauthUri: Type.String({ description: 'otpauth:// URI for a QR code, shown once' }),
});
const BackupCodes = Type.Object({ backupCodes: Type.Array(Type.String(), { description: 'shown once' }) });
const Proof = Type.Object(
  { password: Type.Optional(Password), code: Type.Optional(Code) },
  { additionalProperties: false, minProperties: 1, maxProperties: 1 },
);

export function me(request: FastifyRequest): Me {
  const p = principalOf(request);
  return { userId: p.userId!, tenantId: p.tenantId, sessionId: p.sessionId, actor: actorOf(request) };
}

export function mfaRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.post(
      '/auth/mfa',
      {
        config: { access: 'public' },
        schema: {
          tags: ['auth'],
          summary: 'Second step of a sign-in: a TOTP code, a backup code or a passkey assertion',
          description:
            'With enrolmentRequired, the code confirms the TOTP secret from /auth/mfa/enrol/totp and the answer carries backupCodes (shown once). A wrong answer is a failed sign-in; the fifth spends the mfaToken.',
          security: [],
          body: Type.Object(
            { mfaToken: MfaToken, code: Type.Optional(Code), webauthn: Type.Optional(WebauthnResponse) },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Composite([
              TokensSchema,
              Type.Object({ backupCodes: Type.Optional(Type.Array(Type.String())) }),
            ]),
            ...errors(400, 401),
          },
        },
      },
      async (request) =>
        completeMfa(
          res,
          {
            mfaToken: request.body.mfaToken,
            code: request.body.code,
            webauthn:
              request.body.webauthn &&
              webauthnJson<AuthenticationResponseJSON | RegistrationResponseJSON>(request.body.webauthn),
          },
          requestInfo(request),
        ),
    );
    app.post(
      '/auth/mfa/webauthn/options',
      {
        config: { access: 'public' },
        schema: {
          tags: ['auth'],
          summary:
            "Passkey options for the MFA step: an assertion by one of the user's passkeys, or (enrolmentRequired) the creation of a first one",
          security: [],
          body: Type.Object({ mfaToken: MfaToken }, { additionalProperties: false }),
          response: { 200: WebauthnOptions, ...errors(400, 401) },
        },
      },
      async (request) => asJson(await mfaWebauthnOptions(res, request.body.mfaToken)),
    );
    app.post(
      '/auth/mfa/enrol/totp',
      {
        config: { access: 'public' },
        schema: {
          tags: ['auth'],
          summary:
            'Enrol TOTP during a sign-in that requires it (enrolmentRequired); confirm with POST /auth/mfa',
          security: [],
          body: Type.Object({ mfaToken: MfaToken }, { additionalProperties: false }),
          response: { 200: Secret, ...errors(400, 401) },
        },
      },
      async (request) => enrolTotpWithMfaToken(res, request.body.mfaToken, requestInfo(request)),
    );
    app.get(
      '/mfa',
      {
        config: { access: 'session' },
        schema: {
          tags: ['mfa'],
          summary: "The caller's second factors",
          response: {
            200: Type.Object({
              totp: Type.Boolean(),
              backupCodesLeft: Type.Integer(),
              passkeys: Type.Integer(),
            }),
            ...errors(401, 403),
          },
        },
      },
      async (request) => mfaStatus(res, principalOf(request).userId!),
    );
    app.post(
      '/mfa/totp',
      {
        config: { access: 'session' },
        schema: {
          tags: ['mfa'],
          summary:
            'Start TOTP enrolment: a new secret and otpauth URI (shown once); confirm with a first code',
          response: { 200: Secret, ...errors(401, 403, 409) },
        },
      },
      async (request) => startTotpEnrolment(res, me(request)),
    );
    app.post(
      '/mfa/totp/confirm',
      {
        config: { access: 'session' },
        schema: {
          tags: ['mfa'],
          summary: 'Confirm TOTP enrolment with a first code; gives 10 backup codes; revokes other sessions',
          body: Type.Object({ code: Code }, { additionalProperties: false }),
          response: { 200: BackupCodes, ...errors(400, 401, 403, 409) },
        },
      },
      async (request) => confirmTotp(res, me(request), request.body.code),
    );
    app.post(
      '/mfa/totp/disable',
      {
        config: { access: 'session' },
        schema: {
          tags: ['mfa'],
          summary: 'Turn TOTP off (with the password or a code); revokes other sessions',
          body: Proof,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        await disableTotp(res, me(request), request.body);
        return reply.code(204).send(null);
      },
    );
    app.post(
      '/mfa/backup-codes',
      {
        config: { access: 'session' },
        schema: {
          tags: ['mfa'],
          summary: 'Replace the backup codes (with the password or a code)',
          body: Proof,
          response: { 200: BackupCodes, ...errors(400, 401, 403, 409) },
        },
      },
      async (request) => regenerateBackupCodes(res, me(request), request.body),
    );
    app.delete(
      '/users/:id/mfa',
      {
        config: { access: 'users:manage' },
        schema: {
          tags: ['mfa'],
          summary: "Reset a member's MFA (TOTP, backup codes, passkeys); revokes all their sessions",
          params: IdParams,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        await resetUserMfa(res, principalOf(request).tenantId, actorOf(request), request.params.id);
        return reply.code(204).send(null);
      },
    );
  };
}
