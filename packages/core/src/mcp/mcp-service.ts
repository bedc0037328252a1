import { randomUUID, X509Certificate } from 'node:crypto';
import { Kind, TypeRegistry, type TSchema } from '@sinclair/typebox';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import type { Tx } from '@steward/db/database';
import { clientKeyProblem, vaultFor } from '../connections/connection-service.ts';
import {
  healthColumns,
  recordUse,
  toUseHealth,
  type HealthRow,
  type UseHealth,
} from '../connections/connection-health.ts';
import { AppError, conflict, forbidden, fromDatabaseError, invalid, notFound } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { SecretUnreadableError } from '../secrets/envelope.ts';
import { RISK_LEVELS, ToolError, type RiskLevel, type Tool } from '../tools/tool.ts';
import {
  listMcpTools,
  McpUnavailableError,
  withMcpClient,
  type McpEndpoint,
  type McpRunner,
  type McpNetworkOptions,
  type McpToolInfo,
} from './mcp-client.ts';
import { McpClientPool } from './mcp-pool.ts';
import { sealedColumnUpdate } from '../secrets/sealed-column.ts';

/**
 * MCP servers a tenant registered, and their tools as Steward tools.
 *
 * Security rules (see also the README):
 * - Only tools on the server's allow-list (`allowedTools`; empty = none) become plannable tools,
 *   named `mcp.<server>.<tool>`; anything else is neither planned nor executed.
 * - Risk: a tenant override for the tool wins; otherwise an MCP tool is `high`, and the server's own
 *   annotations (readOnlyHint true, destructiveHint not true) may lower that to `medium`, never
 *   further: annotations come from the server and are not trusted. MCP tools are never retried
 *   automatically. The tenant's approval policy applies as to every tool (recipients = [server name]).
 * - stdio servers run a command on the Steward host: they can be registered (and are started) only
 *   when the installation allows it (STEWARD_MCP_STDIO=1, `res.mcp.allowStdio`) AND the tenant
 *   setting `mcp.allowStdio` is true. HTTP servers are always allowed and go through the SSRF guard
 *   (private addresses only with the tenant setting network.allowPrivate).
 * - The secret (env for stdio, headers for HTTP) is write-only, encrypted with the tenant's
 *   envelope key like connection secrets, never returned, logged or audited.
 */

export const MCP_SERVER_NAME_PATTERN = '^[a-z0-9][a-z0-9_-]{0,39}$';
export const MCP_TOOL_NAME_PATTERN = '^[A-Za-z0-9_][A-Za-z0-9_./-]{0,63}$';
const TOOL_NAME = new RegExp(MCP_TOOL_NAME_PATTERN);
export const MAX_ALLOWED_TOOLS = 100;
export const MAX_COMMAND_PARTS = 50;
/** The _meta key that carries a step's idempotency key on every tools/call. */
export const IDEMPOTENCY_META_KEY = 'steward/idempotency-key';
const MAX_RESULT_CHARS = 64 * 1024;

export interface McpServerView {
  id: string;
  name: string;
  transport: 'stdio' | 'http';
  command: string[] | null;
  url: string | null;
  allowedTools: string[];
  riskOverrides: Record<string, RiskLevel>;
  enabled: boolean;
  hasSecret: boolean;
  /** Mutual TLS: the client certificate and CA (PEM, not secret). */
  tls: McpTlsConfig;
  /** A mutual-TLS client key is stored (never returned). */
  hasClientKey: boolean;
  catalogRefreshedAt: string | null;
  createdAt: string;
  updatedAt: string;
  /** How planning and tool calls last used it. */
  health: UseHealth;
}

interface Row extends HealthRow {
  id: string;
  name: string;
  transport: 'stdio' | 'http';
  command: string[] | null;
  url: string | null;
  allowed_tools: string[];
  risk_overrides: Record<string, RiskLevel>;
  enabled: boolean;
  has_secret: boolean;
  tls: McpTlsConfig;
  has_client_key: boolean;
  catalog: McpToolInfo[];
  catalog_refreshed_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

const viewColumns = (tx: Tx) =>
  tx`id, name, transport, command, url, allowed_tools, risk_overrides, enabled,
     (secret_ciphertext is not null) as has_secret, tls, (client_key_ciphertext is not null) as has_client_key, catalog, catalog_refreshed_at, created_at, updated_at, ${healthColumns(tx)}`;

const toView = (r: Row): McpServerView => ({
  id: r.id,
  name: r.name,
  transport: r.transport,
  command: r.command,
  url: r.url,
  allowedTools: r.allowed_tools,
  riskOverrides: r.risk_overrides,
  enabled: r.enabled,
  hasSecret: r.has_secret,
  tls: r.tls ?? {},
  hasClientKey: r.has_client_key,
  catalogRefreshedAt: r.catalog_refreshed_at?.toISOString() ?? null,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
  health: toUseHealth(r),
});

export interface McpTlsConfig {
  clientCertificate?: string | undefined;
  caCertificate?: string | undefined;
}

/** The credential id of a server's mutual-TLS key (its own additional data). */
const clientKeyId = (id: string) => `${id}:client-key`;

function checkTls(transport: 'stdio' | 'http', tls: McpTlsConfig | undefined, clientKey: string | undefined) {
  if ((tls || clientKey !== undefined) && transport !== 'http')
    throw invalid('body/tls and body/clientKey are for http MCP servers');
  for (const field of ['clientCertificate', 'caCertificate'] as const) {
    const pem = tls?.[field];
    if (pem === undefined) continue;
    try {
      new X509Certificate(pem);
    } catch {
      throw invalid(`body/tls/${field} is not a readable PEM certificate`);
    }
  }
  if (clientKey !== undefined) {
    const problem = clientKeyProblem(clientKey, tls?.clientCertificate);
    if (problem) throw invalid(problem.replace('config.clientCertificate', 'tls.clientCertificate'));
  }
}

export interface McpServerInput {
  name: string;
  transport: 'stdio' | 'http';
  command?: string[] | undefined;
  url?: string | undefined;
  secret?: Record<string, string> | undefined;
  tls?: McpTlsConfig | undefined;
  /** Mutual TLS: the PEM private key of tls.clientCertificate; write-only, stored encrypted. */
  clientKey?: string | undefined;
  allowedTools?: string[] | undefined;
  riskOverrides?: Record<string, RiskLevel> | undefined;
  enabled?: boolean | undefined;
}

export interface McpServerPatch {
  name?: string | undefined;
  command?: string[] | undefined;
  url?: string | undefined;
  /** New secret, or null to remove it. */
  secret?: Record<string, string> | null | undefined;
  /** Replaces the TLS settings ({} removes them). */
  tls?: McpTlsConfig | undefined;
  /** A new mutual-TLS client key, or null to remove it. */
  clientKey?: string | null | undefined;
  allowedTools?: string[] | undefined;
  riskOverrides?: Record<string, RiskLevel> | undefined;
  enabled?: boolean | undefined;
}

function checkUrl(text: string): void {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid('body/url is not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid('body/url must be http or https');
  if (url.username || url.password) throw invalid('body/url must not hold a user name or password');
  if (url.hash) throw invalid('body/url must not have a fragment');
}

/** Headers the MCP transport sets itself. */
const RESERVED_HEADERS = new Set([
  'host',
  'content-length',
  'content-type',
  'transfer-encoding',
  'connection',
  'accept',
  'mcp-session-id',
  'mcp-protocol-version',
]);

function checkSecret(transport: 'stdio' | 'http', secret: Record<string, string>): void {
  const keyPattern =
    transport === 'stdio' ? /^[A-Za-z_][A-Za-z0-9_]{0,99}$/ : /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$/;
  const what = transport === 'stdio' ? 'environment variable' : 'header';
  const keys = Object.keys(secret);
  if (keys.length > 50) throw invalid('body/secret has too many entries');
  for (const k of keys) {
    if (!keyPattern.test(k)) throw invalid(`body/secret has an invalid ${what} name`);
    if (transport === 'http' && RESERVED_HEADERS.has(k.toLowerCase()))
      throw invalid(`body/secret may not set the ${k} header`);
    const v = secret[k];
    if (typeof v !== 'string' || v.length > 8192 || /[\r\n\0]/.test(v))
      throw invalid(`body/secret has an invalid value for a ${what}`);
  }
}

function checkToolNames(allowed: string[] | undefined, overrides: Record<string, string> | undefined): void {
  for (const t of allowed ?? [])
    if (!TOOL_NAME.test(t)) throw invalid('body/allowedTools holds an invalid tool name');
  for (const [t, r] of Object.entries(overrides ?? {})) {
    if (!TOOL_NAME.test(t)) throw invalid('body/riskOverrides holds an invalid tool name');
    if (!RISK_LEVELS.includes(r as RiskLevel))
      throw invalid('body/riskOverrides holds an invalid risk level');
  }
}

/** Whether this tenant may register and start stdio servers (installation AND tenant opt-in). */
async function stdioAllowed(res: Resources, tx: Tx, tenantId: string): Promise<boolean> {
  if (res.mcp?.allowStdio !== true) return false;
  const [row] = await tx<{ allow: boolean | null }[]>`
    select (settings #> '{mcp,allowStdio}') = 'true'::jsonb as allow from tenants where id = ${tenantId}`;
  return row?.allow === true;
}

const STDIO_FORBIDDEN =
  'stdio MCP servers run a command on the Steward host: they need STEWARD_MCP_STDIO=1 on the installation and the tenant setting mcp.allowStdio';

function mapDbError(e: unknown, name: string): never {
  if ((e as { code?: string }).code === '23505')
    throw conflict(`an MCP server named "${name}" already exists`);
  throw fromDatabaseError(e, 'MCP server') ?? e;
}

export async function listMcpServers(res: Resources, tenantId: string): Promise<McpServerView[]> {
  return res.db.withTenant(tenantId, async (tx) =>
    (
      await tx<
        Row[]
      >`select ${viewColumns(tx)} from mcp_servers where tenant_id = ${tenantId} order by name limit 500`
    ).map(toView),
  );
}

export async function getMcpServer(res: Resources, tenantId: string, id: string): Promise<McpServerView> {
  const [row] = await res.db.withTenant(
    tenantId,
    (tx) =>
      tx<Row[]>`select ${viewColumns(tx)} from mcp_servers where tenant_id = ${tenantId} and id = ${id}`,
  );
  if (!row) throw notFound('MCP server');
  return toView(row);
}

export async function createMcpServer(
  res: Resources,
  tenantId: string,
  actor: Actor,
  input: McpServerInput,
): Promise<McpServerView> {
  if (input.transport === 'stdio') {
    if (!input.command?.length || input.url !== undefined)
      throw invalid('a stdio MCP server needs body/command and no url');
  } else if (input.url === undefined || input.command !== undefined) {
    throw invalid('an http MCP server needs body/url and no command');
  } else checkUrl(input.url);
  if (input.secret) checkSecret(input.transport, input.secret);
  checkTls(input.transport, input.tls, input.clientKey);
  checkToolNames(input.allowedTools, input.riskOverrides);
  const id = randomUUID();
  const vault = vaultFor(res.master);
  const view = await res.db
    .withTenant(tenantId, async (tx) => {
      if (input.transport === 'stdio' && !(await stdioAllowed(res, tx, tenantId)))
        throw forbidden(STDIO_FORBIDDEN);
      const sealed =
        input.secret === undefined
          ? null
          : await vault.encrypt(tx, tenantId, id, JSON.stringify(input.secret));
      const sealedKey =
        input.clientKey === undefined
          ? null
          : await vault.encrypt(tx, tenantId, clientKeyId(id), input.clientKey);
      const [row] = await tx<Row[]>`
        insert into mcp_servers (tenant_id, id, name, transport, command, url, allowed_tools, risk_overrides, enabled,
                                 secret_ciphertext, secret_nonce, tls, client_key_ciphertext, client_key_nonce)
        values (${tenantId}, ${id}, ${input.name}, ${input.transport}, ${input.command ?? null}, ${input.url ?? null},
                ${input.allowedTools ?? []}, ${tx.json((input.riskOverrides ?? {}) as never)}, ${input.enabled ?? true},
                ${sealed?.ciphertext ?? null}, ${sealed?.nonce ?? null}, ${tx.json((input.tls ?? {}) as never)},
                ${sealedKey?.ciphertext ?? null}, ${sealedKey?.nonce ?? null})
        returning ${viewColumns(tx)}`;
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'mcp_server.created',
        targetType: 'mcp_server',
        targetId: id,
        details: {
          name: input.name,
          transport: input.transport,
          ...(input.url ? { url: input.url } : { command: input.command?.[0] }),
          allowedTools: input.allowedTools ?? [],
          riskOverrides: input.riskOverrides ?? {},
          secret: sealed ? 'set' : 'none',
          tls: Object.keys(input.tls ?? {}).sort(),
          clientKey: sealedKey ? 'set' : 'none',
        },
      });
      return toView(row!);
    })
    .catch((e: unknown) => mapDbError(e, input.name));
  return view;
}

export async function updateMcpServer(
  res: Resources,
  tenantId: string,
  actor: Actor,
  id: string,
  patch: McpServerPatch,
): Promise<McpServerView> {
  if (patch.url !== undefined) checkUrl(patch.url);
  checkToolNames(patch.allowedTools, patch.riskOverrides);
  const vault = vaultFor(res.master);
  let name = patch.name ?? '';
  const view = await res.db
    .withTenant(tenantId, async (tx) => {
      const [current] = await tx<Row[]>`
        select ${viewColumns(tx)} from mcp_servers where tenant_id = ${tenantId} and id = ${id} for update`;
      if (!current) throw notFound('MCP server');
      name = patch.name ?? current.name;
      if (current.transport === 'stdio' && patch.url !== undefined)
        throw invalid('a stdio MCP server has no url');
      if (current.transport === 'http' && patch.command !== undefined)
        throw invalid('an http MCP server has no command');
      if (patch.secret) checkSecret(current.transport, patch.secret);
      const tls = patch.tls ?? current.tls ?? {};
      if (patch.tls !== undefined || typeof patch.clientKey === 'string')
        checkTls(current.transport, tls, typeof patch.clientKey === 'string' ? patch.clientKey : undefined);
      if (
        current.transport === 'stdio' &&
        patch.command !== undefined &&
        !(await stdioAllowed(res, tx, tenantId))
      )
        throw forbidden(STDIO_FORBIDDEN);
      const secret = await sealedColumnUpdate(
        tx,
        vault,
        { tenantId, credentialId: id, column: 'secret' },
        patch.secret ? JSON.stringify(patch.secret) : patch.secret === null ? null : undefined,
      );
      const clientKey = await sealedColumnUpdate(
        tx,
        vault,
        { tenantId, credentialId: clientKeyId(id), column: 'client_key' },
        patch.clientKey,
      );
      // A new endpoint invalidates the tool snapshot: list the tools again before planning with them.
      const endpointChanged = patch.url !== undefined || patch.command !== undefined;
      const [row] = await tx<Row[]>`
        update mcp_servers set name = ${name}, command = ${patch.command ?? current.command},
          url = ${patch.url ?? current.url}, allowed_tools = ${patch.allowedTools ?? current.allowed_tools},
          risk_overrides = ${tx.json((patch.riskOverrides ?? current.risk_overrides) as never)},
          enabled = ${patch.enabled ?? current.enabled}, updated_at = now()
          ${endpointChanged ? tx`, catalog = '[]'::jsonb, catalog_refreshed_at = null` : tx``}
          ${secret.sql} ${clientKey.sql}, tls = ${tx.json(tls as never)}
        where tenant_id = ${tenantId} and id = ${id}
        returning ${viewColumns(tx)}`;
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'mcp_server.updated',
        targetType: 'mcp_server',
        targetId: id,
        details: {
          name,
          fields: Object.entries(patch)
            .filter(([k, v]) => k !== 'secret' && k !== 'clientKey' && v !== undefined)
            .map(([k]) => k)
            .sort(),
          ...(patch.allowedTools ? { allowedTools: patch.allowedTools } : {}),
          ...(patch.riskOverrides ? { riskOverrides: patch.riskOverrides } : {}),
          ...(patch.enabled !== undefined ? { enabled: patch.enabled } : {}),
          secret: secret.change,
          clientKey: clientKey.change,
        },
      });
      return toView(row!);
    })
    .catch((e: unknown) => mapDbError(e, name));
  // Its open connection (a stdio process, an HTTP session) belongs to the old configuration.
  await res.mcpClients?.closeServer(tenantId, id);
  return view;
}

export async function deleteMcpServer(
  res: Resources,
  tenantId: string,
  actor: Actor,
  id: string,
): Promise<void> {
  await res.db.withTenant(tenantId, async (tx) => {
    const [row] = await tx<{ name: string }[]>`
      delete from mcp_servers where tenant_id = ${tenantId} and id = ${id} returning name`;
    if (!row) throw notFound('MCP server');
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'mcp_server.deleted',
      targetType: 'mcp_server',
      targetId: id,
      details: { name: row.name },
    });
  });
  await res.mcpClients?.closeServer(tenantId, id);
}

/**
 * How operations reach a server: on the pooled connection of (tenant, server) when the installation
 * has a pool (res.mcpClients), else on a connection of their own.
 */
function runnerFor(
  res: Resources,
  tenantId: string,
  found: { id: string; endpoint: McpEndpoint; net: McpNetworkOptions },
): McpRunner {
  const pool = res.mcpClients;
  if (!pool) return (fn, opts) => withMcpClient(found.endpoint, found.net, fn, opts.signal);
  return (fn, opts) => pool.use(McpClientPool.key(tenantId, found.id), found.endpoint, found.net, fn, opts);
}

interface SecretRow {
  id: string;
  name: string;
  transport: 'stdio' | 'http';
  command: string[] | null;
  url: string | null;
  enabled: boolean;
  secret_ciphertext: Buffer | null;
  secret_nonce: Buffer | null;
  tls: McpTlsConfig;
  client_key_ciphertext: Buffer | null;
  client_key_nonce: Buffer | null;
}

/** Endpoint, decrypted secret and network rules of one server. `tx` must be scoped to the tenant. */
async function endpointOf(
  res: Resources,
  tx: Tx,
  tenantId: string,
  where: { id: string } | { name: string },
): Promise<{ endpoint: McpEndpoint; net: McpNetworkOptions; enabled: boolean; id: string } | undefined> {
  const [row] = await tx<SecretRow[]>`
    select id, name, transport, command, url, enabled, secret_ciphertext, secret_nonce, tls,
           client_key_ciphertext, client_key_nonce from mcp_servers
    where tenant_id = ${tenantId} and ${'id' in where ? tx`id = ${where.id}` : tx`name = ${where.name}`}`;
  if (!row) return undefined;
  if (row.transport === 'stdio' && !(await stdioAllowed(res, tx, tenantId)))
    throw new McpUnavailableError('MCP_STDIO_DISABLED', STDIO_FORBIDDEN);
  let secret: Record<string, string> = {};
  if (row.secret_ciphertext && row.secret_nonce) {
    const plain = await vaultFor(res.master).decrypt(tx, tenantId, row.id, {
      ciphertext: row.secret_ciphertext,
      nonce: row.secret_nonce,
    });
    secret = JSON.parse(plain) as Record<string, string>;
  }
  const key =
    row.client_key_ciphertext && row.client_key_nonce
      ? await vaultFor(res.master).decrypt(tx, tenantId, clientKeyId(row.id), {
          ciphertext: row.client_key_ciphertext,
          nonce: row.client_key_nonce,
        })
      : undefined;
  const tls = {
    ...(row.tls?.clientCertificate && key ? { cert: row.tls.clientCertificate, key } : {}),
    ...(row.tls?.caCertificate ? { ca: row.tls.caCertificate } : {}),
  };
  const [t] = await tx<{ allow: boolean | null }[]>`
    select (settings #> '{network,allowPrivate}') = 'true'::jsonb as allow from tenants where id = ${tenantId}`;
  return {
    id: row.id,
    enabled: row.enabled,
    endpoint: { name: row.name, transport: row.transport, command: row.command, url: row.url, secret, tls },
    net: {
      allowPrivate: t?.allow === true,
      resolve: res.mcp?.resolve,
      treatAsPublic: res.mcp?.treatAsPublic,
    },
  };
}

export interface McpToolView {
  name: string;
  stewardName: string;
  description: string | null;
  inputSchema: Record<string, unknown>;
  annotations: Record<string, unknown> | null;
  allowed: boolean;
  risk: RiskLevel;
}

/**
 * The server's tools, listed live (connecting to it now); the list is stored as the snapshot that
 * planning uses. Errors reaching the server are 503s with a safe message.
 */
export async function listServerTools(res: Resources, tenantId: string, id: string): Promise<McpToolView[]> {
  const found = await res.db.withTenant(tenantId, async (tx) => {
    try {
      return await endpointOf(res, tx, tenantId, { id });
    } catch (e) {
      if (e instanceof McpUnavailableError) throw invalid(e.message);
      if (e instanceof SecretUnreadableError)
        throw conflict('the stored secret of this MCP server cannot be read');
      throw e;
    }
  });
  if (!found) throw notFound('MCP server');
  let tools: McpToolInfo[];
  const withTenant = <T>(fn: (tx: Tx) => Promise<T>) => res.db.withTenant(tenantId, fn);
  try {
    tools = await listMcpTools(found.endpoint, found.net, undefined, runnerFor(res, tenantId, found));
    await recordUse(withTenant, tenantId, { table: 'mcp_servers', id: found.id });
  } catch (e) {
    await recordUse(
      withTenant,
      tenantId,
      { table: 'mcp_servers', id: found.id },
      e instanceof McpUnavailableError
        ? { code: e.code, message: e.message }
        : { code: 'MCP_LIST_FAILED', message: 'listing the tools failed' },
      Object.values(found.endpoint.secret),
    );
    if (e instanceof McpUnavailableError) {
      throw new AppError('UNAVAILABLE', `${e.message} [${e.code}]`, { details: { reason: e.code } });
    }
    throw e;
  }
  const catalog = tools.filter((t) => TOOL_NAME.test(t.name));
  const row = await res.db.withTenant(tenantId, async (tx) => {
    const [r] = await tx<
      { name: string; allowed_tools: string[]; risk_overrides: Record<string, RiskLevel> }[]
    >`
      update mcp_servers set catalog = ${tx.json(catalog as never)}, catalog_refreshed_at = now()
      where tenant_id = ${tenantId} and id = ${id} returning name, allowed_tools, risk_overrides`;
    return r;
  });
  if (!row) throw notFound('MCP server');
  return catalog.map((t) => ({
    name: t.name,
    stewardName: `mcp.${row.name}.${t.name}`,
    description: t.description ?? null,
    inputSchema: t.inputSchema,
    annotations: t.annotations ?? null,
    allowed: row.allowed_tools.includes(t.name),
    risk: mcpToolRisk(t, row.risk_overrides),
  }));
}

/** A tenant override wins; else high, lowered to medium (never further) by a read-only annotation. */
export function mcpToolRisk(tool: McpToolInfo, overrides: Record<string, RiskLevel>): RiskLevel {
  const override = overrides[tool.name];
  if (override && RISK_LEVELS.includes(override)) return override;
  const a = tool.annotations ?? {};
  return a.readOnlyHint === true && a.destructiveHint !== true ? 'medium' : 'high';
}

// ---- JSON Schema arguments through the TypeBox compiler ----

const JSON_SCHEMA_KIND = 'StewardMcpJsonSchema';
const MAX_VALIDATORS = 500;
let ajv = new AjvJsonSchemaValidator();
const validators = new Map<string, (value: unknown) => boolean>();

function validatorFor(schema: Record<string, unknown>): (value: unknown) => boolean {
  const { $schema: _ignored, ...rest } = schema;
  const key = JSON.stringify(rest);
  let v = validators.get(key);
  if (!v) {
    if (validators.size >= MAX_VALIDATORS) {
      // Ajv keeps every compiled schema: start over rather than grow without bound.
      validators.clear();
      ajv = new AjvJsonSchemaValidator();
    }
    try {
      const check = ajv.getValidator(rest as never);
      v = (value) => check(value).valid;
    } catch {
      v = () => false; // a schema Ajv cannot compile accepts nothing
    }
    validators.set(key, v);
  }
  return v;
}

if (!TypeRegistry.Has(JSON_SCHEMA_KIND))
  TypeRegistry.Set(JSON_SCHEMA_KIND, (schema, value) =>
    validatorFor(schema as unknown as Record<string, unknown>)(value),
  );

/** A TypeBox schema that checks values against a plain JSON Schema (the MCP tool's inputSchema). */
export function jsonSchemaArgs(schema: Record<string, unknown>): TSchema {
  return { ...schema, [Kind]: JSON_SCHEMA_KIND } as unknown as TSchema;
}

// ---- Tools for a tenant ----

function textOf(result: { content?: unknown }): string {
  const parts = Array.isArray(result.content) ? result.content : [];
  return parts
    .map((p: { type?: string; text?: unknown }) =>
      p?.type === 'text' && typeof p.text === 'string' ? p.text : `[${p?.type ?? 'content'}]`,
    )
    .join('\n')
    .slice(0, MAX_RESULT_CHARS);
}

function mcpTool(
  res: Resources,
  server: { name: string; risk_overrides: Record<string, RiskLevel> },
  info: McpToolInfo,
): Tool {
  const stewardName = `mcp.${server.name}.${info.name}`;
  return {
    name: stewardName,
    description:
      `${(info.description ?? '').slice(0, 1000)} (MCP tool ${info.name} on server ${server.name})`.trim(),
    risk: mcpToolRisk(info, server.risk_overrides),
    retryable: false,
    args: jsonSchemaArgs(info.inputSchema),
    recipients: () => [`mcp:${server.name}`],
    preview: (args) => [
      {
        kind: 'mcp.call',
        summary: `call ${info.name} on ${server.name} with ${JSON.stringify(args).slice(0, 2000)}`,
        target: server.name,
      },
    ],
    async execute(ctx, args) {
      let found: Awaited<ReturnType<typeof endpointOf>>;
      try {
        found = await ctx.withTenant((tx) => endpointOf(res, tx, ctx.tenantId, { name: server.name }));
      } catch (e) {
        if (e instanceof McpUnavailableError) throw new ToolError(e.code, e.message);
        if (e instanceof SecretUnreadableError) throw new ToolError('MCP_SECRET_UNREADABLE', e.message);
        throw e;
      }
      if (!found || !found.enabled)
        throw new ToolError('TOOL_UNAVAILABLE', `MCP server ${server.name} is gone or disabled`);
      const used = { table: 'mcp_servers', id: found.id } as const;
      let result: { content?: unknown; structuredContent?: unknown; isError?: unknown };
      try {
        result = await runnerFor(
          res,
          ctx.tenantId,
          found,
        )(
          (client) =>
            client.callTool(
              { name: info.name, arguments: args, _meta: { [IDEMPOTENCY_META_KEY]: ctx.idempotencyKey } },
              undefined,
              { signal: ctx.signal, timeout: 120_000 },
            ) as Promise<typeof result>,
          { signal: ctx.signal },
        );
      } catch (e) {
        if (ctx.signal.aborted) throw Object.assign(new Error('aborted'), { name: 'AbortError' });
        const failure =
          e instanceof McpUnavailableError
            ? new ToolError(e.code, e.message)
            : new ToolError('MCP_CALL_FAILED', `the call to ${info.name} on ${server.name} failed`);
        await recordUse(ctx.withTenant, ctx.tenantId, used, failure, Object.values(found.endpoint.secret));
        throw failure;
      }
      // The server answered (a tool's own error is about its arguments, not the connection).
      await recordUse(ctx.withTenant, ctx.tenantId, used);
      const text = textOf(result);
      if (result.isError === true)
        throw new ToolError('MCP_TOOL_ERROR', text.slice(0, 1000) || 'the tool failed');
      return {
        server: server.name,
        tool: info.name,
        text,
        ...(result.structuredContent && typeof result.structuredContent === 'object'
          ? { structured: result.structuredContent as Record<string, unknown> }
          : {}),
      };
    },
  };
}

/**
 * The tools a tenant's planner and executor may use: the installation's (narrowed by the tenant
 * setting tools.allowed) plus the allow-listed tools of its enabled MCP servers, from their stored
 * snapshots (no network call). `tx` must be scoped to the tenant.
 */
export async function toolsForTenant(
  res: Resources,
  tx: Tx,
  tenantId: string,
  settings: Record<string, unknown>,
): Promise<Map<string, Tool>> {
  const tools = res.tools.forTenant(settings);
  const servers = await tx<
    {
      name: string;
      transport: string;
      allowed_tools: string[];
      risk_overrides: Record<string, RiskLevel>;
      catalog: McpToolInfo[];
    }[]
  >`select name, transport, allowed_tools, risk_overrides, catalog from mcp_servers
    where tenant_id = ${tenantId} and enabled and cardinality(allowed_tools) > 0 order by name`;
  const stdioOk =
    res.mcp?.allowStdio === true &&
    (settings.mcp as { allowStdio?: unknown } | undefined)?.allowStdio === true;
  for (const s of servers) {
    if (s.transport === 'stdio' && !stdioOk) continue;
    const allowed = new Set(s.allowed_tools);
    for (const info of Array.isArray(s.catalog) ? s.catalog : []) {
      if (!allowed.has(info.name) || !TOOL_NAME.test(info.name)) continue;
      if (!info.inputSchema || typeof info.inputSchema !== 'object') continue;
      const tool = mcpTool(res, s, info);
      if (!tools.has(tool.name)) tools.set(tool.name, tool);
    }
  }
  return tools;
}
