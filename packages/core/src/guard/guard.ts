import type { Database } from '@steward/db/database';
import { PLATFORM_TENANT_ID } from '../audit/audit-log.ts';
import { AppError } from '../errors/app-error.ts';
import type { Principal } from '../identity/authenticator.ts';
import { sha256 } from '../shared/secrets.ts';
import { IpAllowList, normalizeIp, rateLimitBucket } from './ip-allow-list.ts';
import { MemoryRateLimitStore } from './memory-rate-limit-store.ts';
import type { RateDecision, RateLimitStore } from './rate-limit-store.ts';

export const HOUR_MS = 3_600_000;
export const MINUTE_MS = 60_000;
/** A tenant's allow-list and quotas are re-read at most this often (changes in this process apply at once). */
export const POLICY_TTL_MS = 5000;

export interface GuardLimits {
  /** Failed sign-ins per account (e-mail) in a sliding hour. */
  loginFailuresPerAccount: number;
  /** Failed sign-ins per client address in a sliding hour. */
  loginFailuresPerIp: number;
  /** Requests per client address per minute; 0: no limit. */
  ipRequestsPerMinute: number;
  /** Requests per tenant per minute (tenant setting rateLimits.requestsPerMinute overrides); 0: no limit. */
  tenantRequestsPerMinute: number;
  /** Requests per API key per minute (tenant setting rateLimits.apiKeyRequestsPerMinute overrides); 0: no limit. */
  apiKeyRequestsPerMinute: number;
}

export const DEFAULT_LIMITS: GuardLimits = {
  loginFailuresPerAccount: 20,
  loginFailuresPerIp: 100,
  ipRequestsPerMinute: 0,
  tenantRequestsPerMinute: 0,
  apiKeyRequestsPerMinute: 0,
};

/** What a tenant stored in its settings (`rateLimits`): null or absent means the installation default. */
export interface TenantRateLimits {
  requestsPerMinute?: number | null | undefined;
  apiKeyRequestsPerMinute?: number | null | undefined;
}

interface TenantPolicy {
  allowList: IpAllowList;
  tenantPerMinute: number;
  apiKeyPerMinute: number;
  loadedAt: number;
}

export interface Refusal {
  code: 'RATE_LIMITED' | 'IP_NOT_ALLOWED';
  message: string;
  retryAfterSeconds?: number;
  details: Record<string, unknown>;
}

export interface LoginTicket {
  /** The sign-in succeeded: it does not count as a failure. */
  succeeded(): Promise<void>;
}

export interface GuardOptions {
  limits?: Partial<GuardLimits>;
  /** Shared store (Redis); default: in memory. */
  store?: RateLimitStore;
  now?: () => number;
  /** Called when the shared store fails (the in-memory store answers meanwhile). */
  onStoreError?: (error: unknown) => void;
}

export function rateLimited(decision: RateDecision, scope: string, message: string): AppError {
  return new AppError('RATE_LIMITED', message, {
    details: { scope, limit: decision.limit, retryAfterSeconds: decision.retryAfterSeconds },
  });
}

/**
 * Brute-force protection, request quotas and IP allow-lists. Every check is a counter update (in
 * memory, or one Redis round trip) and map lookups; a tenant's policy comes from the database at
 * most once per POLICY_TTL_MS.
 */
export class Guard {
  readonly limits: GuardLimits;
  readonly #db: Database;
  readonly #store: RateLimitStore;
  readonly #fallback: MemoryRateLimitStore;
  readonly #now: () => number;
  readonly #onStoreError: (error: unknown) => void;
  readonly #policies = new Map<string, TenantPolicy>();
  readonly #loading = new Map<string, Promise<TenantPolicy>>();

  constructor(db: Database, opts: GuardOptions = {}) {
    this.#db = db;
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.#fallback = new MemoryRateLimitStore();
    this.#store = opts.store ?? this.#fallback;
    this.#now = opts.now ?? Date.now;
    this.#onStoreError = opts.onStoreError ?? (() => {});
  }

  get shared(): boolean {
    return this.#store !== this.#fallback;
  }

  async #consume(key: string, limit: number, windowMs: number): Promise<RateDecision> {
    const now = this.#now();
    if (this.#store === this.#fallback) return this.#fallback.consumeNow(key, limit, windowMs, now);
    try {
      return await this.#store.consume(key, limit, windowMs, now);
    } catch (error) {
      this.#onStoreError(error);
      return this.#fallback.consumeNow(key, limit, windowMs, now);
    }
  }

  async #refund(key: string, windowMs: number, window: number): Promise<void> {
    await this.#store.refund(key, windowMs, window).catch((error: unknown) => this.#onStoreError(error));
  }

  /** Per-address request quota, before authentication. */
  async checkAddress(ip: string): Promise<Refusal | undefined> {
    const limit = this.limits.ipRequestsPerMinute;
    if (limit <= 0) return undefined;
    const d = await this.#consume(`ip:${rateLimitBucket(ip)}`, limit, MINUTE_MS);
    if (d.allowed) return undefined;
    return refusal(d, 'ip', 'too many requests from this address');
  }

  /** Allow-list and quotas of an authenticated request. */
  async checkPrincipal(principal: Principal, ip: string): Promise<Refusal | undefined> {
    if (principal.tenantId === PLATFORM_TENANT_ID) return undefined;
    const policy = await this.policy(principal.tenantId);
    if (!policy.allowList.allows(ip)) {
      return {
        code: 'IP_NOT_ALLOWED',
        message: `the tenant's IP allow-list does not include ${normalizeIp(ip)}`,
        details: { ip: normalizeIp(ip) },
      };
    }
    if (policy.tenantPerMinute > 0) {
      const d = await this.#consume(`t:${principal.tenantId}`, policy.tenantPerMinute, MINUTE_MS);
      if (!d.allowed) return refusal(d, 'tenant', "the tenant's request quota is used up");
    }
    if (principal.kind === 'api_key' && principal.apiKeyId && policy.apiKeyPerMinute > 0) {
      const d = await this.#consume(`k:${principal.apiKeyId}`, policy.apiKeyPerMinute, MINUTE_MS);
      if (!d.allowed) return refusal(d, 'api_key', "this API key's request quota is used up");
    }
    return undefined;
  }

  /**
   * Count a sign-in attempt against the account and the address before the password is checked
   * (so parallel attempts cannot exceed the limit); a successful sign-in gives both back. A refused
   * attempt verifies nothing and counts nothing: known and unknown accounts are refused alike.
   */
  async beginLogin(email: string, ip: string | undefined): Promise<LoginTicket> {
    const accountKey = `la:${sha256(email.trim().toLowerCase()).toString('base64url')}`;
    const ipKey = ip ? `li:${rateLimitBucket(ip)}` : undefined;
    let ipWindow = 0;
    if (ipKey) {
      const d = await this.#consume(ipKey, this.limits.loginFailuresPerIp, HOUR_MS);
      if (!d.allowed)
        throw rateLimited(d, 'login_ip', 'too many failed sign-ins from this address; try later');
      ipWindow = d.window;
    }
    const a = await this.#consume(accountKey, this.limits.loginFailuresPerAccount, HOUR_MS);
    if (!a.allowed) {
      if (ipKey) await this.#refund(ipKey, HOUR_MS, ipWindow);
      throw rateLimited(a, 'login_account', 'too many failed sign-ins for this account; try later');
    }
    return {
      succeeded: async () => {
        await this.#refund(accountKey, HOUR_MS, a.window);
        if (ipKey) await this.#refund(ipKey, HOUR_MS, ipWindow);
      },
    };
  }

  /** The tenant's allow-list and quotas (cached). */
  async policy(tenantId: string): Promise<TenantPolicy> {
    const cached = this.#policies.get(tenantId);
    if (cached && this.#now() - cached.loadedAt < POLICY_TTL_MS) return cached;
    let loading = this.#loading.get(tenantId);
    if (!loading) {
      loading = this.#load(tenantId).finally(() => this.#loading.delete(tenantId));
      this.#loading.set(tenantId, loading);
    }
    return loading;
  }

  async #load(tenantId: string): Promise<TenantPolicy> {
    const [row] = await this.#db.withTenant(
      tenantId,
      (tx) => tx<{ allow: unknown; limits: unknown }[]>`
        select settings->'ipAllowList' as allow, settings->'rateLimits' as limits
        from tenants where id = ${tenantId}`,
    );
    const allow = Array.isArray(row?.allow)
      ? row.allow.filter((e): e is string => typeof e === 'string')
      : [];
    const limits = (row?.limits ?? {}) as TenantRateLimits;
    const policy: TenantPolicy = {
      allowList: new IpAllowList(allow),
      tenantPerMinute: pick(limits.requestsPerMinute, this.limits.tenantRequestsPerMinute),
      apiKeyPerMinute: pick(limits.apiKeyRequestsPerMinute, this.limits.apiKeyRequestsPerMinute),
      loadedAt: this.#now(),
    };
    this.#policies.set(tenantId, policy);
    return policy;
  }

  /** Forget a tenant's cached policy (after a change in this process). */
  invalidateTenant(tenantId: string): void {
    this.#policies.delete(tenantId);
  }

  async close(): Promise<void> {
    if (this.#store !== this.#fallback) await this.#store.close();
    await this.#fallback.close();
  }
}

function pick(value: number | null | undefined, dflt: number): number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : dflt;
}

function refusal(d: RateDecision, scope: string, message: string): Refusal {
  return {
    code: 'RATE_LIMITED',
    message,
    retryAfterSeconds: d.retryAfterSeconds,
    details: { scope, limit: d.limit, retryAfterSeconds: d.retryAfterSeconds },
  };
}
