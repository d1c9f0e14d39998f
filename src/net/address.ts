// Canonical textual form of an IP address, so that the same address written
// differently (upper case, leading zeros, expanded) compares equal everywhere:
// in the mapping file, in the kernel listing and on the command line.
import { Address4, Address6 } from 'ip-address';

export type IpFamily = 4 | 6;

export interface IpAddress {
  family: IpFamily;
  /** RFC 5952 form for IPv6, dotted quad for IPv4. */
  text: string;
  /** The value as 16-bit groups, when the parser had them at hand (see addressGroups). */
  groups?: number[];
}

export class AddressError extends Error {}

/**
 * Parses one host address. Prefixes, zone ids and addresses that can never be
 * a DNAT target (unspecified, loopback, multicast, link-local, IPv4-mapped)
 * are refused with the reason, because silently accepting them would install
 * a mapping that never matches or that hijacks local traffic.
 */
export function parseAddress(input: string): IpAddress {
  // Plain hex-and-colons text (nearly every address in a mapping file) takes
  // a fast path that is several times quicker than ip-address and gives the
  // same RFC 5952 text (a property test holds the two together); it needs
  // none of the checks below. Anything else, e.g. an embedded IPv4 part,
  // goes the long way.
  const groups = typeof input === 'string' ? hexGroups(input) : null;
  if (groups) return check6(groups, format6(groups));
  if (typeof input !== 'string' || input.length === 0) throw new AddressError('empty address');
  if (input.length > 64) throw new AddressError('too long to be an address');
  if (/\s/.test(input)) throw new AddressError('contains white space');
  if (input.includes('/')) throw new AddressError('prefixes are not supported; write a single address');
  if (input.includes(':')) return parse6(input);
  return parse4(input);
}

function parse6(input: string): IpAddress {
  if (input.includes('%')) throw new AddressError('zone ids are not allowed');
  let a: Address6;
  try {
    a = new Address6(input);
  } catch {
    // The library's message quotes the input: not passed on.
    throw new AddressError('not a valid IPv6 address');
  }
  const big = a.bigInt();
  const fromBig = Array.from({ length: 8 }, (_, i) => Number((big >> BigInt(112 - 16 * i)) & 0xffffn));
  return check6(fromBig, a.correctForm());
}

/** The policy checks, on the address's value (not its spelling). */
function check6(g: number[], text: string): IpAddress {
  let lead = 0; // leading zero groups
  while (lead < 8 && g[lead] === 0) lead++;
  if (lead === 5 && g[5] === 0xffff) throw new AddressError('IPv4-mapped IPv6 address; write the IPv4 address instead');
  if (lead === 8) throw new AddressError('unspecified address');
  if (lead === 7 && g[7] === 1) throw new AddressError('loopback address');
  if (g[0]! >= 0xff00) throw new AddressError('multicast address');
  if ((g[0]! & 0xffc0) === 0xfe80) throw new AddressError('link-local address');
  return { family: 6, text, groups: g };
}

/**
 * The eight 16-bit groups of plain IPv6 text ("fdaa::1", upper case, leading
 * zeros), or null. One pass over the character codes: this runs for every
 * address of every push (200k at 100k mappings), where a regex, split and
 * array spread per address cost several times more.
 */
function hexGroups(input: string): number[] | null {
  const n = input.length;
  if (n < 2 || n > 39) return null;
  const out: number[] = [];
  let gap = -1; // index in out where "::" stands
  let value = 0;
  let digits = 0;
  for (let i = 0; i < n; i++) {
    const c = input.charCodeAt(i);
    if (c === 58 /* : */) {
      const afterGroup = digits > 0;
      if (afterGroup) {
        out.push(value);
        value = 0;
        digits = 0;
      }
      if (i + 1 < n && input.charCodeAt(i + 1) === 58) {
        if (gap >= 0) return null; // "::" only once
        gap = out.length;
        i++;
        continue;
      }
      // A single ":" only separates two groups.
      if (!afterGroup || i === n - 1) return null;
      continue;
    }
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
    if (d < 0 || ++digits > 4) return null;
    value = value * 16 + d;
  }
  if (digits > 0) out.push(value);
  if (gap < 0) return out.length === 8 ? out : null;
  const missing = 8 - out.length;
  if (missing < 1) return null;
  out.splice(gap, 0, ...new Array<number>(missing).fill(0));
  return out;
}

const HEX_DIGITS = [48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102];

/**
 * RFC 5952: lower case, no leading zeros, the longest run of two or more zero
 * groups (the first, on a tie) as "::". Built as character codes and turned
 * into one string, because Number#toString(16) and piecewise concatenation
 * dominated the cost of a large file.
 */
function format6(g: readonly number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const codes: number[] = [];
  for (let i = 0; i < 8; i++) {
    if (i === best) {
      codes.push(58, 58);
      i += bestLen - 1;
      continue;
    }
    if (codes.length && codes[codes.length - 1] !== 58) codes.push(58);
    const x = g[i]!;
    if (x >= 0x1000) codes.push(HEX_DIGITS[x >> 12]!);
    if (x >= 0x100) codes.push(HEX_DIGITS[(x >> 8) & 15]!);
    if (x >= 0x10) codes.push(HEX_DIGITS[(x >> 4) & 15]!);
    codes.push(HEX_DIGITS[x & 15]!);
  }
  return String.fromCharCode(...codes);
}

function parse4(input: string): IpAddress {
  let a: Address4;
  try {
    a = new Address4(input);
  } catch {
    if (!/^[\d.]+$/.test(input)) throw new AddressError('not a valid IP address');
    if (/(^|\.)0\d/.test(input)) throw new AddressError('not a valid IPv4 address: leading zeros (some parsers read them as octal)');
    throw new AddressError('not a valid IPv4 address');
  }
  const text = a.correctForm();
  const first = Number(text.split('.')[0]);
  if (text === '0.0.0.0' || first === 0) throw new AddressError('unspecified address');
  if (first === 127) throw new AddressError('loopback address');
  if (first >= 224) throw new AddressError('multicast or reserved address');
  if (text.startsWith('169.254.')) throw new AddressError('link-local address');
  return { family: 4, text };
}

/**
 * Normal form of any IP address text, without policy checks. Used on what the
 * kernel lists, whose printer may differ from RFC 5952 in corner cases.
 */
export function normalizeIp(text: string): string {
  if (!text.includes(':')) return new Address4(text).correctForm();
  const groups = hexGroups(text);
  return groups ? format6(groups) : new Address6(text).correctForm();
}

/** The canonical text of an address given as its 4 or 16 bytes in network order (as netlink carries it). */
export function addressFromBytes(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length !== 16) throw new AddressError(`an address is 4 or 16 bytes, not ${b.length}`);
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i]! << 8) | b[i + 1]!);
  return format6(g);
}

/**
 * The address the kernel puts on the wire: an IPv4-mapped IPv6 address
 * ("::ffff:198.51.100.10", canonical "::ffff:c633:640a") used on a dual-stack
 * socket goes out as IPv4, so it is looked up as the IPv4 address.
 */
export function unmapIpv4(canonical: string): string {
  const m = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (!m) return canonical;
  const hi = parseInt(m[1]!, 16);
  const lo = parseInt(m[2]!, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/**
 * An address as 16-bit groups: 8 for IPv6, 2 for IPv4. Per-address checks on
 * a whole file (allowed targets, route lookups) use these rather than
 * ip-address objects and BigInts, which cost microseconds per address.
 */
export function addressGroups(family: IpFamily, text: string): number[] {
  if (family === 6) return hexGroups(text) ?? bigToGroups(new Address6(text).bigInt(), 8);
  const parts = text.split('.');
  if (parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p))) {
    const [a, b, c, d] = parts.map(Number) as [number, number, number, number];
    if (a < 256 && b < 256 && c < 256 && d < 256) return [a * 256 + b, c * 256 + d];
  }
  return bigToGroups(new Address4(text).bigInt(), 2);
}

function bigToGroups(value: bigint, count: number): number[] {
  return Array.from({ length: count }, (_, i) => Number((value >> BigInt(16 * (count - 1 - i))) & 0xffffn));
}

/** The address as an integer (128 or 32 bits). */
export function addressToBig(family: IpFamily, text: string): bigint {
  if (family === 4) return new Address4(text).bigInt();
  const g = hexGroups(text);
  return g ? g.reduce((acc, x) => (acc << 16n) | BigInt(x), 0n) : new Address6(text).bigInt();
}

/** Canonical text of an integer address. */
export function bigToAddress(family: IpFamily, value: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 255n)).join('.');
  return format6(Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn)));
}

export function hostMask(family: IpFamily, length: number): bigint {
  return (1n << BigInt((family === 6 ? 128 : 32) - length)) - 1n;
}
