import type { Database } from '@steward/db/database';
import type { AuditLog } from './audit/audit-log.ts';
import type { CheckpointStore } from './audit/checkpoint-store.ts';
import type { MasterKey } from './crypto/master-key.ts';
import type { AccessTokens } from './identity/access-tokens.ts';
import type { Authenticator } from './identity/authenticator.ts';
import type { ToolRegistry } from './tools/tool-registry.ts';
import type { LlmSettings } from './planner/llm/llm-settings.ts';
import type { Resolver } from './tools/builtin/network-guard.ts';
import type { Guard } from './guard/guard.ts';
import type { KeyProviders } from './keys/key-providers.ts';
import type { ChangeFeed } from './live/change-feed.ts';
import type { McpClientPool } from './mcp/mcp-pool.ts';
import type { PageCache } from './cache/page-cache.ts';

/** Everything the domain code needs, wired by hand in one place (see apps/server/src/resources.ts). */
export interface Resources {
  db: Database;
  master: MasterKey;
  audit: AuditLog;
  checkpoints: CheckpointStore;
  tokens: AccessTokens;
  auth: Authenticator;
  tools: ToolRegistry;
  executor: ExecutorSettings;
  dataDir: string;
  /** The LLM planner's provider (absent or `rules`: playbooks only). */
  llm?: LlmSettings | undefined;
  /** MCP client settings (absent: stdio MCP servers are not allowed). */
  mcp?: McpSettings | undefined;
  /** Rate limits, brute-force protection and IP allow-lists (absent: none). */
  guard?: Guard | undefined;
  /** Key providers of the tenant data keys (absent: the local provider). */
  keys?: KeyProviders | undefined;
  /** Task, step and approval state changes, by tenant (LISTEN/NOTIFY; the web dashboard's live stream). */
  changes?: ChangeFeed | undefined;
  /** Open MCP connections reused per (tenant, server) (absent: a connection per operation). */
  mcpClients?: McpClientPool | undefined;
  /** Serialized list pages per tenant, invalidated by the database (absent: no page cache). */
  pages?: PageCache | undefined;
}

export interface McpSettings {
  /** The installation allows stdio MCP servers (STEWARD_MCP_STDIO=1); tenants must opt in as well. */
  allowStdio: boolean;
  /** DNS resolution for HTTP MCP servers (tests). */
  resolve?: Resolver | undefined;
  /** Addresses to treat as public (tests only). */
  treatAsPublic?: ReadonlySet<string> | undefined;
}

export interface ExecutorSettings {
  /** A running step whose worker stops renewing this lease is recovered by the reaper. */
  leaseSeconds: number;
  /** Steps one tenant may run at once (tenant setting `maxConcurrentSteps` overrides). */
  tenantConcurrency: number;
  /** Abort controllers of the steps running in this process, by step id (for cancel). */
  running: Map<string, AbortController>;
}

/** Who is acting, for the audit log. */
export interface Actor {
  type: 'user' | 'api_key' | 'system' | 'anonymous';
  id?: string | undefined;
  label?: string | undefined;
  requestId?: string | undefined;
  ip?: string | undefined;
}

export const SYSTEM_ACTOR: Actor = { type: 'system', label: 'steward' };

export function auditActor(actor: Actor) {
  return {
    actorType: actor.type,
    actorId: actor.id ?? null,
    actorLabel: actor.label ?? null,
    requestId: actor.requestId ?? null,
    ip: actor.ip ?? null,
  };
}
