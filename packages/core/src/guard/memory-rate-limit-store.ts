import { decide, type RateDecision, type RateLimitStore } from './rate-limit-store.ts';

interface Slot {
  window: number;
  windowMs: number;
  current: number;
  previous: number;
}

const SWEEP_EVERY_MS = 60_000;

/** Counters in this process (one instance, or no REDIS_URL). Stale keys are swept once a minute. */
export class MemoryRateLimitStore implements RateLimitStore {
  readonly #slots = new Map<string, Slot>();
  #lastSweep = 0;

  consume(key: string, limit: number, windowMs: number, now: number): Promise<RateDecision> {
    return Promise.resolve(this.consumeNow(key, limit, windowMs, now));
  }

  /** Synchronous form, for the request hooks. */
  consumeNow(key: string, limit: number, windowMs: number, now: number): RateDecision {
    if (now - this.#lastSweep > SWEEP_EVERY_MS) this.#sweep(now);
    const window = Math.floor(now / windowMs);
    let slot = this.#slots.get(key);
    if (!slot) {
      slot = { window, windowMs, current: 0, previous: 0 };
      this.#slots.set(key, slot);
    } else if (slot.window !== window) {
      slot.previous = slot.window === window - 1 ? slot.current : 0;
      slot.current = 0;
      slot.window = window;
    }
    const decision = decide(limit, windowMs, now, slot.current, slot.previous);
    if (decision.allowed) slot.current++;
    return decision;
  }

  refund(key: string, _windowMs: number, window: number): Promise<void> {
    const slot = this.#slots.get(key);
    if (slot?.window === window && slot.current > 0) slot.current--;
    else if (slot?.window === window + 1 && slot.previous > 0) slot.previous--;
    return Promise.resolve();
  }

  #sweep(now: number): void {
    this.#lastSweep = now;
    for (const [key, slot] of this.#slots) {
      if (Math.floor(now / slot.windowMs) - slot.window >= 2) this.#slots.delete(key);
    }
  }

  get size(): number {
    return this.#slots.size;
  }

  close(): Promise<void> {
    this.#slots.clear();
    return Promise.resolve();
  }
}
