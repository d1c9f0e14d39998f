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
  if (a.is4()) throw new AddressError('IPv4-mapped IPv6 address; write the IPv4 address instead');
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
