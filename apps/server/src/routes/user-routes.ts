import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import {
  addMember,
  getMember,
  listMembers,
  removeMember,
  updateMember,
} from '@steward/core/identity/user-service';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { sendCachedPage } from '../http/send-cached-page.ts';
import { Email, errors, IdParams, NullableString, Page, PageQuery, Password } from '../http/schemas.ts';

const RoleName = Type.String({ pattern: '^[a-z][a-z0-9_-]{0,39}$' });

export const MemberSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  email: Type.String(),
  name: Type.String(),
  role: Type.String(),
  status: Type.String(),
  lastLoginAt: NullableString({ format: 'date-time' }),
  createdAt: Type.String({ format: 'date-time' }),
});

export function userRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/users',
      {
        config: { access: 'users:read' },
        schema: {
          tags: ['users'],
          summary: 'Users of the current tenant',
          querystring: Type.Composite([PageQuery, Type.Object({ role: Type.Optional(RoleName) })], {
            additionalProperties: false,
          }),
          response: { 200: Page(MemberSchema), ...errors(400, 401, 403) },
        },
      },
      async (request, reply) => {
        // users:read was checked before the handler. Every principal allowed to read sees the same
        // page, so the key is the tenant and the normalized query.
        const { tenantId } = principalOf(request);
        const q = request.query;
        const key = `users?limit=${q.limit}&role=${q.role ?? ''}&cursor=${q.cursor ?? ''}`;
        return sendCachedPage(res.pages, reply, tenantId, key, () => listMembers(res, tenantId, q));
      },
    );
    app.post(
      '/users',
      {
        config: { access: 'users:manage' },
        schema: {
          tags: ['users'],
          summary: 'Add a user to the tenant (an existing account only gains a membership)',
          body: Type.Object(
            {
              email: Email,
              password: Type.Optional(Password),
              name: Type.Optional(Type.String({ maxLength: 200 })),
              role: RoleName,
            },
            { additionalProperties: false },
          ),
          response: { 201: MemberSchema, ...errors(400, 401, 403, 409) },
        },
      },
      async (request, reply) => {
        const p = principalOf(request);
        return reply
          .code(201)
          .send(await addMember(res, p.tenantId, actorOf(request), request.body, p.permissions));
      },
    );
    app.get(
      '/users/:id',
      {
        config: { access: 'users:read' },
        schema: {
          tags: ['users'],
          summary: 'One user of the tenant',
          params: IdParams,
          response: { 200: MemberSchema, ...errors(400, 401, 403, 404) },
        },
      },
      async (request) => getMember(res, principalOf(request).tenantId, request.params.id),
    );
    app.patch(
      '/users/:id',
      {
        config: { access: 'users:manage' },
        schema: {
          tags: ['users'],
          summary: "Change a user's name, role or status in this tenant",
          params: IdParams,
          body: Type.Object(
            {
              name: Type.Optional(Type.String({ maxLength: 200 })),
              role: Type.Optional(RoleName),
              status: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('disabled')])),
            },
            { additionalProperties: false, minProperties: 1 },
          ),
          response: { 200: MemberSchema, ...errors(400, 401, 403, 404, 409) },
        },
      },
      async (request) => {
        const p = principalOf(request);
        return updateMember(
          res,
          p.tenantId,
          actorOf(request),
          p.permissions,
          request.params.id,
          request.body,
        );
      },
    );
    app.delete(
      '/users/:id',
      {
        config: { access: 'users:manage' },
        schema: {
          tags: ['users'],
          summary: 'Remove a user from the tenant',
          params: IdParams,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404, 409) },
        },
      },
      async (request, reply) => {
        const p = principalOf(request);
        await removeMember(res, p.tenantId, actorOf(request), p.permissions, request.params.id);
        return reply.code(204).send(null);
      },
    );
  };
}
