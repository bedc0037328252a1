import { describe, expect, it } from 'vitest';
import { isoWeek, nextBriefingAt, tenantTimeZone } from './briefing.ts';

describe('briefing calendar', () => {
  it('names ISO weeks, including across year boundaries and time zones', () => {
    expect(isoWeek(new Date('2026-11-22T12:00:00Z'), 'UTC')).toBe('2026-W47');
    expect(isoWeek(new Date('2026-11-23T00:30:00Z'), 'UTC')).toBe('2026-W48');
    expect(isoWeek(new Date('2021-01-03T12:00:00Z'), 'UTC')).toBe('2020-W53');
    expect(isoWeek(new Date('2024-12-30T12:00:00Z'), 'UTC')).toBe('2025-W01');
    // Sunday 23:30 UTC is already Monday in Berlin.
    expect(isoWeek(new Date('2026-11-22T23:30:00Z'), 'Europe/Berlin')).toBe('2026-W48');
  });

  it('schedules Monday 07:00 in the tenant time zone', () => {
    expect(nextBriefingAt(new Date('2026-11-22T12:00:00Z'), 'UTC').toISOString()).toBe(
      '2026-11-23T07:00:00.000Z',
    );
    expect(nextBriefingAt(new Date('2026-11-23T07:00:00Z'), 'UTC').toISOString()).toBe(
      '2026-11-30T07:00:00.000Z',
    );
    expect(nextBriefingAt(new Date('2026-11-22T12:00:00Z'), 'Europe/Berlin').toISOString()).toBe(
      '2026-11-23T06:00:00.000Z',
    );
    expect(nextBriefingAt(new Date('2026-07-01T00:00:00Z'), 'America/New_York').toISOString()).toBe(
      '2026-07-06T11:00:00.000Z',
    );
  });

  it('falls back to UTC for a missing or invalid time zone', () => {
    expect(tenantTimeZone({})).toBe('UTC');
    expect(tenantTimeZone({ timezone: 'Mars/Olympus' })).toBe('UTC');
    expect(tenantTimeZone({ timezone: 42 })).toBe('UTC');
    expect(tenantTimeZone({ timezone: 'Asia/Tokyo' })).toBe('Asia/Tokyo');
  });
});
