import { accessSync, constants } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { parseMasterKey } from '@steward/core/crypto/master-key';
import type { KeySettings } from '@steward/core/keys/key-settings';
import {
  parseInstallationDestinations,
  type InstallationDestination,
} from '@steward/core/siem/siem-destination';

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
  /**
   * Which peers may set X-Forwarded-For: false (none), a hop count, or proxy addresses/CIDRs.
   * Fastify's `trustProxy` takes each form as is.
   */
  trustProxy: false | number | string[];
  /** Seconds a running step holds its lease before the reaper may recover it. */
  stepLeaseSeconds: number;
  /** Steps one tenant may run at once. */
  tenantConcurrency: number;
  /** Jobs one worker process runs at once. */
  workerConcurrency: number;
  /** Job-queue batching: jobs a worker process fetches (and locks) at once; 1 = one at a time. */
  workerFetchBatch: number;
  /** Job-queue batching: ms a finished job waits to be marked complete together with others; -1 = off. */
  workerCompleteDelayMs: number;
  /** Seconds a leader lease (folder watcher, scheduler) lasts without renewal. */
  leaseSeconds: number;
  /** The installation allows stdio MCP servers (commands on this host); tenants must opt in too. */
  mcpAllowStdio: boolean;
  /** Seconds an unused pooled MCP connection stays open (STEWARD_MCP_IDLE_SECONDS). */
  mcpIdleSeconds: number;
  /** Pooled MCP connections per process at most (STEWARD_MCP_MAX_CONNECTIONS). */
  mcpMaxConnections: number;
  /** Page cache: hard bound on a cached list page's age in ms, 0 = no cache (STEWARD_PAGE_CACHE_TTL_MS). */
  pageCacheTtlMs: number;
  /** Page cache: bytes of cached pages per process at most (STEWARD_PAGE_CACHE_MAX_BYTES). */
  pageCacheMaxBytes: number;
  /** Brute-force limits and request quotas (0: no limit). */
  rateLimits: {
    loginFailuresPerAccount: number;
    loginFailuresPerIp: number;
    ipRequestsPerMinute: number;
    tenantRequestsPerMinute: number;
    apiKeyRequestsPerMinute: number;
  };
  /** Native HTTPS (certificate and key files); HSTS is sent only then. */
  tls: { certFile: string; keyFile: string } | undefined;
  /** Installation-wide SIEM destinations (every tenant's audit chain and the platform chain). */
  siemDestinations: InstallationDestination[];
  llm: {
    provider: LlmProvider;
    anthropicApiKey: string | undefined;
    openaiApiKey: string | undefined;
    openaiBaseUrl: string | undefined;
    model: string | undefined;
  };
  /** Key provider wrapping the tenant data keys (STEWARD_KMS_*). */
  keys: KeySettings;
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
  STEWARD_TRUST_PROXY:
    'who may set X-Forwarded-For: 0 (default: nobody), 1 or a hop count (the nearest N peers are proxies), or a comma-separated list of proxy addresses/CIDRs (also loopback, linklocal, uniquelocal)',
  STEWARD_LOGIN_FAILURES_PER_ACCOUNT: 'failed sign-ins per account in a sliding hour before 429 (default 20)',
  STEWARD_LOGIN_FAILURES_PER_IP:
    'failed sign-ins per client address in a sliding hour before 429 (default 100)',
  STEWARD_RATE_LIMIT_IP: 'requests per client address per minute (default 0: no limit)',
  STEWARD_RATE_LIMIT_TENANT:
    'requests per tenant per minute (default 0: no limit; tenant setting rateLimits.requestsPerMinute overrides)',
  STEWARD_RATE_LIMIT_API_KEY:
    'requests per API key per minute (default 0: no limit; tenant setting rateLimits.apiKeyRequestsPerMinute overrides)',
  STEWARD_TLS_CERT:
    'PEM certificate (chain) file: serve HTTPS natively and send HSTS (needs STEWARD_TLS_KEY)',
  STEWARD_TLS_KEY: 'PEM private key file for STEWARD_TLS_CERT',
  STEWARD_STEP_LEASE_SECONDS: 'seconds before a step whose worker died is recovered (default 60)',
  STEWARD_TENANT_CONCURRENCY:
    'steps one tenant may run at once (default 4; tenant setting maxConcurrentSteps overrides)',
  STEWARD_WORKER_CONCURRENCY: 'jobs one worker process runs at once (default 8)',
  STEWARD_WORKER_FETCH_BATCH:
    'jobs a worker process fetches and locks with one query, handed to its free slots from memory (default 1)',
  STEWARD_WORKER_COMPLETE_DELAY_MS:
    'ms a finished job waits so that jobs finishing meanwhile are marked complete in one statement (default -1: each on its own)',
  STEWARD_LEASE_SECONDS:
    'seconds before another process takes over the folder watcher or scheduler of a dead one (default 15)',
  STEWARD_LLM_PROVIDER: 'rules (default), anthropic or openai',
  ANTHROPIC_API_KEY: 'API key for STEWARD_LLM_PROVIDER=anthropic',
  OPENAI_API_KEY: 'API key for STEWARD_LLM_PROVIDER=openai',
  OPENAI_BASE_URL: 'OpenAI-compatible endpoint (Ollama, vLLM, ...)',
  STEWARD_LLM_MODEL: 'model name for the LLM planner',
  STEWARD_MCP_STDIO:
    '1 to allow stdio MCP servers (commands run on this host) for tenants whose setting mcp.allowStdio is true (default off)',
  STEWARD_MCP_IDLE_SECONDS:
    'seconds an unused MCP connection (a stdio process, an HTTP session) stays open for reuse (default 60)',
  STEWARD_MCP_MAX_CONNECTIONS: 'open MCP connections per process at most (default 50)',
  STEWARD_PAGE_CACHE_TTL_MS:
    'hard bound in ms on the age of a cached list page (default 1000; 0 turns the page cache off)',
  STEWARD_PAGE_CACHE_MAX_BYTES: 'bytes of cached list pages per process at most (default 16777216)',
  STEWARD_KMS_PROVIDER: 'key provider wrapping tenant data keys: local (default), vault, aws-kms or pkcs11',
  STEWARD_KMS_VAULT_ADDR: 'Vault/OpenBao address for STEWARD_KMS_PROVIDER=vault (https://host:8200)',
  STEWARD_KMS_VAULT_TOKEN:
    'Vault/OpenBao token allowed to use the transit key (encrypt, decrypt, rewrap, rotate)',
  STEWARD_KMS_VAULT_KEY: 'transit key name (default steward)',
  STEWARD_KMS_VAULT_MOUNT: 'transit engine mount path (default transit)',
  STEWARD_KMS_VAULT_NAMESPACE: 'Vault Enterprise / OpenBao namespace (optional)',
  STEWARD_KMS_AWS_KEY_ID:
    'AWS KMS key id, ARN or alias for STEWARD_KMS_PROVIDER=aws-kms (credentials: default AWS chain)',
  STEWARD_KMS_AWS_REGION: 'AWS region of the KMS key',
  STEWARD_KMS_AWS_ENDPOINT: 'KMS endpoint override (VPC endpoint, LocalStack; optional)',
  STEWARD_KMS_PKCS11_LIBRARY:
    'PKCS#11 module path for STEWARD_KMS_PROVIDER=pkcs11 (e.g. /usr/lib/softhsm/libsofthsm2.so)',
  STEWARD_KMS_PKCS11_TOKEN: 'label of the PKCS#11 token holding the key',
  STEWARD_KMS_PKCS11_PIN: 'user PIN of the PKCS#11 token',
  STEWARD_KMS_PKCS11_KEY_LABEL:
    'label prefix of the AES key objects (default steward-kek; versions are <label>-v<N>)',
  STEWARD_SIEM_DESTINATIONS:
    'installation-wide SIEM destinations of the audit stream: a JSON array of {name, kind: syslog|https, config, token?} (default none)',
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
  const trustProxy = parseTrustProxy(str('STEWARD_TRUST_PROXY'), problems);
  const certFile = str('STEWARD_TLS_CERT');
  const keyFile = str('STEWARD_TLS_KEY');
  if ((certFile === undefined) !== (keyFile === undefined))
    problems.push('STEWARD_TLS_CERT and STEWARD_TLS_KEY go together: set both or neither');
  for (const [name, file] of [
    ['STEWARD_TLS_CERT', certFile],
    ['STEWARD_TLS_KEY', keyFile],
  ] as const) {
    if (file === undefined) continue;
    try {
      accessSync(file, constants.R_OK);
    } catch {
      problems.push(`${name}: cannot read ${file}`);
    }
  }
  const tls =
    certFile && keyFile ? { certFile: path.resolve(certFile), keyFile: path.resolve(keyFile) } : undefined;
  const baseUrl =
    url('STEWARD_BASE_URL', ['http', 'https']) ?? `${tls ? 'https' : 'http'}://localhost:${port}`;
  const keys = keySettings();
  const siem = parseInstallationDestinations(str('STEWARD_SIEM_DESTINATIONS') ?? '[]');
  problems.push(...siem.problems);

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
    trustProxy,
    rateLimits: {
      loginFailuresPerAccount: int('STEWARD_LOGIN_FAILURES_PER_ACCOUNT', 20, 1, 100_000),
      loginFailuresPerIp: int('STEWARD_LOGIN_FAILURES_PER_IP', 100, 1, 10_000_000),
      ipRequestsPerMinute: int('STEWARD_RATE_LIMIT_IP', 0, 0, 100_000_000),
      tenantRequestsPerMinute: int('STEWARD_RATE_LIMIT_TENANT', 0, 0, 100_000_000),
      apiKeyRequestsPerMinute: int('STEWARD_RATE_LIMIT_API_KEY', 0, 0, 100_000_000),
    },
    tls,
    stepLeaseSeconds: int('STEWARD_STEP_LEASE_SECONDS', 60, 2, 86_400),
    tenantConcurrency: int('STEWARD_TENANT_CONCURRENCY', 4, 1, 1000),
    workerConcurrency: int('STEWARD_WORKER_CONCURRENCY', 8, 1, 200),
    workerFetchBatch: int('STEWARD_WORKER_FETCH_BATCH', 1, 1, 1000),
    workerCompleteDelayMs: int('STEWARD_WORKER_COMPLETE_DELAY_MS', -1, -1, 10_000),
    leaseSeconds: int('STEWARD_LEASE_SECONDS', 15, 2, 3600),
    mcpAllowStdio: bool('STEWARD_MCP_STDIO'),
    mcpIdleSeconds: int('STEWARD_MCP_IDLE_SECONDS', 60, 1, 86_400),
    mcpMaxConnections: int('STEWARD_MCP_MAX_CONNECTIONS', 50, 1, 10_000),
    pageCacheTtlMs: int('STEWARD_PAGE_CACHE_TTL_MS', 1000, 0, 60_000),
    pageCacheMaxBytes: int('STEWARD_PAGE_CACHE_MAX_BYTES', 16 * 1_048_576, 65_536, 1_073_741_824),
    siemDestinations: siem.destinations,
    llm: { provider, anthropicApiKey, openaiApiKey, openaiBaseUrl, model: str('STEWARD_LLM_MODEL') },
    keys,
  };
  if (problems.length) throw new ConfigError(problems);
  return config;

  function keySettings(): KeySettings {
    const kp = oneOf('STEWARD_KMS_PROVIDER', ['local', 'vault', 'aws-kms', 'pkcs11'] as const, 'local');
    const need = (v: string | undefined, name: string): string => {
      if (v === undefined) problems.push(`STEWARD_KMS_PROVIDER=${kp} needs ${name}`);
      return v ?? '';
    };
    if (kp === 'vault') {
      const address = url('STEWARD_KMS_VAULT_ADDR', ['http', 'https']);
      if (!address) problems.push('STEWARD_KMS_PROVIDER=vault needs STEWARD_KMS_VAULT_ADDR');
      const token = need(str('STEWARD_KMS_VAULT_TOKEN'), 'STEWARD_KMS_VAULT_TOKEN');
      const keyName = str('STEWARD_KMS_VAULT_KEY') ?? 'steward';
      const mount = (str('STEWARD_KMS_VAULT_MOUNT') ?? 'transit').replace(/^\/+|\/+$/g, '');
      if (!/^[A-Za-z0-9_.-]+$/.test(keyName)) problems.push('STEWARD_KMS_VAULT_KEY must be a plain key name');
      if (!/^[A-Za-z0-9_./-]+$/.test(mount)) problems.push('STEWARD_KMS_VAULT_MOUNT must be a mount path');
      const namespace = str('STEWARD_KMS_VAULT_NAMESPACE');
      return { provider: kp, vault: { address: address ?? '', token, keyName, mount, namespace } };
    }
    if (kp === 'aws-kms') {
      const keyId = need(str('STEWARD_KMS_AWS_KEY_ID'), 'STEWARD_KMS_AWS_KEY_ID');
      const region = need(str('STEWARD_KMS_AWS_REGION'), 'STEWARD_KMS_AWS_REGION');
      if (region && !/^[a-z0-9-]{2,40}$/.test(region))
        problems.push('STEWARD_KMS_AWS_REGION is not a region name');
      const endpoint = url('STEWARD_KMS_AWS_ENDPOINT', ['http', 'https']);
      return { provider: kp, awsKms: { keyId, region, endpoint } };
    }
    if (kp === 'pkcs11') {
      const library = need(str('STEWARD_KMS_PKCS11_LIBRARY'), 'STEWARD_KMS_PKCS11_LIBRARY');
      if (library && !path.isAbsolute(library))
        problems.push('STEWARD_KMS_PKCS11_LIBRARY must be an absolute path');
      const tokenLabel = need(str('STEWARD_KMS_PKCS11_TOKEN'), 'STEWARD_KMS_PKCS11_TOKEN');
      const pin = need(str('STEWARD_KMS_PKCS11_PIN'), 'STEWARD_KMS_PKCS11_PIN');
      const keyLabel = str('STEWARD_KMS_PKCS11_KEY_LABEL') ?? 'steward-kek';
      return { provider: kp, pkcs11: { library, tokenLabel, pin, keyLabel } };
    }
    return { provider: 'local' };
  }
}

const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** STEWARD_TRUST_PROXY: off, a hop count (1 = the peer is the proxy) or proxy addresses/CIDRs. */
function parseTrustProxy(raw: string | undefined, problems: string[]): false | number | string[] {
  if (raw === undefined) return false;
  const lower = raw.trim().toLowerCase();
  if (['0', 'false', 'no', 'off'].includes(lower)) return false;
  if (['true', 'yes', 'on'].includes(lower)) return 1;
  if (/^\d+$/.test(lower)) {
    const hops = Number(lower);
    if (hops > 0 && hops <= 20) return hops;
    problems.push(`STEWARD_TRUST_PROXY hop count must be from 1 to 20 (got "${raw}")`);
    return false;
  }
  const entries = lower
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  const bad = entries.filter((e) => {
    if (PROXY_NAMES.has(e)) return false;
    const [address, prefix, ...rest] = e.split('/');
    const v = isIP(address ?? '');
    if (v === 0 || rest.length) return true;
    return prefix !== undefined && !(/^\d{1,3}$/.test(prefix) && Number(prefix) <= (v === 4 ? 32 : 128));
  });
  if (bad.length || !entries.length) {
    problems.push(
      `STEWARD_TRUST_PROXY must be 0, a hop count or a list of proxy addresses/CIDRs (bad: "${bad.join(', ') || raw}")`,
    );
    return false;
  }
  return entries;
}
