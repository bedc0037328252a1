import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import {
  changePassword,
  listMemberSessions,
  listOwnSessions,
  revokeMemberSession,
  revokeMemberSessions,
  revokeOwnSession,
} from '@steward/core/identity/user-sessions';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors, IdParams, Password } from '../http/schemas.ts';
import { me } from './mfa-routes.ts';

const SessionSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  current: Type.Boolean(),
  tenantId: Type.String({ format: 'uuid' }),
  ip: Type.Union([Type.String(), Type.Null()]),
  userAgent: Type.Union([Type.String(), Type.Null()]),
  method: Type.String({ description: 'how the session signed in: password, passkey, sso...' }),
  mfa: Type.Boolean(),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.String({ format: 'date-time' }),
});
const Sessions = Type.Object({ items: Type.Array(SessionSchema) });
const UserSessionParams = Type.Object(
  { id: Type.String({ format: 'uuid' }), sessionId: Type.String({ format: 'uuid' }) },
  { additionalProperties: false },
);

export function sessionRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/sessions',
      {
        config: { access: 'session' },
        schema: {
          tags: ['sessions'],
          summary: "The caller's open sessions (every tenant)",
          response: { 200: Sessions, ...errors(401, 403) },
        },
      },
      async (request) => ({ items: await listOwnSessions(res, me(request)) }),
    );
    app.delete(
      '/sessions/:id',
      {
        config: { access: 'session' },
        schema: {
          tags: ['sessions'],
          summary: 'Revoke one of your sessions',
          params: IdParams,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        await revokeOwnSession(res, me(request), request.params.id);
        return reply.code(204).send(null);
      },
    );
    app.get(
      '/users/:id/sessions',
      {
        config: { access: 'users:manage' },
        schema: {
          tags: ['sessions'],
          summary: "A member's open sessions in this tenant",
          params: IdParams,
          response: { 200: Sessions, ...errors(400, 401, 403, 404) },
        },
      },
      async (request) => ({
        items: await listMemberSessions(res, principalOf(request).tenantId, request.params.id),
      }),
    );
    app.delete(
      '/users/:id/sessions',
      {
        config: { access: 'users:manage' },
        schema: {
          tags: ['sessions'],
          summary: "Revoke all of a member's sessions in this tenant",
          params: IdParams,
          response: { 200: Type.Object({ revoked: Type.Integer() }), ...errors(400, 401, 403, 404) },
        },
      },
      async (request) => ({
        revoked: await revokeMemberSessions(
          res,
          principalOf(request).tenantId,
          actorOf(request),
          request.params.id,
        ),
      }),
    );
    app.delete(
      '/users/:id/sessions/:sessionId',
      {
        config: { access: 'users:manage' },
        schema: {
          tags: ['sessions'],
          summary: "Revoke one of a member's sessions in this tenant",
          params: UserSessionParams,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        await revokeMemberSession(
          res,
          principalOf(request).tenantId,
          actorOf(request),
          request.params.id,
          request.params.sessionId,
        );
        return reply.code(204).send(null);
      },
    );
    app.post(
      '/me/password',
      {
        config: { access: 'session' },
        schema: {
          tags: ['sessions'],
          summary: 'Change your password (the current one is required); revokes your other sessions',
          body: Type.Object(
            { currentPassword: Password, newPassword: Password },
            { additionalProperties: false },
          ),
          response: { 204: Type.Null(), ...errors(400, 401, 403) },
        },
      },
      async (request, reply) => {
        await changePassword(res, me(request), request.body);
        return reply.code(204).send(null);
      },
    );
  };
}
