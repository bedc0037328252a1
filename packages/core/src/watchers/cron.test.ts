import { describe, expect, it } from 'vitest';
import { isTimeZone, nextRunAfter, scheduleProblem } from './cron.ts';

const next = (cron: string, tz: string, after: string, n = 1) => {
  const out: string[] = [];
  let at = new Date(after);
  for (let i = 0; i < n; i++) {
    at = nextRunAfter(cron, tz, at);
    out.push(at.toISOString());
  }
  return out;
};

describe('next run of a schedule', () => {
  it('is strictly after the given instant (a run at the slot itself moves to the next slot)', () => {
    expect(next('0 9 * * *', 'UTC', '2026-01-01T08:59:59.999Z')).toEqual(['2026-01-01T09:00:00.000Z']);
    expect(next('0 9 * * *', 'UTC', '2026-01-01T09:00:00.000Z')).toEqual(['2026-01-02T09:00:00.000Z']);
    expect(next('*/15 * * * *', 'UTC', '2026-01-01T10:07:00Z', 3)).toEqual([
      '2026-01-01T10:15:00.000Z',
      '2026-01-01T10:30:00.000Z',
      '2026-01-01T10:45:00.000Z',
    ]);
  });

  it('reads the wall clock of the time zone', () => {
    // 09:00 in New York is 14:00 UTC in winter and 13:00 UTC in summer.
    expect(next('0 9 * * *', 'America/New_York', '2026-01-15T00:00:00Z')).toEqual([
      '2026-01-15T14:00:00.000Z',
    ]);
    expect(next('0 9 * * *', 'America/New_York', '2026-07-15T00:00:00Z')).toEqual([
      '2026-07-15T13:00:00.000Z',
    ]);
    // Kolkata is UTC+05:30 all year; weekdays only (2026-01-03 is a Saturday).
    expect(next('0 9 * * 1-5', 'Asia/Kolkata', '2026-01-02T04:00:00Z', 2)).toEqual([
      '2026-01-05T03:30:00.000Z',
      '2026-01-06T03:30:00.000Z',
    ]);
    // Midnight in Berlin is the previous day in UTC.
    expect(next('@daily', 'Europe/Berlin', '2026-01-02T00:00:00Z')).toEqual(['2026-01-02T23:00:00.000Z']);
    // The same expression in UTC differs.
    expect(next('0 9 * * *', 'UTC', '2026-01-15T00:00:00Z')).toEqual(['2026-01-15T09:00:00.000Z']);
  });

  it('crosses daylight-saving changes: a skipped time runs after the gap, a repeated one runs once', () => {
    // 2026-03-08: New York skips 02:00-03:00; 02:30 runs at 03:30 EDT (07:30Z), then 02:30 EDT.
    expect(next('30 2 * * *', 'America/New_York', '2026-03-07T12:00:00Z', 2)).toEqual([
      '2026-03-08T07:30:00.000Z',
      '2026-03-09T06:30:00.000Z',
    ]);
    // 2026-11-01: 01:30 happens twice in New York; the schedule runs once that day.
    const runs = next('30 1 * * *', 'America/New_York', '2026-10-31T12:00:00Z', 2);
    expect(runs).toHaveLength(2);
    expect(runs[0]!.slice(0, 10)).toBe('2026-11-01');
    expect(runs[1]!.slice(0, 10)).toBe('2026-11-02');
    // Hourly across the same change: every UTC hour exactly once, no gap and no double.
    const hourly = next('0 * * * *', 'Europe/Berlin', '2026-03-29T00:30:00Z', 3);
    expect(hourly).toEqual([
      '2026-03-29T01:00:00.000Z',
      '2026-03-29T02:00:00.000Z',
      '2026-03-29T03:00:00.000Z',
    ]);
  });
});

describe('validation', () => {
  it('accepts five-field expressions and the common aliases in a known time zone', () => {
    expect(scheduleProblem('0 9 * * 1-5', 'Europe/Berlin')).toBeUndefined();
    expect(scheduleProblem('*/5 * * * *', 'UTC')).toBeUndefined();
    expect(scheduleProblem('@hourly', 'Asia/Tokyo')).toBeUndefined();
    expect(scheduleProblem('@WEEKLY', 'UTC')).toBeUndefined();
    expect(isTimeZone('America/Argentina/Buenos_Aires')).toBe(true);
  });

  it('refuses bad fields, seconds, @secondly, impossible dates and unknown zones with a reason', () => {
    expect(scheduleProblem('61 * * * *', 'UTC')).toMatch(/not valid/);
    expect(scheduleProblem('* * * * * *', 'UTC')).toMatch(/five fields/);
    expect(scheduleProblem('* * *', 'UTC')).toMatch(/five fields/);
    expect(scheduleProblem('@secondly', 'UTC')).toMatch(/alias/);
    expect(scheduleProblem('0 0 30 2 *', 'UTC')).toMatch(/not valid/);
    expect(scheduleProblem('0 9 * * *', 'Mars/Olympus_Mons')).toMatch(/time zone/);
    expect(scheduleProblem('0 9 * * *', '../../etc/passwd')).toMatch(/time zone/);
    expect(isTimeZone('')).toBe(false);
  });
});
