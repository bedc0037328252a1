import path from 'node:path';
import { parseMasterKey } from '@steward/core/crypto/master-key';

export type LlmProvider = 'rules' | 'anthropic' | 'openai';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  port: number;
  host: string;
  /** Owner/migration connection; undefined means the embedded PostgreSQL. */
  databaseUrl: string | undefined;
  /** Runtime connection; undefined means Steward's own runtime role. */
  databaseAppUrl: string | undefined;
  dbPoolMax: number;
  embeddedPgPort: number;
  dataDir: string;
  redisUrl: string | undefined;
  baseUrl: string;
  noDemo: boolean;
  demoPassword: string | undefined;
  logLevel: LogLevel;
  masterKey: string | undefined;
  bodyLimit: number;
  accessTokenTtl: number;
  trustProxy: boolean;
  /** Seconds a running step holds its lease before the reaper may recover it. */
  stepLeaseSeconds: number;
  /** Steps one tenant may run at once. */
  tenantConcurrency: number;
  /** Jobs one worker process runs at once. */
  workerConcurrency: number;
  /** Seconds a leader lease (folder watcher, scheduler) lasts without renewal. */
  leaseSeconds: number;
  /** The installation allows stdio MCP servers (commands on this host); tenants must opt in too. */
  mcpAllowStdio: boolean;
  llm: {
    provider: LlmProvider;
    anthropicApiKey: string | undefined;
    openaiApiKey: string | undefined;
    openaiBaseUrl: string | undefined;
    model: string | undefined;
  };
}

/** Every environment variable Steward reads, with its meaning (the README lists the same). */
export const ENVIRONMENT = {
  PORT: 'HTTP port (default 8080)',
  HOST: 'address to listen on (default localhost; 0.0.0.0 in containers)',
  DATABASE_URL: 'owner connection used for migrations; unset starts the embedded PostgreSQL',
  DATABASE_APP_URL:
    'runtime connection (not owner, not superuser, no BYPASSRLS); unset: Steward creates its own role',
  STEWARD_DB_POOL_MAX: 'runtime connection pool size (default 10)',
  STEWARD_PG_PORT: 'port of the embedded PostgreSQL on 127.0.0.1 (default: a free port)',
  STEWARD_DATA_DIR: 'data directory (default ./.steward)',
  REDIS_URL: 'optional Redis (redis:// or rediss://)',
  STEWARD_BASE_URL: 'public URL of this installation (default http://localhost:PORT); the token issuer',
  STEWARD_NO_DEMO: '1 to skip creating the demo tenant on an empty database',
  STEWARD_DEMO_PASSWORD: "the demo owner's password (default: generated and printed once)",
  LOG_LEVEL: 'fatal, error, warn, info (default), debug, trace or silent',
  STEWARD_MASTER_KEY: '32-byte master key, hex or base64 (default: <data dir>/master.key, generated)',
  STEWARD_BODY_LIMIT: 'largest accepted request body in bytes (default 1048576)',
  STEWARD_ACCESS_TOKEN_TTL: 'access token lifetime in seconds (default 900)',
  STEWARD_TRUST_PROXY: '1 when behind a reverse proxy that sets X-Forwarded-For (default off)',
  STEWARD_STEP_LEASE_SECONDS: 'seconds before a step whose worker died is recovered (default 60)',
  STEWARD_TENANT_CONCURRENCY:
    'steps one tenant may run at once (default 4; tenant setting maxConcurrentSteps overrides)',
  STEWARD_WORKER_CONCURRENCY: 'jobs one worker process runs at once (default 8)',
  STEWARD_LEASE_SECONDS:
    'seconds before another process takes over the folder watcher or scheduler of a dead one (default 15)',
  STEWARD_LLM_PROVIDER: 'rules (default), anthropic or openai',
  ANTHROPIC_API_KEY: 'API key for STEWARD_LLM_PROVIDER=anthropic',
  OPENAI_API_KEY: 'API key for STEWARD_LLM_PROVIDER=openai',
  OPENAI_BASE_URL: 'OpenAI-compatible endpoint (Ollama, vLLM, ...)',
  STEWARD_LLM_MODEL: 'model name for the LLM planner',
  STEWARD_MCP_STDIO:
    '1 to allow stdio MCP servers (commands run on this host) for tenants whose setting mcp.allowStdio is true (default off)',
} as const;

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super('invalid configuration:\n' + problems.map((p) => `  - ${p}`).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Parse and validate the environment once; every problem is reported together. */
export function loadConfig(
  env: NodeJS.ProcessEnv,
  overrides: { port?: number; dataDir?: string } = {},
): Config {
  const problems: string[] = [];
  const str = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v === '' ? undefined : v;
  };
  const int = (name: string, dflt: number, min: number, max: number): number => {
    const raw = str(name);
    if (raw === undefined) return dflt;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${name} must be an integer from ${min} to ${max} (got "${raw}")`);
      return dflt;
    }
    return n;
  };
  const bool = (name: string): boolean => {
    const raw = str(name);
    if (raw === undefined) return false;
    if (['1', 'true', 'yes', 'on'].includes(raw.toLowerCase())) return true;
    if (['0', 'false', 'no', 'off'].includes(raw.toLowerCase())) return false;
    problems.push(`${name} must be 1 or 0 (got "${raw}")`);
    return false;
  };
  const url = (name: string, schemes: string[]): string | undefined => {
    const raw = str(name);
    if (raw === undefined) return undefined;
    try {
      const u = new URL(raw);
      if (!schemes.includes(u.protocol.replace(/:$/, ''))) {
        problems.push(`${name} must be a ${schemes.join(' or ')} URL`);
      }
    } catch {
      problems.push(`${name} is not a valid URL`);
    }
    return raw;
  };
  const oneOf = <T extends string>(name: string, values: readonly T[], dflt: T): T => {
    const raw = str(name);
    if (raw === undefined) return dflt;
    if (!values.includes(raw as T)) {
      problems.push(`${name} must be one of ${values.join(', ')} (got "${raw}")`);
      return dflt;
    }
    return raw as T;
  };

  const port = overrides.port ?? int('PORT', 8080, 0, 65535);
  const databaseUrl = url('DATABASE_URL', ['postgres', 'postgresql']);
  const databaseAppUrl = url('DATABASE_APP_URL', ['postgres', 'postgresql']);
  if (databaseAppUrl && !databaseUrl)
    problems.push('DATABASE_APP_URL needs DATABASE_URL (the owner connection) too');
  const demoPassword = str('STEWARD_DEMO_PASSWORD');
  if (demoPassword !== undefined && demoPassword.length < 10) {
    problems.push('STEWARD_DEMO_PASSWORD must be at least 10 characters');
  }
  const masterKey = str('STEWARD_MASTER_KEY');
  if (masterKey !== undefined && !parseMasterKey(masterKey)) {
    problems.push('STEWARD_MASTER_KEY must be 32 bytes written as 64 hex characters or base64');
  }
  const provider = oneOf('STEWARD_LLM_PROVIDER', ['rules', 'anthropic', 'openai'] as const, 'rules');
  const anthropicApiKey = str('ANTHROPIC_API_KEY');
  const openaiApiKey = str('OPENAI_API_KEY');
  const openaiBaseUrl = url('OPENAI_BASE_URL', ['http', 'https']);
  if (provider === 'anthropic' && !anthropicApiKey)
    problems.push('STEWARD_LLM_PROVIDER=anthropic needs ANTHROPIC_API_KEY');
  if (provider === 'openai' && !openaiApiKey && !openaiBaseUrl) {
    problems.push('STEWARD_LLM_PROVIDER=openai needs OPENAI_API_KEY or OPENAI_BASE_URL');
  }
  const baseUrl = url('STEWARD_BASE_URL', ['http', 'https']) ?? `http://localhost:${port}`;

  const config: Config = {
    port,
    host: str('HOST') ?? 'localhost',
    databaseUrl,
    databaseAppUrl,
    dbPoolMax: int('STEWARD_DB_POOL_MAX', 10, 1, 500),
    embeddedPgPort: int('STEWARD_PG_PORT', 0, 0, 65535),
    dataDir: path.resolve(overrides.dataDir ?? str('STEWARD_DATA_DIR') ?? '.steward'),
    redisUrl: url('REDIS_URL', ['redis', 'rediss']),
    baseUrl: baseUrl.replace(/\/+$/, ''),
    noDemo: bool('STEWARD_NO_DEMO'),
    demoPassword,
    logLevel: oneOf(
      'LOG_LEVEL',
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const,
      'info',
    ),
    masterKey,
    bodyLimit: int('STEWARD_BODY_LIMIT', 1_048_576, 1024, 100 * 1_048_576),
    accessTokenTtl: int('STEWARD_ACCESS_TOKEN_TTL', 900, 30, 86_400),
    trustProxy: bool('STEWARD_TRUST_PROXY'),
    stepLeaseSeconds: int('STEWARD_STEP_LEASE_SECONDS', 60, 2, 86_400),
    tenantConcurrency: int('STEWARD_TENANT_CONCURRENCY', 4, 1, 1000),
    workerConcurrency: int('STEWARD_WORKER_CONCURRENCY', 8, 1, 200),
    leaseSeconds: int('STEWARD_LEASE_SECONDS', 15, 2, 3600),
    mcpAllowStdio: bool('STEWARD_MCP_STDIO'),
    llm: { provider, anthropicApiKey, openaiApiKey, openaiBaseUrl, model: str('STEWARD_LLM_MODEL') },
  };
  if (problems.length) throw new ConfigError(problems);
  return config;
}
