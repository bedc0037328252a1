import type { Database } from '@steward/db/database';
import { PLATFORM_TENANT_ID } from '../audit/audit-log.ts';
import { unauthenticated } from '../errors/app-error.ts';
import { equalSecret, sha256 } from '../shared/secrets.ts';
import { TtlCache } from '../shared/ttl-cache.ts';
import type { AccessClaims, AccessTokens } from './access-tokens.ts';
import { rolePermissions, type Permission } from './permissions.ts';
import { parseSessionPolicy, sessionTimedOut } from './session-policy.ts';

export interface Principal {
  kind: 'user' | 'api_key';
  tenantId: string;
  /** The user, for user sessions. */
  userId?: string;
  sessionId?: string;
  apiKeyId?: string;
  role: string | null;
  permissions: ReadonlySet<Permission>;
  isPlatformAdmin: boolean;
  /** For the audit log: an email or an API key name. */
  label: string;
}

export const API_KEY_PATTERN = /^stw_([A-Za-z0-9]{12})_([A-Za-z0-9]{40})$/;

/** Authorization state is cached for at most this long, so revocation takes effect within it. */
export const AUTH_CACHE_TTL_MS = 1000;
/** A session's last use is written when it is older than this (idle timeouts are in minutes). */
const SESSION_TOUCH_MS = 30_000;

interface SessionRow {
  revoked_at: Date | null;
  expires_at: Date;
  active_tenant_id: string;
  user_status: string;
  is_platform_admin: boolean;
  email: string;
  membership_status: string | null;
  role_name: string | null;
  role_builtin: boolean | null;
  role_permissions: string[] | null;
  created_at: Date;
  last_used_at: Date;
  settings: Record<string, unknown> | null;
}

interface KeyRow {
  tenant_id: string;
  id: string;
  name: string;
  key_hash: Buffer;
  revoked_at: Date | null;
  expires_at: Date | null;
  role_name: string;
  role_builtin: boolean;
  role_permissions: string[];
}

/**
 * Turns a bearer credential into a Principal. Session validity, memberships and API keys are read
 * from the database at most once a second per credential; revocations in this process also drop
 * the cache at once.
 */
export class Authenticator {
  readonly #db: Database;
  readonly #tokens: AccessTokens;
  readonly #cache = new TtlCache<Principal | 'invalid'>(AUTH_CACHE_TTL_MS);
  readonly #lastUsedWritten = new TtlCache<true>(60_000);
  /** Access tokens (the whole string) whose signature and claims were verified in the last second. */
  readonly #verified = new TtlCache<AccessClaims>(AUTH_CACHE_TTL_MS);
  /** Loads in flight by cache key: concurrent misses of one credential read the database once. */
  readonly #loading = new Map<string, { generation: number; value: Promise<unknown> }>();
  /** Bumped by every invalidation: a load that began before one is neither joined nor cached. */
  #generation = 0;

  constructor(db: Database, tokens: AccessTokens) {
    this.#db = db;
    this.#tokens = tokens;
  }

  async authenticate(bearer: string): Promise<Principal> {
    const key = API_KEY_PATTERN.exec(bearer);
    if (key) return this.#apiKey(key[1]!, key[2]!);
    if (bearer.startsWith('stw_')) throw unauthenticated('invalid API key');
    // An Ed25519 verification costs ~0.3 ms of CPU; a token is verified at most once a second
    // (jose already accepts 5 s of clock skew past expiry). Session validity is checked below.
    let claims = this.#verified.get(bearer);
    if (!claims) {
      claims = await this.#tokens.verify(bearer);
      this.#verified.set(bearer, claims);
    }
    const cacheKey = `s:${claims.sessionId}:${claims.tenantId}:${claims.userId}`;
    const { userId, tenantId, sessionId } = claims;
    const principal = await this.#cached(cacheKey, () => this.#loadSession(userId, tenantId, sessionId));
    if (principal === 'invalid') throw unauthenticated('session is no longer valid');
    return principal;
  }

  /**
   * The cached value, or the value of a load of the same key already in flight (begun after the
   * last invalidation), or a new load, cached unless an invalidation happened while it ran.
   */
  async #cached<V extends Principal | 'invalid'>(cacheKey: string, load: () => Promise<V>): Promise<V> {
    const hit = this.#cache.get(cacheKey) as V | undefined;
    if (hit) return hit;
    const generation = this.#generation;
    const flying = this.#loading.get(cacheKey);
    if (flying && flying.generation === generation) return flying.value as Promise<V>;
    const value = load();
    const entry = { generation, value };
    this.#loading.set(cacheKey, entry);
    try {
      const loaded = await value;
      if (this.#generation === generation) this.#cache.set(cacheKey, loaded);
      return loaded;
    } finally {
      if (this.#loading.get(cacheKey) === entry) this.#loading.delete(cacheKey);
    }
  }

  async #loadSession(userId: string, tenantId: string, sessionId: string): Promise<Principal | 'invalid'> {
    const [row] = await this.#db.withTenant(
      tenantId,
      (tx) => tx<SessionRow[]>`
        select s.revoked_at, s.expires_at, s.active_tenant_id, u.status as user_status, u.is_platform_admin, u.email,
               m.status as membership_status, r.name as role_name, r.builtin as role_builtin,
               r.permissions as role_permissions, s.created_at, s.last_used_at, t.settings
        from sessions s
        join users u on u.id = s.user_id
        left join tenants t on t.id = ${tenantId}
        left join memberships m on m.tenant_id = ${tenantId} and m.user_id = u.id
        left join roles r on r.tenant_id = m.tenant_id and r.id = m.role_id
        where s.id = ${sessionId} and s.user_id = ${userId}`,
      { userId },
    );
    if (!row || row.revoked_at || row.expires_at <= new Date() || row.user_status !== 'active')
      return 'invalid';
    if (row.active_tenant_id !== tenantId) return 'invalid';
    // The tenant's idle and absolute timeouts (session-policy.ts); use keeps a session alive.
    const timedOut = sessionTimedOut(parseSessionPolicy(row.settings ?? {}), row);
    if (timedOut) {
      void this.#db
        .withSystemAccess(
          (tx) => tx`update sessions set revoked_at = now(), revoked_reason = ${`${timedOut}_timeout`}
                     where id = ${sessionId} and revoked_at is null`,
        )
        .catch(() => {});
      return 'invalid';
    }
    if (Date.now() - row.last_used_at.getTime() > SESSION_TOUCH_MS)
      this.#touchSession(tenantId, userId, sessionId);
    const isPlatform = tenantId === PLATFORM_TENANT_ID;
    if (!isPlatform && row.membership_status !== 'active') return 'invalid';
    if (isPlatform && !row.is_platform_admin) return 'invalid';
    const permissions = row.role_name
      ? rolePermissions({
          name: row.role_name,
          builtin: !!row.role_builtin,
          permissions: row.role_permissions ?? [],
        })
      : [];
    return {
      kind: 'user',
      tenantId,
      userId,
      sessionId,
      role: row.role_name,
      permissions: new Set(permissions),
      isPlatformAdmin: row.is_platform_admin,
      label: row.email,
    };
  }

  async #apiKey(prefix: string, secret: string): Promise<Principal> {
    const cacheKey = `k:${prefix}`;
    const entry = await this.#cached(cacheKey, () => this.#loadKey(prefix));
    if (entry === 'invalid' || !entry.hash || !equalSecret(entry.hash, sha256(secret))) {
      throw unauthenticated('invalid API key');
    }
    this.#touch(entry.tenantId, entry.apiKeyId!);
    const { hash: _hash, ...principal } = entry;
    return principal;
  }

  async #loadKey(prefix: string): Promise<(Principal & { hash: Buffer }) | 'invalid'> {
    // The prefix is public: it finds the key, the hash comparison authenticates it.
    const [found] = await this.#db.withSystemAccess(
      (tx) => tx<{ tenant_id: string }[]>`select tenant_id from api_keys where prefix = ${prefix}`,
    );
    if (!found) return 'invalid';
    const [row] = await this.#db.withTenant(
      found.tenant_id,
      (tx) => tx<KeyRow[]>`
        select k.tenant_id, k.id, k.name, k.key_hash, k.revoked_at, k.expires_at,
               r.name as role_name, r.builtin as role_builtin, r.permissions as role_permissions
        from api_keys k join roles r on r.tenant_id = k.tenant_id and r.id = k.role_id
        join tenants t on t.id = k.tenant_id
        where k.prefix = ${prefix} and t.status = 'active'`,
    );
    if (!row || row.revoked_at || (row.expires_at && row.expires_at <= new Date())) return 'invalid';
    return {
      kind: 'api_key',
      tenantId: row.tenant_id,
      apiKeyId: row.id,
      role: row.role_name,
      permissions: new Set(
        rolePermissions({
          name: row.role_name,
          builtin: row.role_builtin,
          permissions: row.role_permissions,
        }),
      ),
      isPlatformAdmin: false,
      label: `api key ${row.name}`,
      hash: row.key_hash,
    };
  }

  /** Record last use at most once a minute per key, off the request path. */
  #touch(tenantId: string, keyId: string): void {
    if (this.#lastUsedWritten.get(keyId)) return;
    this.#lastUsedWritten.set(keyId, true);
    void this.#db
      .withTenant(
        tenantId,
        (tx) => tx`update api_keys set last_used_at = now() where tenant_id = ${tenantId} and id = ${keyId}`,
      )
      .catch(() => this.#lastUsedWritten.delete(keyId));
  }

  /** Record session use (for the idle timeout) at most once a minute per session, off the request path. */
  #touchSession(tenantId: string, userId: string, sessionId: string): void {
    const key = `session:${sessionId}`;
    if (this.#lastUsedWritten.get(key)) return;
    this.#lastUsedWritten.set(key, true);
    void this.#db
      .withTenant(
        tenantId,
        (tx) => tx`update sessions set last_used_at = now() where id = ${sessionId} and revoked_at is null`,
        { userId },
      )
      .catch(() => this.#lastUsedWritten.delete(key));
  }

  invalidateSession(sessionId: string): void {
    this.#generation++;
    this.#cache.deleteWhere((k) => k.startsWith(`s:${sessionId}:`));
  }

  invalidateApiKey(prefix: string): void {
    this.#generation++;
    this.#cache.delete(`k:${prefix}`);
  }

  /** Drop everything cached for a tenant's users and keys (role or membership changes). */
  invalidateTenant(_tenantId: string): void {
    this.#generation++;
    this.#cache.clear();
  }
}
