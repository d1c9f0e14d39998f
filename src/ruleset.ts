// addrmap's kernel footprint: one table it owns, two maps holding the
// mappings (one per family, with per-element counters), two NAT base chains
// that look the destination up in them and two filter chains that only count. Everything else addrmap does to the
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

/** After NAT and any ordinary filtering; only counts, never drops. */
export const COUNT_PRIORITY = 0;

// DNAT: output for connections the guest itself originates, prerouting for
// connections from containers or bridges inside the guest, routed through it.
// NAT chains see only a flow's first packet, whose lookup counts it on the
// map element. The count chains look every later packet of a translated flow
// up by its original destination, so each element's counters add up to all
// the packets and bytes sent to that stale address.
const DNAT_CHAINS: Chain[] = [
  { ...ref, name: 'dnat_output', type: 'nat', hook: 'output', prio: DNAT_PRIORITY, policy: 'accept' },
  { ...ref, name: 'dnat_prerouting', type: 'nat', hook: 'prerouting', prio: DNAT_PRIORITY, policy: 'accept' },
];
const COUNT_CHAINS: Chain[] = [
  { ...ref, name: 'count_output', type: 'filter', hook: 'output', prio: COUNT_PRIORITY, policy: 'accept' },
  { ...ref, name: 'count_forward', type: 'filter', hook: 'forward', prio: COUNT_PRIORITY, policy: 'accept' },
];
export const CHAINS: Chain[] = [...DNAT_CHAINS, ...COUNT_CHAINS];

function dnatVia(proto: 'ip' | 'ip6', map: string): unknown[] {
  return [{ dnat: { family: proto, addr: { map: { key: { payload: { protocol: proto, field: 'daddr' } }, data: `@${map}` } } } }];
}

function countVia(proto: 'ip' | 'ip6', map: string): unknown[] {
  return [
    // Cheapest test first: most packets are not DNATed and stop here.
    { match: { op: 'in', left: { ct: { key: 'status' } }, right: 'dnat' } },
    { match: { op: '==', left: { ct: { key: 'direction' } }, right: 'original' } },
    { match: { op: 'in', left: { ct: { key: 'state' } }, right: 'established' } },
    { match: { op: '==', left: { ct: { key: `${proto} daddr`, dir: 'original' } }, right: `@${map}` } },
  ];
}

export const RULES: Rule[] = [
  ...DNAT_CHAINS.flatMap((c) => [
    { ...ref, chain: c.name, expr: dnatVia('ip', MAP_NAMES[4]) },
    { ...ref, chain: c.name, expr: dnatVia('ip6', MAP_NAMES[6]) },
  ]),
  ...COUNT_CHAINS.flatMap((c) => [
    { ...ref, chain: c.name, expr: countVia('ip', MAP_NAMES[4]) },
    { ...ref, chain: c.name, expr: countVia('ip6', MAP_NAMES[6]) },
  ]),
];
