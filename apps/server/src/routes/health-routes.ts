import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import { tenantHealth } from '@steward/core/watchers/health-service';
import type { FastifyInstance } from 'fastify';
import { principalOf } from '../http/request-actor.ts';
import { errors, NullableString, UseHealthFields } from '../http/schemas.ts';

const HealthSchema = Type.Object({
  watchers: Type.Array(
    Type.Object({
      name: Type.String(),
      state: Type.Union([Type.Literal('held'), Type.Literal('expired'), Type.Literal('never')]),
      holder: NullableString({ description: 'shown to platform administrators only' }),
      renewedAt: NullableString({ format: 'date-time' }),
      expiresAt: NullableString({ format: 'date-time' }),
    }),
  ),
  mailboxes: Type.Array(
    Type.Object({
      id: Type.String({ format: 'uuid' }),
      name: Type.String(),
      lastProgressAt: NullableString({ format: 'date-time' }),
    }),
  ),
  siem: Type.Array(
    Type.Object({
      id: Type.String({ format: 'uuid' }),
      name: Type.String(),
      enabled: Type.Boolean(),
      lag: Type.Integer({ minimum: 0 }),
      failing: Type.Boolean(),
      lastErrorAt: NullableString({ format: 'date-time' }),
    }),
  ),
  connections: Type.Array(
    Type.Object({
      id: Type.String({ format: 'uuid' }),
      kind: Type.Union(
        [Type.Literal('smtp'), Type.Literal('http'), Type.Literal('imap'), Type.Literal('mcp')],
        {
          description: 'a connection kind, or mcp for an MCP server',
        },
      ),
      name: Type.String(),
      enabled: Type.Boolean({ description: 'false for a disabled MCP server' }),
      ...UseHealthFields,
    }),
    { description: "the tenant's connections (SMTP, HTTP, IMAP) and MCP servers, by kind and name" },
  ),
  checkedAt: Type.String({ format: 'date-time' }),
});

export function healthRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/health',
      {
        config: { access: 'tasks:read' },
        schema: {
          tags: ['system'],
          summary:
            "Background work as this tenant sees it: watcher leases (folder, scheduler, IMAP), the tenant's mailboxes, SIEM destinations' lag, and connection/MCP server health (last success, last error)",
          response: { 200: HealthSchema, ...errors(401, 403) },
        },
      },
      async (request) => {
        const p = principalOf(request);
        return tenantHealth(res, p.tenantId, { showHolders: p.isPlatformAdmin });
      },
    );
  };
}
