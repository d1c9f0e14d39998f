// Canonical textual form of an IP address, so that the same address written
// differently (upper case, leading zeros, expanded) compares equal everywhere:
// in the mapping file, in the kernel listing and on the command line.
import { Address4, Address6 } from 'ip-address';

export type IpFamily = 4 | 6;

export interface IpAddress {
  family: IpFamily;
  /** RFC 5952 form for IPv6, dotted quad for IPv4. */
  text: string;
}

export class AddressError extends Error {}

/**
 * Parses one host address. Prefixes, zone ids and addresses that can never be
 * a DNAT target (unspecified, loopback, multicast, link-local, IPv4-mapped)
 * are refused with the reason, because silently accepting them would install
 * a mapping that never matches or that hijacks local traffic.
 */
export function parseAddress(input: string): IpAddress {
  if (typeof input !== 'string' || input.length === 0) throw new AddressError('empty address');
  if (input.length > 64) throw new AddressError('too long to be an address');
  if (/\s/.test(input)) throw new AddressError('contains white space');
  if (input.includes('/')) throw new AddressError('prefixes are not supported; write a single address');
  if (input.includes(':')) return parse6(input);
  return parse4(input);
}

function parse6(input: string): IpAddress {
  if (input.includes('%')) throw new AddressError('zone ids are not allowed');
  // Plain hex-and-colons text (nearly every address in a mapping file) takes
  // a fast path that is several times quicker than ip-address and gives the
  // same RFC 5952 text (a property test holds the two together); anything
  // else, e.g. with an embedded IPv4 part, goes to ip-address.
  const groups = hexGroups(input);
  if (groups) return check6(groups, format6(groups));
  let a: Address6;
  try {
    a = new Address6(input);
  } catch (e) {
    throw new AddressError(`not a valid IPv6 address (${(e as Error).message})`);
  }
  const big = a.bigInt();
  const fromBig = Array.from({ length: 8 }, (_, i) => Number((big >> BigInt(112 - 16 * i)) & 0xffffn));
  return check6(fromBig, a.correctForm());
}

/** The policy checks, on the address's value (not its spelling). */
function check6(g: number[], text: string): IpAddress {
  const zero = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (zero(0, 5) && g[5] === 0xffff) throw new AddressError('IPv4-mapped IPv6 address; write the IPv4 address instead');
  if (zero(0, 8)) throw new AddressError('unspecified address');
  if (zero(0, 7) && g[7] === 1) throw new AddressError('loopback address');
  if (g[0]! >= 0xff00) throw new AddressError('multicast address');
  if ((g[0]! & 0xffc0) === 0xfe80) throw new AddressError('link-local address');
  return { family: 6, text };
}

/** The eight 16-bit groups of plain IPv6 text ("fdaa::1", upper case, leading zeros), or null. */
function hexGroups(input: string): number[] | null {
  if (!/^[0-9A-Fa-f:]{2,39}$/.test(input)) return null;
  const halves = input.split('::');
  if (halves.length > 2) return null;
  const part = (h: string) => (h === '' ? [] : h.split(':'));
  const head = part(halves[0]!);
  const tail = halves.length === 2 ? part(halves[1]!) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const out: number[] = [];
  for (const h of [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail]) {
    if (h.length < 1 || h.length > 4) return null;
    out.push(parseInt(h, 16));
  }
  return out;
}

/** RFC 5952: lower case, no leading zeros, the longest run of two or more zero groups (the first, on a tie) as "::". */
function format6(g: number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
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
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

function parse4(input: string): IpAddress {
  let a: Address4;
  try {
    a = new Address4(input);
  } catch (e) {
    if (!/^[\d.]+$/.test(input)) throw new AddressError('not a valid IP address');
    throw new AddressError(`not a valid IPv4 address (${(e as Error).message})`);
  }
  const text = a.correctForm();
  const first = Number(text.split('.')[0]);
  if (text === '0.0.0.0' || first === 0) throw new AddressError('unspecified address');
  if (first === 127) throw new AddressError('loopback address');
  if (first >= 224) throw new AddressError('multicast or reserved address');
  if (text.startsWith('169.254.')) throw new AddressError('link-local address');
  return { family: 4, text };
}

/** Canonical text, or null when the input is not a usable address. */
export function canonicalOrNull(input: string): string | null {
  try {
    return parseAddress(input).text;
  } catch {
    return null;
  }
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

export interface IpPrefix {
  family: IpFamily;
  /** Canonical "address/length". */
  text: string;
  length: number;
  /** The network address as a bigint, for containment checks. */
  network: bigint;
}

/** Parses "fc00::/7" or "198.51.100.0/24"; host bits must be zero. */
export function parsePrefix(input: string): IpPrefix {
  if (typeof input !== 'string' || !/^[^/\s]+\/\d{1,3}$/.test(input)) throw new AddressError(`${JSON.stringify(input)} is not a prefix (address/length)`);
  const [addrText, lenText] = input.split('/') as [string, string];
  const family: IpFamily = addrText.includes(':') ? 6 : 4;
  const bits = family === 6 ? 128 : 32;
  const length = Number(lenText);
  if (length > bits) throw new AddressError(`${input}: length ${length} is over ${bits}`);
  let value: bigint;
  let text: string;
  try {
    if (family === 6) {
      const a = new Address6(addrText);
      if (a.zone || a.subnetMask !== 128) throw new Error('unexpected zone or prefix');
      value = a.bigInt();
      text = a.correctForm();
    } else {
      const a = new Address4(addrText);
      value = a.bigInt();
      text = a.correctForm();
    }
  } catch (e) {
    throw new AddressError(`${input}: not a valid IPv${family} prefix (${(e as Error).message})`);
  }
  const hostMask = (1n << BigInt(bits - length)) - 1n;
  if (value & hostMask) throw new AddressError(`${input}: host bits are set`);
  return { family, text: `${text}/${length}`, length, network: value };
}

export function prefixContains(prefix: IpPrefix, addr: IpAddress): boolean {
  if (prefix.family !== addr.family) return false;
  const bits = addr.family === 6 ? 128 : 32;
  const value = addr.family === 6 ? new Address6(addr.text).bigInt() : new Address4(addr.text).bigInt();
  return value >> BigInt(bits - prefix.length) === prefix.network >> BigInt(bits - prefix.length);
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

/** Whether two integer addresses share their first `length` bits (one lies in the other's /length). */
export function samePrefix(family: IpFamily, length: number, a: bigint, b: bigint): boolean {
  const shift = BigInt((family === 6 ? 128 : 32) - length);
  return a >> shift === b >> shift;
}

/** The address with the network bits of `to` and the host bits of `addr`: what a prefix mapping makes of it. */
export function withPrefix(family: IpFamily, length: number, to: bigint, addr: bigint): bigint {
  return to | (addr & hostMask(family, length));
}
