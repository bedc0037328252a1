import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { isPublic, type Access } from './access.ts';

const rateLimited = Type.Ref('ErrorResponse', {
  description:
    'RATE_LIMITED: a request quota (per address, tenant or API key) or the sign-in limit is used up; see Retry-After',
});
const ipNotAllowed = Type.Ref('ErrorResponse', {
  description:
    "IP_NOT_ALLOWED: the tenant's IP allow-list does not include the caller's address; FORBIDDEN: the caller lacks the permission",
});

/** Public routes that sign someone into a tenant: the tenant's allow-list applies to them too. */
const SIGN_IN = /^\/api\/v1\/(auth|sso)\//;

/**
 * The guard (guard-hooks.ts) can answer any route 429 (the per-address quota runs before routing
 * to a handler) and any authenticated or sign-in route 403 IP_NOT_ALLOWED: add both to the declared
 * responses of every route with a schema (unless it declares these codes already), so the
 * OpenAPI document and response validation know them. Install before the routes and before swagger.
 */
export function installGuardResponses(app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    const schema = route.schema as { response?: Record<string, unknown> } | undefined;
    if (!schema) return;
    const response = { ...schema.response };
    response['429'] ??= rateLimited;
    const access = (route.config as { access?: Access } | undefined)?.access;
    if (!isPublic(access) || SIGN_IN.test(route.url)) {
      // A plain error 403 (permission) becomes the one that also names IP_NOT_ALLOWED.
      const declared = response['403'] as { $ref?: string; description?: string } | undefined;
      if (!declared || (declared.$ref === 'ErrorResponse' && !declared.description)) {
        response['403'] = ipNotAllowed;
      }
    }
    route.schema = { ...schema, response };
  });
}
