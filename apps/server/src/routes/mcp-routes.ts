import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import {
  createMcpServer,
  deleteMcpServer,
  getMcpServer,
  listMcpServers,
  listServerTools,
  MAX_ALLOWED_TOOLS,
  MAX_COMMAND_PARTS,
  MCP_SERVER_NAME_PATTERN,
  MCP_TOOL_NAME_PATTERN,
  updateMcpServer,
} from '@steward/core/mcp/mcp-service';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors, IdParams, UseHealthSchema } from '../http/schemas.ts';

const Pem = (description: string) =>
  Type.String({ maxLength: 65_536, pattern: '^\\s*-----BEGIN CERTIFICATE-----', description });
const McpTls = Type.Object(
  {
    clientCertificate: Type.Optional(Pem('mutual TLS: the client certificate; its key is clientKey')),
    caCertificate: Type.Optional(
      Pem('CA certificate(s) trusted for this server instead of the public roots'),
    ),
  },
  { additionalProperties: false, description: 'http servers: mutual TLS and a private CA (PEM)' },
);
const ClientKey = Type.String({
  minLength: 1,
  maxLength: 8192,
  description: 'the PEM private key of tls.clientCertificate; write-only, stored encrypted',
});

const Risk = Type.Union([
  Type.Literal('low'),
  Type.Literal('medium'),
  Type.Literal('high'),
  Type.Literal('critical'),
]);
const Transport = Type.Union([Type.Literal('stdio'), Type.Literal('http')]);
const Name = Type.String({
  pattern: MCP_SERVER_NAME_PATTERN,
  description: 'lower-case; tools are named mcp.<name>.<tool>',
});
const ToolName = Type.String({ pattern: MCP_TOOL_NAME_PATTERN });
const AllowedTools = Type.Array(ToolName, {
  maxItems: MAX_ALLOWED_TOOLS,
  uniqueItems: true,
  description: 'the tools the planner may use (empty: none)',
});
const RiskOverrides = Type.Record(ToolName, Risk, {
  maxProperties: MAX_ALLOWED_TOOLS,
  description:
    "risk per tool, set by the tenant (default: high; a server's read-only annotation lowers it to medium, never further)",
});
const Command = Type.Array(Type.String({ minLength: 1, maxLength: 4096, pattern: '^[^\\x00]*$' }), {
  minItems: 1,
  maxItems: MAX_COMMAND_PARTS,
  description:
    'stdio only: program and arguments, run on the Steward host (needs STEWARD_MCP_STDIO=1 and the tenant setting mcp.allowStdio)',
});
const Url = Type.String({
  minLength: 8,
  maxLength: 2048,
  pattern: '^[Hh][Tt][Tt][Pp][Ss]?://',
  description: 'http only: the streamable HTTP endpoint (reached through the SSRF guard)',
});
const Secret = Type.Record(Type.String({ minLength: 1, maxLength: 100 }), Type.String({ maxLength: 8192 }), {
  maxProperties: 50,
  description: 'stdio: environment variables; http: request headers. Write-only, stored encrypted',
});

const ServerSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  transport: Transport,
  command: Type.Union([Type.Array(Type.String()), Type.Null()]),
  url: Type.Union([Type.String(), Type.Null()]),
  allowedTools: Type.Array(Type.String()),
  riskOverrides: Type.Record(Type.String(), Risk),
  enabled: Type.Boolean(),
  hasSecret: Type.Boolean({ description: 'a secret is stored (it is never returned)' }),
  tls: Type.Optional(McpTls),
  hasClientKey: Type.Optional(
    Type.Boolean({ description: 'a mutual-TLS client key is stored (it is never returned)' }),
  ),
  catalogRefreshedAt: Type.Union([Type.String(), Type.Null()], {
    description: 'when the tools were last listed; planning uses that list',
  }),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  health: UseHealthSchema,
});

const ToolSchema = Type.Object({
  name: Type.String(),
  stewardName: Type.String({ description: 'the name the planner uses: mcp.<server>.<tool>' }),
  description: Type.Union([Type.String(), Type.Null()]),
  inputSchema: Type.Record(Type.String(), Type.Unknown()),
  annotations: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
  allowed: Type.Boolean({ description: 'on the allow-list' }),
  risk: Risk,
});

export function mcpRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/mcp-servers',
      {
        config: { access: 'connections:read' },
        schema: {
          tags: ['mcp'],
          summary: 'MCP servers of the tenant, by name; secrets are never returned',
          response: { 200: Type.Object({ items: Type.Array(ServerSchema) }), ...errors(401, 403) },
        },
      },
      async (request) => ({ items: await listMcpServers(res, principalOf(request).tenantId) }),
    );
    app.post(
      '/mcp-servers',
      {
        config: { access: 'connections:manage' },
        schema: {
          tags: ['mcp'],
          summary: 'Register an MCP server; only allow-listed tools become plannable',
          body: Type.Object(
            {
              name: Name,
              transport: Transport,
              command: Type.Optional(Command),
              url: Type.Optional(Url),
              secret: Type.Optional(Secret),
              tls: Type.Optional(McpTls),
              clientKey: Type.Optional(ClientKey),
              allowedTools: Type.Optional(AllowedTools),
              riskOverrides: Type.Optional(RiskOverrides),
              enabled: Type.Optional(Type.Boolean()),
            },
            { additionalProperties: false },
          ),
          response: { 201: ServerSchema, ...errors(400, 401, 403, 409) },
        },
      },
      async (request, reply) =>
        reply
          .code(201)
          .send(await createMcpServer(res, principalOf(request).tenantId, actorOf(request), request.body)),
    );
    app.get(
      '/mcp-servers/:id',
      {
        config: { access: 'connections:read' },
        schema: {
          tags: ['mcp'],
          summary: 'One MCP server (without its secret)',
          params: IdParams,
          response: { 200: ServerSchema, ...errors(400, 401, 403, 404) },
        },
      },
      async (request) => getMcpServer(res, principalOf(request).tenantId, request.params.id),
    );
    app.patch(
      '/mcp-servers/:id',
      {
        config: { access: 'connections:manage' },
        schema: {
          tags: ['mcp'],
          summary:
            'Change an MCP server: allow-list, risk overrides, endpoint, secret (null removes it), enabled',
          params: IdParams,
          body: Type.Object(
            {
              name: Type.Optional(Name),
              command: Type.Optional(Command),
              url: Type.Optional(Url),
              secret: Type.Optional(Type.Union([Secret, Type.Null()])),
              tls: Type.Optional(McpTls),
              clientKey: Type.Optional(Type.Union([ClientKey, Type.Null()])),
              allowedTools: Type.Optional(AllowedTools),
              riskOverrides: Type.Optional(RiskOverrides),
              enabled: Type.Optional(Type.Boolean()),
            },
            { additionalProperties: false, minProperties: 1 },
          ),
          response: { 200: ServerSchema, ...errors(400, 401, 403, 404, 409) },
        },
      },
      async (request) =>
        updateMcpServer(
          res,
          principalOf(request).tenantId,
          actorOf(request),
          request.params.id,
          request.body,
        ),
    );
    app.delete(
      '/mcp-servers/:id',
      {
        config: { access: 'connections:manage' },
        schema: {
          tags: ['mcp'],
          summary: 'Delete an MCP server and its secret; its tools stop being available',
          params: IdParams,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        await deleteMcpServer(res, principalOf(request).tenantId, actorOf(request), request.params.id);
        return reply.code(204).send(null);
      },
    );
    app.get(
      '/mcp-servers/:id/tools',
      {
        config: { access: 'connections:read' },
        schema: {
          tags: ['mcp'],
          summary:
            "The server's tools, listed live; the list is kept as the snapshot planning uses (503 when the server cannot be reached)",
          params: IdParams,
          response: {
            200: Type.Object({ items: Type.Array(ToolSchema) }),
            ...errors(400, 401, 403, 404, 409, 503),
          },
        },
      },
      async (request) => ({
        items: await listServerTools(res, principalOf(request).tenantId, request.params.id),
      }),
    );
  };
}
