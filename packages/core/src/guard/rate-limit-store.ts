/**
 * Rate limiting with a sliding-window counter: the count of the current fixed window plus the
 * previous window's count weighted by how much of it still overlaps the sliding window. O(1) in
 * time and memory per key, and limits expire by themselves (no lockout outlives its window).
 */

export interface RateDecision {
  allowed: boolean;
  limit: number;
  /** Requests left in the sliding window after this one (0 when refused). */
  remaining: number;
  /** When refused: seconds until one more request would be allowed (at least 1). */
  retryAfterSeconds: number;
  /** The fixed window this request was counted in (for refund). */
  window: number;
}

export interface RateLimitStore {
  /** Count one request for `key` unless the sliding window already holds `limit`. */
  consume(key: string, limit: number, windowMs: number, now: number): Promise<RateDecision>;
  /** Give back one request counted by `consume` (a login that turned out to succeed). */
  refund(key: string, windowMs: number, window: number): Promise<void>;
  close(): Promise<void>;
}

/** The decision for a key whose current and previous fixed windows hold these counts. */
export function decide(
  limit: number,
  windowMs: number,
  now: number,
  current: number,
  previous: number,
): RateDecision {
  const window = Math.floor(now / windowMs);
  const elapsedMs = now - window * windowMs;
  const estimate = previous * (1 - elapsedMs / windowMs) + current;
  if (estimate + 1 <= limit) {
    return {
      allowed: true,
      limit,
      remaining: Math.max(0, Math.floor(limit - estimate - 1)),
      retryAfterSeconds: 0,
      window,
    };
  }
  let waitMs: number;
  if (current + 1 <= limit && previous > 0) {
    // The previous window's share decays within this window.
    const fraction = 1 - (limit - 1 - current) / previous;
    waitMs = Math.max(0, fraction * windowMs - elapsedMs);
  } else {
    // This window's count becomes the previous one and decays over the next window.
    const fraction = Math.max(0, 1 - (limit - 1) / Math.max(current, 1));
    waitMs = windowMs - elapsedMs + fraction * windowMs;
  }
  return {
    allowed: false,
    limit,
    remaining: 0,
    retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)),
    window,
  };
}
