import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import {
  acceptInvitation,
  createInvitation,
  listInvitations,
  revokeInvitation,
} from '@steward/core/identity/invitation-service';
import { forbidden } from '@steward/core/errors/app-error';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { Email, errors, IdParams, NullableString, Password } from '../http/schemas.ts';

const InvitationSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  email: Type.String(),
  role: Type.String(),
  status: Type.Union([
    Type.Literal('pending'),
    Type.Literal('accepted'),
    Type.Literal('revoked'),
    Type.Literal('expired'),
  ]),
  createdAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.String({ format: 'date-time' }),
  acceptedAt: NullableString({ format: 'date-time' }),
});

export function invitationRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/invitations',
      {
        config: { access: 'users:manage' },
        schema: {
          tags: ['users'],
          summary: 'Invitations of the tenant: pending ones, or all with all=true (never their tokens)',
          querystring: Type.Object({ all: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
          response: { 200: Type.Object({ items: Type.Array(InvitationSchema) }), ...errors(400, 401, 403) },
        },
      },
      async (request) => listInvitations(res, principalOf(request).tenantId, request.query),
    );
    app.post(
      '/invitations',
      {
        config: { access: 'users:manage' },
        schema: {
          tags: ['users'],
          summary:
            'Invite an email address with a role; the token (for the link <app>/#/invite/<token>) is in this response only, valid 7 days',
          body: Type.Object(
            { email: Email, role: Type.String({ pattern: '^[a-z][a-z0-9_-]{0,39}$' }) },
            { additionalProperties: false },
          ),
          response: {
            201: Type.Composite([InvitationSchema, Type.Object({ token: Type.String() })]),
            ...errors(400, 401, 403),
          },
        },
      },
      async (request, reply) => {
        const p = principalOf(request);
        const { invitation, token } = await createInvitation(
          res,
          p.tenantId,
          actorOf(request),
          { ...request.body, createdBy: p.userId },
          p.permissions,
        );
        return reply.code(201).send({ ...invitation, token });
      },
    );
    app.delete(
      '/invitations/:id',
      {
        config: { access: 'users:manage' },
        schema: {
          tags: ['users'],
          summary: 'Revoke a pending invitation',
          params: IdParams,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404, 409) },
        },
      },
      async (request, reply) => {
        await revokeInvitation(res, principalOf(request).tenantId, actorOf(request), request.params.id);
        return reply.code(204).send(null);
      },
    );
    app.post(
      '/invitations/accept',
      {
        // Public: the token is the credential. Signed in (a user session in the Authorization
        // header), the invited account joins; otherwise a password creates a new account.
        config: { access: 'public' },
        schema: {
          tags: ['users'],
          summary:
            'Accept an invitation: signed in, the invited account joins the tenant; not signed in, a password creates the account of a new address (for an address with an account, sign in and accept again)',
          body: Type.Object(
            {
              token: Type.String({ minLength: 1, maxLength: 200 }),
              name: Type.Optional(Type.String({ maxLength: 200 })),
              password: Type.Optional(Password),
            },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Object({
              email: Type.String(),
              tenant: Type.Object({ id: Type.String(), slug: Type.String(), name: Type.String() }),
            }),
            ...errors(400, 401, 403, 404),
          },
        },
      },
      async (request) => {
        const header = request.headers.authorization;
        const bearer = header ? /^Bearer\s+(\S+)$/i.exec(header)?.[1] : undefined;
        if (bearer) {
          const principal = await res.auth.authenticate(bearer);
          if (principal.kind !== 'user' || !principal.userId)
            throw forbidden('an invitation is accepted by a person, not an API key');
          request.principal = principal;
        }
        return acceptInvitation(res, actorOf(request), {
          token: request.body.token,
          userId: request.principal?.userId,
          name: request.body.name,
          password: request.body.password,
        });
      },
    );
  };
}
