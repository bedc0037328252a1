import { BlockList, isIP } from 'node:net';

export const MAX_ALLOW_LIST_ENTRIES = 200;

const MAPPED_V4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/** An address as compared: IPv4-mapped IPv6 (`::ffff:10.1.2.3`) becomes plain IPv4. */
export function normalizeIp(ip: string): string {
  const mapped = MAPPED_V4.exec(ip);
  return mapped ? mapped[1]! : ip;
}

/**
 * The unit an address is rate-limited as: an IPv4 address, or the /64 of an IPv6 address (one
 * subscriber usually holds a whole /64, so counting single IPv6 addresses would let it rotate freely).
 */
export function rateLimitBucket(ip: string): string {
  const address = normalizeIp(ip);
  if (isIP(address) !== 6 || address.includes('.')) return address;
  const [head = '', tail] = address.toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups =
    tail === undefined
      ? left
      : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

interface Entry {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** Parse one entry (`10.0.0.0/8`, `2001:db8::/32`, `::ffff:10.0.0.0/104`, a bare address); a problem or the entry. */
export function parseCidr(text: string): Entry | string {
  const trimmed = text.trim();
  const slash = trimmed.indexOf('/');
  const rawAddress = slash === -1 ? trimmed : trimmed.slice(0, slash);
  const rawPrefix = slash === -1 ? undefined : trimmed.slice(slash + 1);
  const version = isIP(rawAddress);
  if (version === 0) return `"${text.slice(0, 60)}" is not an IP address or CIDR range`;
  const max = version === 4 ? 32 : 128;
  let prefix = max;
  if (rawPrefix !== undefined) {
    if (!/^\d{1,3}$/.test(rawPrefix) || Number(rawPrefix) > max)
      return `"${text.slice(0, 60)}" has a prefix length outside 0-${max}`;
    prefix = Number(rawPrefix);
  }
  const mapped = MAPPED_V4.exec(rawAddress);
  if (version === 6 && mapped && prefix >= 96) {
    return { address: mapped[1]!, prefix: prefix - 96, family: 'ipv4' };
  }
  return { address: rawAddress, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** Problems with a list (empty when every entry parses). */
export function allowListProblems(entries: readonly string[]): string[] {
  const problems: string[] = [];
  if (entries.length > MAX_ALLOW_LIST_ENTRIES) problems.push(`at most ${MAX_ALLOW_LIST_ENTRIES} entries`);
  entries.forEach((e, i) => {
    const parsed = parseCidr(e);
    if (typeof parsed === 'string') problems.push(`body/entries/${i}: ${parsed}`);
  });
  return problems;
}

/** The canonical text of an entry (`10.0.0.0/8`; a bare address gets /32 or /128). */
export function canonicalCidr(text: string): string {
  const e = parseCidr(text);
  if (typeof e === 'string') throw new Error(e);
  return `${e.address}/${e.prefix}`;
}

const DECISION_CACHE_MAX = 1024;

/**
 * A tenant's allow-list, compiled once. An empty list allows every address. Decisions are cached
 * per address (bounded), so the check on each request is a map lookup.
 */
export class IpAllowList {
  readonly entries: readonly string[];
  readonly #list = new BlockList();
  readonly #decisions = new Map<string, boolean>();

  constructor(entries: readonly string[]) {
    this.entries = entries;
    for (const text of entries) {
      const e = parseCidr(text);
      if (typeof e === 'string') continue; // validated on write; an unreadable entry allows nothing
      this.#list.addSubnet(e.address, e.prefix, e.family);
    }
  }

  get empty(): boolean {
    return this.entries.length === 0;
  }

  allows(ip: string): boolean {
    if (this.entries.length === 0) return true;
    const cached = this.#decisions.get(ip);
    if (cached !== undefined) return cached;
    const address = normalizeIp(ip);
    const version = isIP(address);
    const ok = version !== 0 && this.#list.check(address, version === 4 ? 'ipv4' : 'ipv6');
    if (this.#decisions.size >= DECISION_CACHE_MAX) this.#decisions.clear();
    this.#decisions.set(ip, ok);
    return ok;
  }
}
