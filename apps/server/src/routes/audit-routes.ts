import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import { listAudit, verifyTenantAudit } from '@steward/core/audit/audit-service';
import type { FastifyInstance } from 'fastify';
import { principalOf } from '../http/request-actor.ts';
import { errors, Page, PageQuery } from '../http/schemas.ts';

const Nullable = (s: ReturnType<typeof Type.String>) => Type.Union([s, Type.Null()]);

const Entry = Type.Object({
  seq: Type.Integer(),
  at: Type.String({ format: 'date-time' }),
  actorType: Type.String(),
  actorId: Nullable(Type.String()),
  actorLabel: Nullable(Type.String()),
  action: Type.String(),
  targetType: Nullable(Type.String()),
  targetId: Nullable(Type.String()),
  outcome: Type.String(),
  requestId: Nullable(Type.String()),
  ip: Nullable(Type.String()),
  details: Type.Record(Type.String(), Type.Unknown()),
  prevHash: Type.String(),
  hash: Type.String(),
});

const Checkpoint = Type.Object({
  tenantId: Type.String(),
  seq: Type.Integer(),
  hash: Type.String(),
  at: Type.String(),
  signature: Type.String(),
  valid: Type.Boolean(),
});

export function auditRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/audit',
      {
        config: { access: 'audit:read' },
        schema: {
          tags: ['audit'],
          summary: 'Audit entries of the tenant, newest first',
          querystring: Type.Composite(
            [
              PageQuery,
              Type.Object({
                action: Type.Optional(
                  Type.String({ maxLength: 100, description: 'exact action, or a prefix ending in .*' }),
                ),
                actorId: Type.Optional(Type.String({ maxLength: 100 })),
                targetId: Type.Optional(Type.String({ maxLength: 100 })),
                outcome: Type.Optional(
                  Type.Union([Type.Literal('success'), Type.Literal('failure'), Type.Literal('denied')]),
                ),
                since: Type.Optional(Type.String({ format: 'date-time' })),
                until: Type.Optional(Type.String({ format: 'date-time' })),
              }),
            ],
            { additionalProperties: false },
          ),
          response: { 200: Page(Entry), ...errors(400, 401, 403) },
        },
      },
      async (request) => listAudit(res, principalOf(request).tenantId, request.query),
    );
    app.get(
      '/audit/verify',
      {
        config: { access: 'audit:read' },
        schema: {
          tags: ['audit'],
          summary: "Recompute the tenant's audit chain and compare it with the newest signed checkpoint",
          response: {
            200: Type.Object({
              ok: Type.Boolean(),
              checked: Type.Integer(),
              firstBrokenSeq: Type.Optional(Type.Integer()),
              reason: Type.Optional(Type.String()),
              checkpointSeq: Type.Optional(Type.Integer()),
            }),
            ...errors(401, 403),
          },
        },
      },
      async (request) => verifyTenantAudit(res, principalOf(request).tenantId),
    );
    app.get(
      '/audit/checkpoints',
      {
        config: { access: 'audit:read' },
        schema: {
          tags: ['audit'],
          summary: 'Signed checkpoints of the chain head (Ed25519), with the public key to check them',
          response: {
            200: Type.Object({ publicKey: Type.String(), items: Type.Array(Checkpoint) }),
            ...errors(401, 403),
          },
        },
      },
      async (request) => {
        const list = await res.checkpoints.list(principalOf(request).tenantId);
        return {
          publicKey: res.checkpoints.publicKeyPem(),
          items: list.map((c) => ({ ...c.checkpoint, valid: c.valid })),
        };
      },
    );
  };
}
