import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import { createBriefing } from '@steward/core/vault/briefing';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors } from '../http/schemas.ts';

const Count = Type.Integer({ minimum: 0 });

export const BriefingSchema = Type.Object({
  week: Type.String({ description: 'ISO week of the briefing in the tenant time zone, e.g. 2026-W47' }),
  path: Type.String({ description: "where it was written in the tenant's vault" }),
  generatedAt: Type.String(),
  timezone: Type.String(),
  period: Type.Object({ from: Type.String(), to: Type.String() }),
  tasks: Type.Object({
    created: Count,
    done: Count,
    failed: Count,
    rejected: Count,
    cancelled: Count,
    waiting: Type.Object({ needsAction: Count, pendingApproval: Count, total: Count }),
  }),
  timeSaved: Type.Object({
    minutesPerTask: Type.Number(),
    tasks: Count,
    minutes: Type.Number(),
    hours: Type.Number(),
    note: Type.String(),
  }),
  spend: Type.Object({
    recorded: Type.Boolean({ description: 'false when this installation records no LLM usage' }),
    calls: Count,
    inputTokens: Count,
    outputTokens: Count,
    byModel: Type.Array(
      Type.Object({
        provider: Type.String(),
        model: Type.String(),
        calls: Count,
        inputTokens: Count,
        outputTokens: Count,
      }),
    ),
    cost: Type.Union([Type.Number(), Type.Null()]),
    note: Type.String(),
  }),
  bottlenecks: Type.Object({
    oldestApprovals: Type.Array(
      Type.Object({
        approvalId: Type.String(),
        taskId: Type.String(),
        title: Type.String(),
        tool: Type.String(),
        waitingHours: Type.Number(),
      }),
    ),
    failureCodes: Type.Array(Type.Object({ code: Type.String(), count: Count })),
  }),
  suggestions: Type.Array(Type.String()),
  email: Type.Object({
    status: Type.Union([
      Type.Literal('queued'),
      Type.Literal('already_queued'),
      Type.Literal('not_requested'),
      Type.Literal('not_configured'),
      Type.Literal('failed'),
    ]),
    recipients: Type.Array(Type.String()),
    taskId: Type.Optional(Type.String()),
    reason: Type.Optional(Type.String()),
  }),
});

export function briefingRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.post(
      '/briefings',
      {
        config: { access: 'tenant:manage' },
        // An empty POST means the defaults.
        preValidation: async (request) => {
          request.body ??= {};
        },
        schema: {
          tags: ['briefings'],
          summary:
            "Write the weekly briefing now (last 7 days) into the tenant's vault as Briefings/<ISO week>.md and return it. With email: true it is also e-mailed to the owners (once per week).",
          body: Type.Object(
            { email: Type.Optional(Type.Boolean({ default: false })) },
            { additionalProperties: false },
          ),
          response: { 201: BriefingSchema, ...errors(400, 401, 403) },
        },
      },
      async (request, reply) => {
        const briefing = await createBriefing(res, principalOf(request).tenantId, actorOf(request), {
          email: request.body.email ?? false,
        });
        return reply.status(201).send(briefing);
      },
    );
  };
}
