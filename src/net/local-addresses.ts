// The guest's own addresses, read from /proc (no process started: this runs
// on every sync and every second's poll), so that no mapping ever captures
// the guest itself: a stale address that is, or a stale prefix that holds,
// one of the guest's addresses would send away the guest's inbound traffic
// (prerouting DNAT) and its connections to itself.
import { readFile } from 'node:fs/promises';
import { normalizeIp, type IpFamily } from './address.js';
import { Prefix, movePair } from './prefix.js';
import type { DesiredMappings, PrefixMapping } from '../desired/resolve.js';

export interface LocalAddresses {
  v4: string[];
  v6: string[];
}

/** Every address of every interface in this network namespace, both families. */
export async function readLocalAddresses(procNet = '/proc/net'): Promise<LocalAddresses> {
  const [inet6, trie] = await Promise.all([
    readFile(`${procNet}/if_inet6`, 'utf8').catch(() => ''),
    readFile(`${procNet}/fib_trie`, 'utf8').catch(() => ''),
  ]);
  const v6 = new Set<string>();
  for (const line of inet6.split('\n')) {
    const hex = line.split(/\s+/)[0] ?? '';
    if (/^[0-9a-f]{32}$/.test(hex)) v6.add(normalizeIp(hex.match(/.{4}/g)!.join(':')));
  }
  // fib_trie: "|-- a.b.c.d" followed by "/32 host LOCAL" for an address of ours.
  const v4 = new Set<string>();
  let last: string | null = null;
  for (const line of trie.split('\n')) {
    const node = /\|-- (\d+\.\d+\.\d+\.\d+)/.exec(line);
    if (node) last = node[1]!;
    else if (last && /\/32 host LOCAL/.test(line)) v4.add(last);
  }
  return { v4: [...v4], v6: [...v6] };
}

export interface Captured {
  family: IpFamily;
  /** The mapping's stale address, or "net/len". */
  from: string;
  to: string;
  /** The guest's address it is or holds. */
  local: string;
}

/**
 * The desired state without mappings that would capture the guest itself.
 * `own` are addresses addrmap itself puts on lo (the guest's previous
 * addresses, `self`): those are meant to be reached, and never count.
 */
export function withoutSelfCapture(
  desired: DesiredMappings,
  local: LocalAddresses,
  own: ReadonlySet<string> = new Set(),
): { desired: DesiredMappings; captured: Captured[] } {
  const captured: Captured[] = [];
  const isLoopback4 = (a: string) => a.startsWith('127.');
  const locals = { 4: new Set(local.v4), 6: new Set(local.v6.filter((a) => !own.has(a))) } as const;
  const keep = (family: IpFamily, m: ReadonlyMap<string, string>) => {
    let out: Map<string, string> | null = null;
    for (const [from, to] of m) {
      if (!locals[family].has(from) && !(family === 4 && isLoopback4(from)) && !(family === 6 && from === '::1')) continue;
      out ??= new Map(m);
      out.delete(from);
      captured.push({ family, from, to, local: from });
    }
    return out ?? m;
  };
  const holds = (p: PrefixMapping) => {
    const net = new Prefix(p.family, p.from, p.length);
    const addrs = [...locals[p.family]];
    if (p.family === 4) addrs.push('127.0.0.1');
    else addrs.push('::1');
    return addrs.find((a) => net.contains(a)) ?? null;
  };
  const prefixes = (desired.prefixes ?? []).filter((p) => {
    const local = holds(p);
    if (local) {
      const [from, to] = movePair(p);
      captured.push({ family: p.family, from, to, local });
    }
    return !local;
  });
  const v4 = keep(4, desired.v4);
  const v6 = keep(6, desired.v6);
  if (!captured.length) return { desired, captured };
  return { desired: { ...desired, v4, v6, ...(desired.prefixes ? { prefixes } : {}) }, captured };
}
