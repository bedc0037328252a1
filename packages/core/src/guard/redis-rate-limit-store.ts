import { Redis } from 'ioredis';
import { decide, type RateDecision, type RateLimitStore } from './rate-limit-store.ts';

// KEYS: current window, previous window. ARGV: limit, window ms, elapsed fraction of the window.
// Counts and decides atomically, so several Steward instances share one limit.
const CONSUME = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
local limit = tonumber(ARGV[1])
local estimate = prev * (1 - tonumber(ARGV[3])) + cur
if estimate + 1 > limit then return {0, cur, prev} end
cur = redis.call('INCR', KEYS[1])
if cur == 1 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2 + 1000) end
return {1, cur - 1, prev}`;

const REFUND = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur > 0 then redis.call('DECR', KEYS[1]) end
return 0`;

/** Counters in Redis (REDIS_URL), shared by every instance. */
export class RedisRateLimitStore implements RateLimitStore {
  readonly #redis: Redis;
  readonly #prefix: string;
  #ready: Promise<void> | undefined;
  #everReady = false;
  #failedAt = -Infinity;

  constructor(redis: Redis, prefix = 'steward:rl:') {
    this.#redis = redis;
    this.#prefix = prefix;
    redis.on('ready', () => (this.#everReady = true));
    redis.defineCommand('stewardConsume', { numberOfKeys: 2, lua: CONSUME });
    redis.defineCommand('stewardRefund', { numberOfKeys: 1, lua: REFUND });
  }

  static connect(url: string, prefix?: string): RedisRateLimitStore {
    // No offline queue: when Redis is down a call fails at once and the caller falls back.
    const redis = new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: false });
    redis.on('error', () => {}); // reported by the failing calls
    return new RedisRateLimitStore(redis, prefix);
  }

  #key(key: string, window: number): string {
    // The hash tag keeps both windows of a key on one cluster slot.
    return `${this.#prefix}{${key}}:${window}`;
  }

  async consume(key: string, limit: number, windowMs: number, now: number): Promise<RateDecision> {
    if (this.#redis.status !== 'ready') await this.#ensure();
    const window = Math.floor(now / windowMs);
    const elapsed = (now - window * windowMs) / windowMs;
    const run = (this.#redis as unknown as Record<string, (...a: unknown[]) => Promise<number[]>>)
      .stewardConsume!;
    const [, current, previous] = await run.call(
      this.#redis,
      this.#key(key, window),
      this.#key(key, window - 1),
      limit,
      windowMs,
      elapsed,
    );
    return decide(limit, windowMs, now, Number(current), Number(previous));
  }

  async refund(key: string, _windowMs: number, window: number): Promise<void> {
    if (this.#redis.status !== 'ready') await this.ready();
    const run = (this.#redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)
      .stewardRefund!;
    await run.call(this.#redis, this.#key(key, window));
  }

  /**
   * Waits for the first connection once at start-up; after that (or within 5 s of a failed wait) a
   * call fails at once while Redis is away, so requests never queue behind a dead Redis.
   */
  async #ensure(): Promise<void> {
    if (this.#everReady || Date.now() - this.#failedAt < 5000)
      throw new Error(`Redis is not connected (${this.#redis.status})`);
    try {
      await this.ready();
    } catch (error) {
      this.#failedAt = Date.now();
      throw error;
    }
  }

  /**
   * Resolves once connected; rejects when Redis is not reachable within `ms` (the caller then
   * counts in memory). One wait is shared by every caller.
   */
  ready(ms = 1000): Promise<void> {
    if (this.#redis.status === 'ready') return Promise.resolve();
    this.#ready ??= new Promise<void>((resolve, reject) => {
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#redis.off('ready', onReady);
        reject(new Error(`Redis is not reachable (${this.#redis.status})`));
      }, ms);
      this.#redis.once('ready', onReady);
    }).finally(() => (this.#ready = undefined));
    return this.#ready;
  }

  async close(): Promise<void> {
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }
}
