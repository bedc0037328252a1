import { describe, expect, it } from 'vitest';
import { backoffMs } from './run-step.ts';

const low = () => 0;
const high = () => 0.999999;

describe('backoffMs', () => {
  it('waits between half and all of 1 s on the first retry', () => {
    expect(backoffMs(1, low)).toBe(500);
    expect(backoffMs(1, high)).toBe(1000);
    expect(backoffMs(1, () => 0.5)).toBe(750);
  });

  it('doubles the window with each attempt', () => {
    for (let attempt = 1; attempt <= 8; attempt++) {
      const ceiling = 1000 * 2 ** (attempt - 1);
      expect(backoffMs(attempt, low)).toBe(ceiling / 2);
      expect(backoffMs(attempt, high)).toBe(Math.round(ceiling / 2 + 0.999999 * (ceiling / 2)));
      expect(backoffMs(attempt + 1, low)).toBe(2 * backoffMs(attempt, low));
    }
  });

  it('is capped at 5 minutes, however many attempts', () => {
    for (const attempt of [10, 20, 50, 1000]) {
      expect(backoffMs(attempt, low)).toBe(150_000);
      expect(backoffMs(attempt, high)).toBeLessThanOrEqual(300_000);
      expect(backoffMs(attempt, high)).toBeGreaterThan(299_000);
    }
  });

  it('treats attempt 0 or less like the first', () => {
    expect(backoffMs(0, low)).toBe(500);
    expect(backoffMs(-3, high)).toBe(1000);
  });

  it('with real jitter stays inside the window and spreads out', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 500; i++) {
      const ms = backoffMs(4);
      expect(ms).toBeGreaterThanOrEqual(4000);
      expect(ms).toBeLessThanOrEqual(8000);
      seen.add(ms);
    }
    expect(seen.size).toBeGreaterThan(50);
  });
});
