// addrmap's kernel footprint: one table it owns, two maps holding the
// mappings (one per family, with per-element counters) and two NAT base chains
// that look the destination up in them. Everything else addrmap does to the
// kernel is adding and removing map elements.
import type { Chain, NftMap, Rule, Table } from './nft/index.js';

export const TABLE: Table = { family: 'inet', name: 'addrmap' };

export const MAP_NAMES = { 4: 'dnat4', 6: 'dnat6' } as const;

/** dstnat; numeric because nft 1.0.6 rejects some named priorities. */
export const DNAT_PRIORITY = -100;

const ref = { family: TABLE.family, table: TABLE.name };

export const MAPS: NftMap[] = [
  { ...ref, name: MAP_NAMES[4], type: 'ipv4_addr', map: 'ipv4_addr', counter: true },
  { ...ref, name: MAP_NAMES[6], type: 'ipv6_addr', map: 'ipv6_addr', counter: true },
];

// output: connections the guest itself originates. prerouting: connections
// from containers or bridges inside the guest, routed through it.
export const CHAINS: Chain[] = [
  { ...ref, name: 'dnat_output', type: 'nat', hook: 'output', prio: DNAT_PRIORITY, policy: 'accept' },
  { ...ref, name: 'dnat_prerouting', type: 'nat', hook: 'prerouting', prio: DNAT_PRIORITY, policy: 'accept' },
];

function dnatVia(proto: 'ip' | 'ip6', map: string): unknown[] {
  return [{ dnat: { family: proto, addr: { map: { key: { payload: { protocol: proto, field: 'daddr' } }, data: `@${map}` } } } }];
}

export const RULES: Rule[] = CHAINS.flatMap((c) => [
  { ...ref, chain: c.name, expr: dnatVia('ip', MAP_NAMES[4]) },
  { ...ref, chain: c.name, expr: dnatVia('ip6', MAP_NAMES[6]) },
]);
