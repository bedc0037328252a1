import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import { PlaybookConditions, PlaybookStep } from '@steward/core/planner/playbook';
import {
  createPlaybook,
  deletePlaybook,
  getPlaybook,
  listPlaybooks,
  updatePlaybook,
} from '@steward/core/planner/playbook-service';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors, IdParams, Page, PageQuery } from '../http/schemas.ts';

const PlaybookSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  description: Type.String(),
  enabled: Type.Boolean(),
  priority: Type.Integer(),
  when: PlaybookConditions,
  steps: Type.Array(PlaybookStep),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});

const fields = {
  name: Type.String({ minLength: 1, maxLength: 100 }),
  description: Type.Optional(Type.String({ maxLength: 2000 })),
  enabled: Type.Optional(Type.Boolean()),
  priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000, description: 'lower runs first' })),
  when: PlaybookConditions,
  steps: Type.Array(PlaybookStep, { minItems: 1, maxItems: 25 }),
};

export function playbookRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/playbooks',
      {
        config: { access: 'playbooks:read' },
        schema: {
          tags: ['playbooks'],
          summary: 'Playbooks, in the order they are tried',
          querystring: PageQuery,
          response: { 200: Page(PlaybookSchema), ...errors(400, 401, 403) },
        },
      },
      async (request) => listPlaybooks(res, principalOf(request).tenantId, request.query),
    );
    app.post(
      '/playbooks',
      {
        config: { access: 'playbooks:manage' },
        schema: {
          tags: ['playbooks'],
          summary: 'Create a playbook: conditions on an event, then steps (tools and templated arguments)',
          body: Type.Object(fields, { additionalProperties: false }),
          response: { 201: PlaybookSchema, ...errors(400, 401, 403, 409) },
        },
      },
      async (request, reply) =>
        reply
          .code(201)
          .send(await createPlaybook(res, principalOf(request).tenantId, actorOf(request), request.body)),
    );
    app.get(
      '/playbooks/:id',
      {
        config: { access: 'playbooks:read' },
        schema: {
          tags: ['playbooks'],
          summary: 'One playbook',
          params: IdParams,
          response: { 200: PlaybookSchema, ...errors(400, 401, 403, 404) },
        },
      },
      async (request) => getPlaybook(res, principalOf(request).tenantId, request.params.id),
    );
    app.patch(
      '/playbooks/:id',
      {
        config: { access: 'playbooks:manage' },
        schema: {
          tags: ['playbooks'],
          summary: 'Change a playbook',
          params: IdParams,
          body: Type.Partial(Type.Object(fields), { additionalProperties: false, minProperties: 1 }),
          response: { 200: PlaybookSchema, ...errors(400, 401, 403, 404, 409) },
        },
      },
      async (request) =>
        updatePlaybook(res, principalOf(request).tenantId, actorOf(request), request.params.id, request.body),
    );
    app.delete(
      '/playbooks/:id',
      {
        config: { access: 'playbooks:manage' },
        schema: {
          tags: ['playbooks'],
          summary: 'Delete a playbook',
          params: IdParams,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        await deletePlaybook(res, principalOf(request).tenantId, actorOf(request), request.params.id);
        return reply.code(204).send(null);
      },
    );
  };
}
