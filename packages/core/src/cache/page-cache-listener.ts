import postgres from 'postgres';
import type { PageCache } from './page-cache.ts';

/** The channel of migration 0023's announcements. */
export const PAGE_CACHE_CHANNEL = 'steward_page_cache';

export interface PageCacheListenerOptions {
  /** Delay before trying to LISTEN again after a failure or a lost connection (ms, default 1000). */
  retryMs?: number;
  log?: (message: string) => void;
  applicationName?: string;
}

/**
 * Keeps one LISTEN connection for the page cache and feeds it the announcements. The cache is live
 * (used) only while the LISTEN is in place: it is flushed and bypassed as soon as the connection is
 * lost, and flushed again when listening resumes (notifications sent meanwhile are lost).
 *
 * Its own connection rather than postgres.js `sql.listen`, which gives up for good when its
 * re-LISTEN after a lost connection fails, without telling the caller.
 */
export class PageCacheListener {
  private readonly sql: postgres.Sql;
  private readonly retryMs: number;
  private readonly log: (message: string) => void;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private attempt: Promise<boolean> | undefined;

  constructor(
    url: string,
    private readonly cache: PageCache,
    opts: PageCacheListenerOptions = {},
  ) {
    this.retryMs = opts.retryMs ?? 1000;
    this.log = opts.log ?? (() => {});
    // `onnotify` is the connection option postgres.js's own `listen` is built on (not in its types).
    const onnotify = (channel: string, payload: string) => {
      if (channel === PAGE_CACHE_CHANNEL) this.cache.invalidate(payload);
    };
    this.sql = postgres(url, {
      ...({ onnotify } as postgres.Options<Record<string, never>>),
      max: 1,
      idle_timeout: 0,
      max_lifetime: null,
      connect_timeout: 10,
      fetch_types: false,
      onnotice: () => {},
      connection: { application_name: opts.applicationName ?? 'steward-page-cache' },
      onclose: () => this.lost(),
    });
  }

  /** LISTEN; true once listening. On failure the cache stays bypassed and it retries by itself. */
  start(): Promise<boolean> {
    this.attempt ??= this.listen().finally(() => (this.attempt = undefined));
    return this.attempt;
  }

  private async listen(): Promise<boolean> {
    if (this.closed) return false;
    try {
      await this.sql`listen steward_page_cache`;
      if (this.closed) return false;
      // From here on every change is announced to us; what changed before is dropped.
      this.cache.setLive(true);
      return true;
    } catch (error) {
      this.log(`page cache: LISTEN failed (${(error as Error).message}); bypassed, retrying`);
      this.cache.setLive(false);
      this.retry();
      return false;
    }
  }

  private lost(): void {
    this.cache.setLive(false);
    if (this.closed) return;
    this.log('page cache: LISTEN connection lost; bypassed until it is back');
    this.retry();
  }

  private retry(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.start();
    }, this.retryMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.cache.setLive(false);
    await this.sql.end({ timeout: 5 }).catch(() => {});
  }
}
