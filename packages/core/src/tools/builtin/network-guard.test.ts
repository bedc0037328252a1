import { describe, expect, it } from 'vitest';
import { AddressBlockedError, blockedReason, HostUnresolvedError, resolveChecked } from './network-guard.ts';

const BLOCKED = [
  '127.0.0.1',
  '127.1.2.3',
  '10.0.0.1',
  '172.16.5.4',
  '172.31.255.255',
  '192.168.1.1',
  '100.64.0.1',
  '169.254.1.1',
  '169.254.169.254',
  '0.0.0.0',
  '0.1.2.3',
  '224.0.0.1',
  '255.255.255.255',
  '198.18.0.1',
  '::1',
  '::',
  'fe80::1',
  'fe80::1%eth0',
  'fc00::1',
  'fd12:3456::1',
  'fd00:ec2::254',
  '::ffff:127.0.0.1',
  '::ffff:7f00:1',
  '::ffff:169.254.169.254',
  '::ffff:10.0.0.1',
  '64:ff9b::a00:1',
  '2002:7f00:1::1',
  '::127.0.0.1',
  'ff02::1',
  '[::1]',
];
const PUBLIC = [
  '93.184.216.34',
  '8.8.8.8',
  '1.1.1.1',
  '172.32.0.1',
  '2606:4700:4700::1111',
  '::ffff:8.8.8.8',
  '2002:808:808::1',
];
const ALWAYS = ['169.254.169.254', 'fd00:ec2::254', '::ffff:169.254.169.254', '0.0.0.0', '::', '224.0.0.1'];

describe('blockedReason', () => {
  it('blocks private, loopback, link-local, metadata, unspecified and mapped addresses', () => {
    for (const a of BLOCKED) expect(blockedReason(a, false), a).toBeTruthy();
  });
  it('lets public addresses through', () => {
    for (const a of PUBLIC) expect(blockedReason(a, false), a).toBeUndefined();
  });
  it('with private networks allowed, still blocks metadata, unspecified and multicast', () => {
    for (const a of ALWAYS) expect(blockedReason(a, true), a).toBeTruthy();
    for (const a of ['127.0.0.1', '10.1.1.1', '::1', 'fd12::1', '::ffff:192.168.0.1', '169.254.3.3'])
      expect(blockedReason(a, true), a).toBeUndefined();
  });
  it('names the kind of address', () => {
    expect(blockedReason('127.0.0.1', false)).toBe('a loopback address');
    expect(blockedReason('169.254.169.254', false)).toBe('a cloud metadata address');
    expect(blockedReason('::ffff:10.0.0.1', false)).toContain('inside an IPv6 address');
  });
});

describe('resolveChecked', () => {
  const resolver = (map: Record<string, string[]>) => async (host: string) =>
    (map[host] ?? []).map((address) => ({ address, family: (address.includes(':') ? 6 : 4) as 4 | 6 }));

  it('rejects a host when any address it resolves to is blocked', async () => {
    const resolve = resolver({ 'mixed.test': ['93.184.216.34', '10.0.0.7'], 'good.test': ['93.184.216.34'] });
    await expect(resolveChecked('mixed.test', { allowPrivate: false, resolve })).rejects.toBeInstanceOf(
      AddressBlockedError,
    );
    await expect(resolveChecked('good.test', { allowPrivate: false, resolve })).resolves.toEqual({
      address: '93.184.216.34',
      family: 4,
    });
    await expect(resolveChecked('nothing.test', { allowPrivate: false, resolve })).rejects.toBeInstanceOf(
      HostUnresolvedError,
    );
  });
  it('checks IP literals without resolving them, and real names through the system resolver', async () => {
    const resolve = async () => {
      throw new Error('must not be called');
    };
    await expect(resolveChecked('[::1]', { allowPrivate: false, resolve })).rejects.toBeInstanceOf(
      AddressBlockedError,
    );
    await expect(resolveChecked('127.0.0.1', { allowPrivate: true, resolve })).resolves.toMatchObject({
      address: '127.0.0.1',
    });
    await expect(resolveChecked('localhost', { allowPrivate: false })).rejects.toBeInstanceOf(
      AddressBlockedError,
    );
  });
});
