import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import { eraseTenant } from '@steward/core/privacy/tenant-erasure';
import { eraseUser } from '@steward/core/privacy/user-erasure';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors, IdParams } from '../http/schemas.ts';

const Counts = Type.Record(Type.String(), Type.Integer());

/** GDPR erasure of a member or of the whole tenant (crypto-shredding first). */
export function erasureRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.post(
      '/users/:id/erase',
      {
        config: { access: 'privacy:erase' },
        schema: {
          tags: ['privacy'],
          summary:
            'Erase a member: membership, consents and sessions deleted, their email, name and id replaced by a pseudonym everywhere in the tenant, audit entries pseudonymised',
          params: IdParams,
          response: {
            200: Type.Object({
              pseudonym: Type.String(),
              rows: Counts,
              auditEntriesRedacted: Type.Integer(),
              filesScrubbed: Type.Integer(),
              identityAnonymised: Type.Boolean(),
            }),
            ...errors(400, 401, 403, 404, 409),
          },
        },
      },
      async (request) => eraseUser(res, principalOf(request).tenantId, actorOf(request), request.params.id),
    );
    app.post(
      '/tenant/erase',
      {
        config: { access: 'tenant:owner' },
        schema: {
          tags: ['privacy'],
          summary:
            "Erase this tenant: destroy its data key (crypto-shredding), delete every row and file, anonymise members who belong nowhere else, keep the audit chain's skeleton",
          body: Type.Object(
            {
              confirm: Type.String({
                minLength: 1,
                maxLength: 100,
                description: "the tenant's slug, to confirm",
              }),
            },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Object({
              tenantId: Type.String(),
              pseudonym: Type.String(),
              dataKeyDestroyed: Type.Boolean(),
              tenantKekDestroyed: Type.Boolean({
                description: 'its key-encryption key outside the database (keystore) was destroyed',
              }),
              deleted: Counts,
              left: Type.Array(Type.String()),
              auditEntriesRedacted: Type.Integer(),
              usersAnonymised: Type.Integer(),
            }),
            ...errors(400, 401, 403, 404),
          },
        },
      },
      async (request) =>
        eraseTenant(res, principalOf(request).tenantId, actorOf(request), request.body.confirm),
    );
  };
}
