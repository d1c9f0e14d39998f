// A copy of the main routing table, for deciding in-process which stale
// addresses need a host route. Asking the kernel (`ip route get`) costs a
// process and a netlink round trip per address; at 100k mappings that is
// seconds. With only the default routing rules in force, the kernel's answer
// is the longest matching prefix of the main table, which this computes.
import { addressGroups, type IpFamily } from '../net/address.js';

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
  /** Per family: prefix length -> network bits (as a key string) -> best route. */
  private readonly byLength = new Map<IpFamily, Map<number, Map<string, RouteEntry>>>();
  private readonly lengths = new Map<IpFamily, number[]>();

  constructor(entries: readonly RouteEntry[]) {
    for (const e of entries) {
      const bits = e.family === 6 ? 128 : 32;
      const [addr, len] = e.dst === 'default' ? [e.family === 6 ? '::' : '0.0.0.0', 0] : splitPrefix(e.dst, bits);
      const key = networkKey(addressGroups(e.family, addr), len);
      const fam = this.byLength.get(e.family) ?? new Map<number, Map<string, RouteEntry>>();
      this.byLength.set(e.family, fam);
      const at = fam.get(len) ?? new Map<string, RouteEntry>();
      fam.set(len, at);
      const prev = at.get(key);
      if (!prev || (e.metric ?? 0) < (prev.metric ?? 0)) at.set(key, e);
    }
    for (const [family, fam] of this.byLength)
      this.lengths.set(
        family,
        [...fam.keys()].sort((a, b) => b - a),
      );
  }

  /** The route for exactly this prefix (an administrator's, a connected one), if the table has one. */
  exact(family: IpFamily, address: string, length: number): RouteEntry | null {
    return (
      this.byLength
        .get(family)
        ?.get(length)
        ?.get(networkKey(addressGroups(family, address), length)) ?? null
    );
  }

  /** How the kernel would send a packet to address; null when it could not. */
  lookup(family: IpFamily, address: string): Via | null {
    const groups = addressGroups(family, address);
    const fam = this.byLength.get(family);
    for (const len of this.lengths.get(family) ?? []) {
      const e = fam!.get(len)!.get(networkKey(groups, len));
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

/** The first `length` bits of an address, as a string usable as a Map key. */
function networkKey(groups: readonly number[], length: number): string {
  let key = '';
  let i = 0;
  for (; length >= 16; length -= 16, i++) key += `${groups[i]},`;
  if (length > 0) key += groups[i]! >> (16 - length);
  return key;
}
