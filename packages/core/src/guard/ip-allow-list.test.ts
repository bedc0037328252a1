import { describe, expect, it } from 'vitest';
import {
  allowListProblems,
  canonicalCidr,
  IpAllowList,
  normalizeIp,
  rateLimitBucket,
} from './ip-allow-list.ts';

describe('IP allow-list', () => {
  it('matches IPv4, IPv6 and IPv4-mapped IPv6 addresses against CIDR ranges', () => {
    const list = new IpAllowList(['192.0.2.0/24', '2001:db8::/32', '::ffff:198.51.100.0/120', '203.0.113.9']);
    expect(list.allows('192.0.2.200')).toBe(true);
    expect(list.allows('::ffff:192.0.2.1')).toBe(true);
    expect(list.allows('192.0.3.1')).toBe(false);
    expect(list.allows('2001:db8:1::1')).toBe(true);
    expect(list.allows('2001:db9::1')).toBe(false);
    expect(list.allows('198.51.100.77')).toBe(true);
    expect(list.allows('203.0.113.9')).toBe(true);
    expect(list.allows('203.0.113.10')).toBe(false);
    expect(list.allows('not an address')).toBe(false);
    // Cached decisions give the same answers.
    expect(list.allows('192.0.3.1')).toBe(false);
    expect(list.allows('192.0.2.200')).toBe(true);
  });

  it('allows everything when empty', () => {
    expect(new IpAllowList([]).allows('8.8.8.8')).toBe(true);
  });

  it('validates and canonicalises entries', () => {
    expect(allowListProblems(['10.0.0.0/8', '::1', 'fe80::/10'])).toEqual([]);
    expect(allowListProblems(['10.0.0.0/33', 'x', '::/129', '1.2.3.4/-1'])).toHaveLength(4);
    expect(canonicalCidr('10.0.0.1')).toBe('10.0.0.1/32');
    expect(canonicalCidr('::ffff:10.0.0.0/104')).toBe('10.0.0.0/8');
    expect(normalizeIp('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(normalizeIp('::1')).toBe('::1');
  });

  it('rate-limits IPv6 clients by /64', () => {
    expect(rateLimitBucket('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(rateLimitBucket('2001:db8:1:2::99')).toBe('2001:db8:1:2::/64');
    expect(rateLimitBucket('2001:0db8::1')).toBe('2001:db8:0:0::/64');
    expect(rateLimitBucket('::1')).toBe('0:0:0:0::/64');
    expect(rateLimitBucket('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(rateLimitBucket('192.0.2.1')).toBe('192.0.2.1');
  });
});
