import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import type { ToolContext } from '../tool.ts';

/**
 * The server-side request forgery guard shared by the network tools: resolve a host, check every
 * address it resolves to, and hand back one checked address for the caller to connect to (so a DNS
 * answer that changes between the check and the connection cannot switch the target).
 */

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = async (hostname) =>
  (await dnsLookup(hostname, { all: true, verbatim: true })).map((a) => ({
    address: a.address,
    family: a.family === 6 ? 6 : 4,
  }));

function blockList(entries: [string, number, 'ipv4' | 'ipv6'][]): BlockList {
  const list = new BlockList();
  for (const [net, prefix, type] of entries) list.addSubnet(net, prefix, type);
  return list;
}

/** Never reachable, whatever the tenant allows: cloud metadata, "this host", broadcast and multicast. */
const ALWAYS_BLOCKED: [string, BlockList][] = [
  [
    'a cloud metadata address',
    blockList([
      ['169.254.169.254', 32, 'ipv4'],
      ['fd00:ec2::254', 128, 'ipv6'],
    ]),
  ],
  [
    'an unspecified address',
    blockList([
      ['0.0.0.0', 8, 'ipv4'],
      ['::', 128, 'ipv6'],
    ]),
  ],
  [
    'a multicast or broadcast address',
    blockList([
      ['224.0.0.0', 4, 'ipv4'],
      ['255.255.255.255', 32, 'ipv4'],
      ['ff00::', 8, 'ipv6'],
    ]),
  ],
];

/** Reachable only when the tenant (or the connection) allows private networks. */
const PRIVATE: [string, BlockList][] = [
  [
    'a loopback address',
    blockList([
      ['127.0.0.0', 8, 'ipv4'],
      ['::1', 128, 'ipv6'],
    ]),
  ],
  [
    'a private address',
    blockList([
      ['10.0.0.0', 8, 'ipv4'],
      ['172.16.0.0', 12, 'ipv4'],
      ['192.168.0.0', 16, 'ipv4'],
      ['100.64.0.0', 10, 'ipv4'],
      ['fc00::', 7, 'ipv6'],
    ]),
  ],
  [
    'a link-local address',
    blockList([
      ['169.254.0.0', 16, 'ipv4'],
      ['fe80::', 10, 'ipv6'],
      ['fec0::', 10, 'ipv6'],
    ]),
  ],
  [
    'a reserved address',
    blockList([
      ['192.0.0.0', 24, 'ipv4'],
      ['192.0.2.0', 24, 'ipv4'],
      ['192.88.99.0', 24, 'ipv4'],
      ['198.18.0.0', 15, 'ipv4'],
      ['198.51.100.0', 24, 'ipv4'],
      ['203.0.113.0', 24, 'ipv4'],
      ['240.0.0.0', 4, 'ipv4'],
      ['::', 96, 'ipv6'], // IPv4-compatible (deprecated)
      ['100::', 64, 'ipv6'],
      ['2001::', 32, 'ipv6'], // Teredo
      ['2001:db8::', 32, 'ipv6'],
    ]),
  ],
];

/** The 16 bytes of an IPv6 address (already known to be valid). */
function ipv6Bytes(address: string): Buffer {
  let text = address;
  const out = Buffer.alloc(16);
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let tail: number[] = [];
  if (dotted) {
    tail = dotted[1]!.split('.').map(Number);
    text = text.slice(0, -dotted[1]!.length) + '0:0';
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const groups = (s: string) => (s ? s.split(':').map((g) => parseInt(g || '0', 16)) : []);
  const left = groups(head);
  const right = rest === undefined ? [] : groups(rest);
  const all = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  all.forEach((g, i) => out.writeUInt16BE(g & 0xffff, i * 2));
  if (tail.length) tail.forEach((b, i) => (out[12 + i] = b));
  return out;
}

/** The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4), if any. */
function embeddedIpv4(address: string): string | undefined {
  const b = ipv6Bytes(address);
  const v4 = (o: number) => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
  const zeros = (from: number, to: number) => b.subarray(from, to).every((x) => x === 0);
  if (zeros(0, 10) && b[10] === 0xff && b[11] === 0xff) return v4(12); // ::ffff:a.b.c.d
  if (b.readUInt32BE(0) === 0x0064ff9b && zeros(4, 12)) return v4(12); // 64:ff9b::/96
  if (b.readUInt16BE(0) === 0x2002) return v4(2); // 6to4
  return undefined;
}

/**
 * Why an address may not be reached (undefined when it may). `allowPrivate` opens loopback, private,
 * link-local and reserved ranges; metadata, unspecified and multicast addresses stay closed.
 */
export function blockedReason(address: string, allowPrivate: boolean): string | undefined {
  const bare = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const family = isIP(bare);
  if (!family) return 'not an IP address';
  if (family === 6) {
    const inner = embeddedIpv4(bare);
    if (inner !== undefined) {
      const reason = blockedReason(inner, allowPrivate);
      return reason ? `${reason} (inside an IPv6 address)` : undefined;
    }
  }
  const type = family === 6 ? 'ipv6' : 'ipv4';
  for (const [reason, list] of ALWAYS_BLOCKED) if (list.check(bare, type)) return reason;
  if (allowPrivate) return undefined;
  for (const [reason, list] of PRIVATE) if (list.check(bare, type)) return reason;
  return undefined;
}

/** A host the tenant may not reach. The message names the host, never anything secret. */
export class AddressBlockedError extends Error {
  readonly host: string;
  constructor(host: string, reason: string) {
    super(
      `${host} resolves to ${reason}; private networks are blocked unless the tenant setting network.allowPrivate is true`,
    );
    this.name = 'AddressBlockedError';
    this.host = host;
  }
}

/** The host did not resolve (the code tells whether trying again may help). */
export class HostUnresolvedError extends Error {
  readonly temporary: boolean;
  constructor(host: string, temporary: boolean) {
    super(`${host} could not be resolved`);
    this.name = 'HostUnresolvedError';
    this.temporary = temporary;
  }
}

export interface GuardOptions {
  allowPrivate: boolean;
  resolve?: Resolver | undefined;
  /** Addresses to treat as public (tests only: lets a loopback server stand in for a public one). */
  treatAsPublic?: ReadonlySet<string> | undefined;
}

/** Resolve `host` and check every address; the first one is the address to connect to. */
export async function resolveChecked(host: string, opts: GuardOptions): Promise<ResolvedAddress> {
  const bare = host.replace(/^\[|\]$/g, '');
  let addresses: ResolvedAddress[];
  if (isIP(bare)) {
    addresses = [{ address: bare, family: isIP(bare) === 6 ? 6 : 4 }];
  } else {
    try {
      addresses = await (opts.resolve ?? systemResolver)(bare);
    } catch (e) {
      const code = (e as { code?: string }).code;
      throw new HostUnresolvedError(bare, code === 'EAI_AGAIN' || code === 'ETIMEOUT');
    }
    if (!addresses.length) throw new HostUnresolvedError(bare, false);
  }
  for (const a of addresses) {
    if (opts.treatAsPublic?.has(a.address)) continue;
    const reason = blockedReason(a.address, opts.allowPrivate);
    if (reason) throw new AddressBlockedError(bare, reason);
  }
  return addresses[0]!;
}

/** The tenant setting `network.allowPrivate` (false unless it is exactly true). */
export async function tenantAllowsPrivateNetwork(ctx: ToolContext): Promise<boolean> {
  const [row] = await ctx.withTenant(
    (tx) =>
      tx<{ allow: boolean | null }[]>`
        select (settings #> '{network,allowPrivate}') = 'true'::jsonb as allow from tenants where id = ${ctx.tenantId}`,
  );
  return row?.allow === true;
}
