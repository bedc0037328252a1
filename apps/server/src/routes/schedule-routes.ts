import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import {
  createSchedule,
  deleteSchedule,
  listSchedules,
  updateSchedule,
} from '@steward/core/watchers/schedule-service';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors, IdParams, Page, PageQuery } from '../http/schemas.ts';

const ScheduleEvent = Type.Object(
  {
    type: Type.String({ minLength: 1, maxLength: 100 }),
    subject: Type.Optional(Type.String({ maxLength: 1000 })),
    body: Type.Optional(Type.String({ maxLength: 100_000 })),
    from: Type.Optional(Type.String({ maxLength: 500 })),
    data: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false, description: 'the event each run submits (source: schedule)' },
);

const Nullable = Type.Union([Type.String(), Type.Null()]);

const ScheduleSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  cron: Type.String(),
  timezone: Type.String(),
  event: ScheduleEvent,
  enabled: Type.Boolean(),
  nextRunAt: Nullable,
  lastRunAt: Nullable,
  createdAt: Type.String(),
  updatedAt: Type.String(),
});

const fields = {
  name: Type.String({ minLength: 1, maxLength: 100, pattern: '\\S' }),
  cron: Type.String({
    minLength: 1,
    maxLength: 200,
    description: 'five fields (minute hour day-of-month month day-of-week) or @daily, @hourly, ...',
  }),
  timezone: Type.Optional(
    Type.String({ minLength: 1, maxLength: 100, description: 'IANA time zone (default UTC)' }),
  ),
  event: ScheduleEvent,
  enabled: Type.Optional(Type.Boolean()),
};

export function scheduleRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/schedules',
      {
        config: { access: 'connections:read' },
        schema: {
          tags: ['schedules'],
          summary: 'Schedules (cron with a time zone) that submit events',
          querystring: PageQuery,
          response: { 200: Page(ScheduleSchema), ...errors(400, 401, 403) },
        },
      },
      async (request) => listSchedules(res, principalOf(request).tenantId, request.query),
    );
    app.post(
      '/schedules',
      {
        config: { access: 'connections:manage' },
        schema: {
          tags: ['schedules'],
          summary: 'Create a schedule',
          body: Type.Object(fields, { additionalProperties: false }),
          response: { 201: ScheduleSchema, ...errors(400, 401, 403, 409) },
        },
      },
      async (request, reply) =>
        reply
          .code(201)
          .send(await createSchedule(res, principalOf(request).tenantId, actorOf(request), request.body)),
    );
    app.patch(
      '/schedules/:id',
      {
        config: { access: 'connections:manage' },
        schema: {
          tags: ['schedules'],
          summary: 'Change a schedule (a new cron, time zone or enabled state restarts it from now)',
          params: IdParams,
          body: Type.Partial(Type.Object(fields), { additionalProperties: false, minProperties: 1 }),
          response: { 200: ScheduleSchema, ...errors(400, 401, 403, 404, 409) },
        },
      },
      async (request) =>
        updateSchedule(res, principalOf(request).tenantId, actorOf(request), request.params.id, request.body),
    );
    app.delete(
      '/schedules/:id',
      {
        config: { access: 'connections:manage' },
        schema: {
          tags: ['schedules'],
          summary: 'Delete a schedule',
          params: IdParams,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        await deleteSchedule(res, principalOf(request).tenantId, actorOf(request), request.params.id);
        return reply.code(204).send(null);
      },
    );
  };
}
