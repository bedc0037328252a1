import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import { createRole, deleteRole, getRole, listRoles, updateRole } from '@steward/core/identity/role-service';
import { ALL_PERMISSIONS, PERMISSIONS } from '@steward/core/identity/permissions';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors, IdParams, Page, PageQuery } from '../http/schemas.ts';

const RoleSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  description: Type.String(),
  builtin: Type.Boolean(),
  permissions: Type.Array(Type.String()),
  createdAt: Type.String({ format: 'date-time' }),
});

const PermissionList = Type.Array(Type.String({ enum: ALL_PERMISSIONS }), {
  maxItems: 100,
  uniqueItems: true,
});

export function roleRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/roles',
      {
        config: { access: 'roles:read' },
        schema: {
          tags: ['roles'],
          summary: 'Built-in and custom roles',
          querystring: PageQuery,
          response: { 200: Page(RoleSchema), ...errors(400, 401, 403) },
        },
      },
      async (request) => listRoles(res, principalOf(request).tenantId, request.query),
    );
    app.get(
      '/permissions',
      {
        config: { access: 'roles:read' },
        schema: {
          tags: ['roles'],
          summary: 'Every permission a custom role can hold',
          response: {
            200: Type.Object({
              items: Type.Array(Type.Object({ name: Type.String(), description: Type.String() })),
            }),
          },
        },
      },
      async () => ({
        items: Object.entries(PERMISSIONS).map(([name, description]) => ({ name, description })),
      }),
    );
    app.post(
      '/roles',
      {
        config: { access: 'roles:manage' },
        schema: {
          tags: ['roles'],
          summary: 'Create a custom role from named permissions',
          body: Type.Object(
            {
              name: Type.String({ pattern: '^[a-z][a-z0-9_-]{0,39}$' }),
              description: Type.Optional(Type.String({ maxLength: 500 })),
              permissions: PermissionList,
            },
            { additionalProperties: false },
          ),
          response: { 201: RoleSchema, ...errors(400, 401, 403, 409) },
        },
      },
      async (request, reply) => {
        const p = principalOf(request);
        return reply
          .code(201)
          .send(await createRole(res, p.tenantId, actorOf(request), p.permissions, request.body));
      },
    );
    app.get(
      '/roles/:id',
      {
        config: { access: 'roles:read' },
        schema: {
          tags: ['roles'],
          summary: 'One role',
          params: IdParams,
          response: { 200: RoleSchema, ...errors(400, 401, 403, 404) },
        },
      },
      async (request) => {
        const tenantId = principalOf(request).tenantId;
        return res.db.withTenant(tenantId, (tx) => getRole(tx, tenantId, request.params.id));
      },
    );
    app.patch(
      '/roles/:id',
      {
        config: { access: 'roles:manage' },
        schema: {
          tags: ['roles'],
          summary: 'Change a custom role',
          params: IdParams,
          body: Type.Object(
            {
              description: Type.Optional(Type.String({ maxLength: 500 })),
              permissions: Type.Optional(PermissionList),
            },
            { additionalProperties: false, minProperties: 1 },
          ),
          response: { 200: RoleSchema, ...errors(400, 401, 403, 404, 409) },
        },
      },
      async (request) => {
        const p = principalOf(request);
        return updateRole(res, p.tenantId, actorOf(request), p.permissions, request.params.id, request.body);
      },
    );
    app.delete(
      '/roles/:id',
      {
        config: { access: 'roles:manage' },
        schema: {
          tags: ['roles'],
          summary: 'Delete an unused custom role',
          params: IdParams,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404, 409) },
        },
      },
      async (request, reply) => {
        await deleteRole(res, principalOf(request).tenantId, actorOf(request), request.params.id);
        return reply.code(204).send(null);
      },
    );
  };
}
