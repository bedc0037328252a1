import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';

const unavailable = Type.Ref('ErrorResponse', {
  description:
    'UNAVAILABLE: the database is unavailable (restarting, unreachable, out of connections) or rolled the request back (deadlock); nothing was half-written. Send the request again after Retry-After seconds',
});

/** The routes that use the database: the API and the inbound webhooks (SCIM has its own errors). */
const USES_DATABASE = /^\/(api|hooks)\//;

/**
 * Any route that uses the database answers 503 UNAVAILABLE while the database cannot serve
 * (error-handler.ts): add it to the declared responses of every such route with a schema (unless
 * it declares 503 already), so the OpenAPI document and response validation know it. Install
 * before the routes and before swagger.
 */
export function installUnavailableResponses(app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    const schema = route.schema as { response?: Record<string, unknown> } | undefined;
    if (!schema || !USES_DATABASE.test(route.url)) return;
    if (schema.response?.['503']) return;
    route.schema = { ...schema, response: { ...schema.response, 503: unavailable } };
  });
}
