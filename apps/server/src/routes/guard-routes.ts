import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import {
  getIpAllowList,
  getRateLimits,
  setIpAllowList,
  setRateLimits,
} from '@steward/core/guard/guard-settings-service';
import { MAX_ALLOW_LIST_ENTRIES } from '@steward/core/guard/ip-allow-list';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors } from '../http/schemas.ts';

const AllowList = Type.Object({
  entries: Type.Array(Type.String(), {
    description: 'IPv4/IPv6 addresses and CIDR ranges; empty: every address may call',
  }),
});

const Quota = Type.Union([Type.Integer({ minimum: 0, maximum: 100_000_000 }), Type.Null()], {
  description: 'requests per minute; 0: no limit; null: the installation default',
});

const RateLimits = Type.Object({
  requestsPerMinute: Type.Union([Type.Integer(), Type.Null()]),
  apiKeyRequestsPerMinute: Type.Union([Type.Integer(), Type.Null()]),
  effective: Type.Object({
    requestsPerMinute: Type.Integer({ description: '0: no limit' }),
    apiKeyRequestsPerMinute: Type.Integer({ description: '0: no limit' }),
  }),
});

export function guardRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/tenant/ip-allow-list',
      {
        config: { access: 'tenant:read' },
        schema: {
          tags: ['tenants'],
          summary: "The tenant's IP allow-list (applies to its sessions and API keys)",
          response: { 200: AllowList, ...errors(401, 403) },
        },
      },
      async (request) => getIpAllowList(res, principalOf(request).tenantId),
    );
    app.put(
      '/tenant/ip-allow-list',
      {
        config: { access: 'tenant:manage' },
        schema: {
          tags: ['tenants'],
          summary: 'Replace the IP allow-list (refused when it excludes your own address, unless force)',
          body: Type.Object(
            {
              entries: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
                maxItems: MAX_ALLOW_LIST_ENTRIES,
              }),
              force: Type.Optional(
                Type.Boolean({ description: 'save even if it shuts out the address of this request' }),
              ),
            },
            { additionalProperties: false },
          ),
          response: { 200: AllowList, ...errors(400, 401, 403, 409) },
        },
      },
      async (request) => setIpAllowList(res, principalOf(request).tenantId, actorOf(request), request.body),
    );
    app.get(
      '/tenant/rate-limits',
      {
        config: { access: 'tenant:read' },
        schema: {
          tags: ['tenants'],
          summary: "The tenant's request quotas (own values and what applies)",
          response: { 200: RateLimits, ...errors(401, 403) },
        },
      },
      async (request) => getRateLimits(res, principalOf(request).tenantId),
    );
    app.put(
      '/tenant/rate-limits',
      {
        config: { access: 'tenant:manage' },
        schema: {
          tags: ['tenants'],
          summary:
            'Set request quotas (raising one above the installation default needs a platform administrator)',
          body: Type.Object(
            { requestsPerMinute: Type.Optional(Quota), apiKeyRequestsPerMinute: Type.Optional(Quota) },
            { additionalProperties: false, minProperties: 1 },
          ),
          response: { 200: RateLimits, ...errors(400, 401, 403) },
        },
      },
      async (request) => {
        const p = principalOf(request);
        return setRateLimits(
          res,
          p.tenantId,
          { ...actorOf(request), isPlatformAdmin: p.isPlatformAdmin },
          request.body,
        );
      },
    );
  };
}
