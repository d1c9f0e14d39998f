// A copy of the main routing table, for deciding in-process which stale
// addresses need a host route. Asking the kernel (`ip route get`) costs a
// process and a netlink round trip per address; at 100k mappings that is
// seconds. With only the default routing rules in force, the kernel's answer
// is the longest matching prefix of the main table, which this computes.
import { Address4, Address6 } from 'ip-address';
import type { IpFamily } from './address.js';

export interface RouteEntry {
  family: IpFamily;
  /** "default", "fdaa::/16", "198.51.100.0/24" or a host address. */
  dst: string;
  dev?: string;
  gateway?: string;
  /** unicast (default), unreachable, blackhole, prohibit, ... */
  type?: string;
  metric?: number;
}

export interface Via {
  dev: string;
  gateway?: string;
}

export class RouteTable {
  /** Per family: prefix length -> network value -> best route. */
  private readonly byLength = new Map<IpFamily, Map<number, Map<bigint, RouteEntry>>>();
  private readonly lengths = new Map<IpFamily, number[]>();

  constructor(entries: readonly RouteEntry[]) {
    for (const e of entries) {
      const bits = e.family === 6 ? 128 : 32;
      const [addr, len] = e.dst === 'default' ? [e.family === 6 ? '::' : '0.0.0.0', 0] : splitPrefix(e.dst, bits);
      const key = toBig(e.family, addr) >> BigInt(bits - len);
      const fam = this.byLength.get(e.family) ?? new Map<number, Map<bigint, RouteEntry>>();
      this.byLength.set(e.family, fam);
      const at = fam.get(len) ?? new Map<bigint, RouteEntry>();
      fam.set(len, at);
      const prev = at.get(key);
      if (!prev || (e.metric ?? 0) < (prev.metric ?? 0)) at.set(key, e);
    }
    for (const [family, fam] of this.byLength) this.lengths.set(family, [...fam.keys()].sort((a, b) => b - a));
  }

  /** How the kernel would send a packet to address; null when it could not. */
  lookup(family: IpFamily, address: string): Via | null {
    const bits = family === 6 ? 128 : 32;
    const value = toBig(family, address);
    const fam = this.byLength.get(family);
    for (const len of this.lengths.get(family) ?? []) {
      const e = fam!.get(len)!.get(value >> BigInt(bits - len));
      if (!e) continue;
      if ((e.type && e.type !== 'unicast') || !e.dev) return null;
      return e.gateway ? { dev: e.dev, gateway: e.gateway } : { dev: e.dev };
    }
    return null;
  }
}

export function sameVia(a: Via | null, b: Via | null): boolean {
  return !!a && !!b && a.dev === b.dev && (a.gateway ?? '') === (b.gateway ?? '');
}

function splitPrefix(dst: string, bits: number): [string, number] {
  const [addr, len] = dst.split('/');
  return [addr!, len === undefined ? bits : Number(len)];
}

function toBig(family: IpFamily, address: string): bigint {
  return family === 6 ? new Address6(address).bigInt() : new Address4(address).bigInt();
}
