import { describe, expect, it } from 'vitest';
import { nextPassDelay } from './vault-syncer.ts';

describe('nextPassDelay', () => {
  it('waits the interval after a quick pass', () => {
    expect(nextPassDelay(1000, 4, 0)).toBe(1000);
    expect(nextPassDelay(1000, 4, 250)).toBe(1000);
  });

  it('waits busyFactor times a slow pass, so the mirror takes a bounded share of the CPU', () => {
    expect(nextPassDelay(1000, 4, 300)).toBe(1200);
    expect(nextPassDelay(1000, 4, 2500)).toBe(10_000);
    expect(nextPassDelay(100, 1, 150)).toBe(150);
  });
});
