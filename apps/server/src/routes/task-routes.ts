import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import { cancelTask, getTask, listTasks, submitEvent } from '@steward/core/tasks/task-service';
import { listDeadLetters, retryDeadLetter } from '@steward/core/executor/dead-letters';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors, IdParams, Page, PageQuery } from '../http/schemas.ts';
import { EventBody, StepSchema, TaskDetailSchema, TaskStatus, TaskSummarySchema } from './loop-schemas.ts';

const Intake = Type.Object({ eventId: Type.String(), taskId: Type.String(), duplicate: Type.Boolean() });

export function taskRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.post(
      '/events',
      {
        config: { access: 'events:create' },
        schema: {
          tags: ['tasks'],
          summary:
            'Submit an event; it becomes a task (the same source and externalId twice give the same task)',
          body: EventBody,
          response: { 202: Intake, ...errors(400, 401, 403) },
        },
      },
      async (request, reply) => {
        const p = principalOf(request);
        return reply.code(202).send(await submitEvent(res, p.tenantId, actorOf(request), request.body));
      },
    );
    app.get(
      '/tasks',
      {
        config: { access: 'tasks:read' },
        schema: {
          tags: ['tasks'],
          summary: 'Tasks, newest first',
          querystring: Type.Object(
            { ...PageQuery.properties, status: Type.Optional(TaskStatus) },
            { additionalProperties: false },
          ),
          response: { 200: Page(TaskSummarySchema), ...errors(400, 401, 403) },
        },
      },
      async (request) => listTasks(res, principalOf(request).tenantId, request.query),
    );
    app.post(
      '/tasks',
      {
        config: { access: 'tasks:manage' },
        schema: {
          tags: ['tasks'],
          summary: 'Create a task by hand (an event from the "manual" source)',
          body: Type.Object(
            {
              title: Type.String({ minLength: 1, maxLength: 300 }),
              body: Type.Optional(Type.String({ maxLength: 500_000 })),
              data: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
            },
            { additionalProperties: false },
          ),
          response: { 202: Intake, ...errors(400, 401, 403) },
        },
      },
      async (request, reply) => {
        const p = principalOf(request);
        const b = request.body;
        return reply.code(202).send(
          await submitEvent(res, p.tenantId, actorOf(request), {
            source: 'manual',
            type: 'task',
            subject: b.title,
            body: b.body,
            data: b.data,
            from: p.label,
          }),
        );
      },
    );
    app.get(
      '/tasks/:id',
      {
        config: { access: 'tasks:read' },
        schema: {
          tags: ['tasks'],
          summary: 'A task with its event, plan steps and approvals',
          params: IdParams,
          response: { 200: TaskDetailSchema, ...errors(400, 401, 403, 404) },
        },
      },
      async (request) => getTask(res, principalOf(request).tenantId, request.params.id),
    );
    app.post(
      '/tasks/:id/cancel',
      {
        config: { access: 'tasks:manage' },
        schema: {
          tags: ['tasks'],
          summary: 'Cancel a task, including steps that are running',
          params: IdParams,
          response: { 200: TaskDetailSchema, ...errors(400, 401, 403, 404, 409) },
        },
      },
      async (request) => {
        const tenantId = principalOf(request).tenantId;
        await cancelTask(res, tenantId, actorOf(request), request.params.id);
        return getTask(res, tenantId, request.params.id);
      },
    );
    app.get(
      '/dead-letters',
      {
        config: { access: 'tasks:read' },
        schema: {
          tags: ['tasks'],
          summary: 'Steps that failed for good (retries exhausted or not retryable)',
          querystring: PageQuery,
          response: {
            200: Page(Type.Composite([StepSchema, Type.Object({ taskId: Type.String() })])),
            ...errors(400, 401, 403),
          },
        },
      },
      async (request) => listDeadLetters(res, principalOf(request).tenantId, request.query),
    );
    app.post(
      '/dead-letters/:id/retry',
      {
        config: { access: 'tasks:manage' },
        schema: {
          tags: ['tasks'],
          summary: 'Run a dead step once more (with the same idempotency key)',
          params: IdParams,
          response: { 200: TaskDetailSchema, ...errors(400, 401, 403, 404, 409) },
        },
      },
      async (request) => {
        const tenantId = principalOf(request).tenantId;
        const taskId = await retryDeadLetter(res, tenantId, actorOf(request), request.params.id);
        return getTask(res, tenantId, taskId);
      },
    );
  };
}
