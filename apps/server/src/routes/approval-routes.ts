import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import { decideApproval, getApproval, listApprovals } from '@steward/core/approvals/approval-service';
import { forbidden } from '@steward/core/errors/app-error';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors, IdParams, Page, PageQuery } from '../http/schemas.ts';
import { ApprovalSchema } from './loop-schemas.ts';

const ApprovalStatus = Type.Union(
  ['pending', 'approved', 'rejected', 'expired', 'superseded', 'cancelled'].map((s) => Type.Literal(s)),
);

export function approvalRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/approvals',
      {
        config: { access: 'approvals:read' },
        schema: {
          tags: ['approvals'],
          summary: 'Approvals, newest first, each with the exact action it authorises',
          querystring: Type.Object(
            {
              ...PageQuery.properties,
              status: Type.Optional(ApprovalStatus),
              taskId: Type.Optional(Type.String({ format: 'uuid' })),
            },
            { additionalProperties: false },
          ),
          response: { 200: Page(ApprovalSchema), ...errors(400, 401, 403) },
        },
      },
      async (request) =>
        listApprovals(
          res,
          principalOf(request).tenantId,
          request.query as { limit: number; cursor?: string; status?: string; taskId?: string },
        ),
    );
    app.get(
      '/approvals/:id',
      {
        config: { access: 'approvals:read' },
        schema: {
          tags: ['approvals'],
          summary: 'One approval',
          params: IdParams,
          response: { 200: ApprovalSchema, ...errors(400, 401, 403, 404) },
        },
      },
      async (request) => getApproval(res, principalOf(request).tenantId, request.params.id),
    );
    app.post(
      '/approvals/:id/decision',
      {
        config: { access: 'approvals:decide' },
        schema: {
          tags: ['approvals'],
          summary:
            'Approve or reject (single use; 409 if already decided). With args, approve edited arguments: a new approval is created for them.',
          params: IdParams,
          body: Type.Object(
            {
              decision: Type.Union([Type.Literal('approve'), Type.Literal('reject')]),
              comment: Type.Optional(Type.String({ maxLength: 2000 })),
              args: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
            },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Object({ approval: ApprovalSchema, replacedBy: Type.Optional(ApprovalSchema) }),
            ...errors(400, 401, 403, 404, 409),
          },
        },
      },
      async (request) => {
        const p = principalOf(request);
        if (p.kind !== 'user' || !p.userId) throw forbidden('approvals are decided by people, not API keys');
        return decideApproval(
          res,
          p.tenantId,
          { ...actorOf(request), id: p.userId },
          request.params.id,
          request.body,
        );
      },
    );
  };
}
