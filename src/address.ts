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
  let a: Address6;
  try {
    a = new Address6(input);
  } catch (e) {
    throw new AddressError(`not a valid IPv6 address (${(e as Error).message})`);
  }
  // By value, not by spelling: ::ffff:a00:1 is as IPv4-mapped as ::ffff:10.0.0.1,
  // and fd00::10.0.0.1 is an ordinary IPv6 address.
  if (a.bigInt() >> 32n === 0xffffn) throw new AddressError('IPv4-mapped IPv6 address; write the IPv4 address instead');
  const text = a.correctForm();
  if (text === '::') throw new AddressError('unspecified address');
  if (a.isLoopback()) throw new AddressError('loopback address');
  if (a.isMulticast()) throw new AddressError('multicast address');
  if (a.isLinkLocal()) throw new AddressError('link-local address');
  return { family: 6, text };
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
  return text.includes(':') ? new Address6(text).correctForm() : new Address4(text).correctForm();
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
