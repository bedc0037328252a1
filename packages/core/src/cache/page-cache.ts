import { isUuid } from '@steward/db/database';

/**
 * A cache of serialized response bodies (list pages), per tenant, that never serves a state the
 * database no longer has beyond a documented bound:
 *
 * - every change of a table a page reads announces its tenants (triggers of migration 0023): the
 *   committing process drops them synchronously (Database.watchCommits, before it answers), every
 *   process drops them when the NOTIFY arrives (PageCacheListener);
 * - while the LISTEN connection is not established (start-up, connection lost) the cache is
 *   bypassed and empty: nothing is served, nothing stored; it is flushed when listening resumes;
 * - a page is stored only if no invalidation of its tenant (nor a flush) happened since its build
 *   began (a ticket taken before the database read), so a page read from a snapshot older than a
 *   concurrent write is never stored after that write's invalidation;
 * - a hard TTL, counted from the moment the build began, bounds whatever might still be missed;
 * - at most `maxEntries` pages and `maxBytes` bytes, least recently used evicted first.
 *
 * The cache holds data of many tenants: the key always starts with the tenant id, and callers must
 * check the caller's permission BEFORE the lookup (authorization is never cached around).
 */
export interface PageCacheOptions {
  /** Hard bound on an entry's age, from the start of its build, in ms (> 0). */
  ttlMs: number;
  maxEntries?: number;
  maxBytes?: number;
  /** Clock (tests). */
  now?: () => number;
}

/** Taken before a page is built; `store` refuses the page if its tenant changed meanwhile. */
export interface PageTicket {
  readonly tenantId: string;
  readonly key: string;
  readonly seq: number;
  readonly startedAt: number;
}

interface Entry {
  tenantId: string;
  body: Buffer;
  expiresAt: number;
}

export interface PageCacheStats {
  entries: number;
  bytes: number;
  hits: number;
  misses: number;
  stores: number;
  /** Pages not stored because their tenant was invalidated (or the cache flushed) during the build. */
  refused: number;
  evictions: number;
  invalidations: number;
  flushes: number;
  /** Lookups while the cache was bypassed (not listening). */
  bypassed: number;
  /** Misses answered by a build of the same page already in flight. */
  joined: number;
  live: boolean;
}

/** Tenants whose last invalidation is remembered individually; beyond, a flush replaces them. */
const MAX_TRACKED_TENANTS = 10_000;

export class PageCache {
  readonly ttlMs: number;
  readonly maxEntries: number;
  readonly maxBytes: number;
  private readonly now: () => number;
  /** Insertion order is recency order: a hit moves its entry to the end. */
  private readonly entries = new Map<string, Entry>();
  private readonly byTenant = new Map<string, Set<string>>();
  /** Builds in flight, by key: requests for the same page join them (see load). */
  private readonly inflight = new Map<string, { ticket: PageTicket; body: Promise<Buffer> }>();
  /** The sequence number of each tenant's last invalidation. */
  private readonly invalidatedAt = new Map<string, number>();
  private flushedAt = 0;
  private seq = 0;
  private bytes = 0;
  private live = false;
  private readonly counts = {
    hits: 0,
    misses: 0,
    stores: 0,
    refused: 0,
    evictions: 0,
    invalidations: 0,
    flushes: 0,
    bypassed: 0,
    joined: 0,
  };

  constructor(opts: PageCacheOptions) {
    if (!(opts.ttlMs > 0)) throw new RangeError('PageCache needs a positive ttlMs');
    this.ttlMs = opts.ttlMs;
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.maxBytes = opts.maxBytes ?? 64 * 1024 * 1024;
    this.now = opts.now ?? Date.now;
  }

  /** True while invalidations are being received: only then is anything served or stored. */
  get isLive(): boolean {
    return this.live;
  }

  /**
   * Listening (again) or not. Either way everything is dropped and every build in flight is refused:
   * notifications may have been missed while not listening.
   */
  setLive(live: boolean): void {
    this.flush();
    this.live = live;
  }

  /** The page stored under (tenant, key), if fresh; undefined when absent, expired or bypassed. */
  get(tenantId: string, key: string): Buffer | undefined {
    if (!this.live) {
      this.counts.bypassed++;
      return undefined;
    }
    const k = tenantId + '\n' + key;
    const e = this.entries.get(k);
    if (!e) {
      this.counts.misses++;
      return undefined;
    }
    if (this.now() >= e.expiresAt) {
      this.remove(k, e);
      this.counts.misses++;
      return undefined;
    }
    this.entries.delete(k);
    this.entries.set(k, e);
    this.counts.hits++;
    return e.body;
  }

  /** Take before reading the database for a page; undefined when the cache is bypassed. */
  begin(tenantId: string, key: string): PageTicket | undefined {
    if (!this.live) return undefined;
    return { tenantId, key, seq: ++this.seq, startedAt: this.now() };
  }

  /**
   * The page under (tenant, key): from the cache, else from a build of the same page already in
   * flight that began after the tenant's last invalidation (it reads no older a state than a fresh
   * build started now could be served from the cache), else from `build`, stored if no invalidation
   * happened meanwhile. Concurrent misses of one page (many connections when it expires) build once;
   * a failed build fails the requests that joined it.
   */
  async load(tenantId: string, key: string, build: () => Promise<Buffer>): Promise<Buffer> {
    const hit = this.get(tenantId, key);
    if (hit) return hit;
    const k = tenantId + '\n' + key;
    const flying = this.inflight.get(k);
    if (flying && this.current(flying.ticket)) {
      this.counts.joined++;
      return flying.body;
    }
    const ticket = this.begin(tenantId, key);
    if (!ticket) return build();
    const body = build();
    const entry = { ticket, body };
    this.inflight.set(k, entry);
    try {
      const built = await body;
      this.store(ticket, built);
      return built;
    } finally {
      if (this.inflight.get(k) === entry) this.inflight.delete(k);
    }
  }

  /** Store a page built after `begin`, unless its tenant was invalidated since. True if stored. */
  store(ticket: PageTicket, body: Buffer): boolean {
    const { tenantId } = ticket;
    if (!this.unchanged(ticket)) {
      this.counts.refused++;
      return false;
    }
    const expiresAt = ticket.startedAt + this.ttlMs;
    if (this.now() >= expiresAt || body.length > this.maxBytes) return false;
    const k = tenantId + '\n' + ticket.key;
    const old = this.entries.get(k);
    if (old) this.remove(k, old);
    this.entries.set(k, { tenantId, body, expiresAt });
    let keys = this.byTenant.get(tenantId);
    if (!keys) this.byTenant.set(tenantId, (keys = new Set()));
    keys.add(k);
    this.bytes += body.length;
    this.counts.stores++;
    while (this.entries.size > this.maxEntries || this.bytes > this.maxBytes) {
      const oldest = this.entries.entries().next().value as [string, Entry];
      this.remove(oldest[0], oldest[1]);
      this.counts.evictions++;
    }
    return true;
  }

  /**
   * Drop the pages of the tenants named in an announcement of migration 0023: tenant ids separated
   * by commas, or '*' for every tenant. Anything that is not a list of uuids flushes everything.
   */
  invalidate(announcement: string): void {
    if (announcement === '*') return this.flush();
    const ids = announcement.split(',');
    if (!ids.every(isUuid)) return this.flush();
    for (const id of ids) this.invalidateTenant(id.toLowerCase());
  }

  invalidateTenant(tenantId: string): void {
    this.counts.invalidations++;
    if (this.invalidatedAt.size >= MAX_TRACKED_TENANTS && !this.invalidatedAt.has(tenantId)) {
      // Forget individual tenants: a flush refuses every build in flight, which covers them all.
      this.flush();
      return;
    }
    this.invalidatedAt.set(tenantId, ++this.seq);
    for (const k of this.byTenant.get(tenantId) ?? []) this.remove(k, this.entries.get(k)!);
  }

  /** Drop everything, and refuse every build in flight. */
  flush(): void {
    this.counts.flushes++;
    this.flushedAt = ++this.seq;
    this.invalidatedAt.clear();
    this.entries.clear();
    this.byTenant.clear();
    this.bytes = 0;
  }

  stats(): PageCacheStats {
    return { entries: this.entries.size, bytes: this.bytes, live: this.live, ...this.counts };
  }

  /** No invalidation of the ticket's tenant, nor a flush, since it was taken. */
  private unchanged(ticket: PageTicket): boolean {
    return (
      this.live && this.flushedAt < ticket.seq && (this.invalidatedAt.get(ticket.tenantId) ?? 0) < ticket.seq
    );
  }

  /** Unchanged, and young enough that its page could still be served. */
  private current(ticket: PageTicket): boolean {
    return this.unchanged(ticket) && this.now() < ticket.startedAt + this.ttlMs;
  }

  private remove(k: string, e: Entry): void {
    this.entries.delete(k);
    this.bytes -= e.body.length;
    const keys = this.byTenant.get(e.tenantId);
    keys?.delete(k);
    if (keys && keys.size === 0) this.byTenant.delete(e.tenantId);
  }
}
