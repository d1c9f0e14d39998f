// addrmap's kernel footprint: one table it owns, two maps holding the
// mappings (one per family, with per-element counters), two NAT base chains
// that look the destination up in them and two filter chains that only
// count. Everything else addrmap does to the kernel is adding and removing
// map elements. Which shape the counting and the self guard take depends on
// what the running kernel accepts (KernelCaps, probed at start-up).
import type { Chain, NftMap, NftSet, Rule } from './nft/index.js';
import { PREFIX_COUNT_CHAIN, PREFIX_DNAT_CHAIN } from './prefix-rules.js';
import { TRANSLATED_FLOW, ref } from './table.js';

export { TABLE } from './table.js';
export { PREFIX_COUNT_CHAIN, PREFIX_DNAT_CHAIN, decodePrefixCount, decodePrefixRule, prefixRules } from './prefix-rules.js';

export const MAP_NAMES = { 4: 'dnat4', 6: 'dnat6' } as const;

/** This guest's own previous addresses: now -> previous (inbound), previous -> now (outbound). */
export const SELF_IN_MAP = 'self_in6';
export const SELF_OUT_MAP = 'self_out6';

/** dstnat; numeric because nft 1.0.6 rejects some named priorities. */
const DNAT_PRIORITY = -100;

/**
 * What the running kernel accepts beyond the essentials (DNAT through a map,
 * prefix rules), checked at start-up. Debian's 5.10 and 6.1 kernels reject a
 * lookup that uses a map as a set (6.12 accepts it), so there the count
 * chains and the self guard look up a set holding the same keys.
 */
export interface KernelCaps {
  /** How later packets of a translated flow are counted: by the DNAT map itself, by a set of its keys, or not at all. */
  count: 'map' | 'set' | 'none';
  /** How the self guard recognises the guest's addresses now: the inbound self map, a set of its keys, or not at all (no `self`). */
  selfGuard: 'map' | 'set' | 'none';
}

export const FULL_CAPS: KernelCaps = { count: 'map', selfGuard: 'map' };

/** Sets that mirror a map's keys where the kernel cannot look a map up as a set. */
export const COUNT_SET_NAMES = { 4: 'count4', 6: 'count6' } as const;
export const SELF_NOW_SET = 'self_now6';

/** What each missing capability costs, in the words status uses. */
export function missingCapabilities(caps: KernelCaps): string[] {
  const out: string[] = [];
  if (caps.count === 'none') out.push('hit counters cover first packets only: the kernel rejects the count chains');
  if (caps.selfGuard === 'none') out.push("'self' entries are not applied: the kernel rejects the self guard");
  return out;
}

/** After NAT and any ordinary filtering; only counts, never drops. */
const COUNT_PRIORITY = 0;

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
// Prefix mappings are rules, not map elements: nft 1.0.6's JSON cannot
// declare the interval-data map `dnat ip6 prefix to ... map` needs. Each
// prefix mapping is one rule per chain, longest prefix first, and the base
// chains jump here after the single-address maps, so an address's own mapping
// wins over any prefix holding it (longest match).
const PREFIX_CHAINS: Chain[] = [
  { ...ref, name: PREFIX_DNAT_CHAIN },
  { ...ref, name: PREFIX_COUNT_CHAIN },
];
// The guest's own previous addresses (after it migrated): traffic arriving
// for its address now goes to a socket bound on the previous one, unless a
// socket already takes it at the address now (a listener on that address or
// the wildcard): the socket guard keeps services bound to the new address
// untouched. Before the other DNAT chain, so the two never compete. Outbound,
// a socket bound to the previous address leaves with the address now.
const SELF_CHAINS: Chain[] = [
  { ...ref, name: 'self_prerouting', type: 'nat', hook: 'prerouting', prio: DNAT_PRIORITY - 1, policy: 'accept' },
  { ...ref, name: 'self_postrouting', type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' },
];
function dnatVia(proto: 'ip' | 'ip6', map: string): unknown[] {
  return [{ dnat: { family: proto, addr: { map: { key: { payload: { protocol: proto, field: 'daddr' } }, data: `@${map}` } } } }];
}

function countVia(proto: 'ip' | 'ip6', map: string): unknown[] {
  // "return" once counted, so a prefix holding the address does not count it again.
  return [
    ...TRANSLATED_FLOW,
    { match: { op: '==', left: { ct: { key: `${proto} daddr`, dir: 'original' } }, right: `@${map}` } },
    { return: null },
  ];
}

const jump = (target: string) => [{ jump: { target } }];

/** addrmap's table as the running kernel accepts it: the same for every kernel but the capability-dependent parts. */
export interface Ruleset {
  caps: KernelCaps;
  maps: NftMap[];
  sets: NftSet[];
  chains: Chain[];
  /** The rules of the chains whose rules are fixed (all but the prefix chains). */
  rules: Rule[];
  fixedRuleChains: string[];
  /** Whether `self` entries can be applied. */
  self: boolean;
}

export function buildRuleset(caps: KernelCaps): Ruleset {
  const self = caps.selfGuard !== 'none';
  const maps: NftMap[] = [
    { ...ref, name: MAP_NAMES[4], type: 'ipv4_addr', map: 'ipv4_addr', counter: true },
    { ...ref, name: MAP_NAMES[6], type: 'ipv6_addr', map: 'ipv6_addr', counter: true },
  ];
  if (self)
    maps.push(
      { ...ref, name: SELF_IN_MAP, type: 'ipv6_addr', map: 'ipv6_addr' },
      { ...ref, name: SELF_OUT_MAP, type: 'ipv6_addr', map: 'ipv6_addr' },
    );
  const sets: NftSet[] = [];
  if (caps.count === 'set')
    sets.push(
      { ...ref, name: COUNT_SET_NAMES[4], type: 'ipv4_addr', counter: true },
      { ...ref, name: COUNT_SET_NAMES[6], type: 'ipv6_addr', counter: true },
    );
  if (caps.selfGuard === 'set') sets.push({ ...ref, name: SELF_NOW_SET, type: 'ipv6_addr' });
  const countChains = caps.count === 'none' ? [] : COUNT_CHAINS;
  const chains = [...DNAT_CHAINS, ...countChains, ...PREFIX_CHAINS, ...(self ? SELF_CHAINS : [])];
  const countIn = (family: 4 | 6) => (caps.count === 'set' ? COUNT_SET_NAMES[family] : MAP_NAMES[family]);
  const rules: Rule[] = [
    ...DNAT_CHAINS.flatMap((c) => [
      { ...ref, chain: c.name, expr: dnatVia('ip', MAP_NAMES[4]) },
      { ...ref, chain: c.name, expr: dnatVia('ip6', MAP_NAMES[6]) },
      { ...ref, chain: c.name, expr: jump(PREFIX_DNAT_CHAIN) },
    ]),
    ...countChains.flatMap((c) => [
      { ...ref, chain: c.name, expr: countVia('ip', countIn(4)) },
      { ...ref, chain: c.name, expr: countVia('ip6', countIn(6)) },
      { ...ref, chain: c.name, expr: jump(PREFIX_COUNT_CHAIN) },
    ]),
    ...(self ? selfRules(caps.selfGuard === 'set' ? SELF_NOW_SET : SELF_IN_MAP) : []),
  ];
  const fixedRuleChains = chains.filter((c) => c.name !== PREFIX_DNAT_CHAIN && c.name !== PREFIX_COUNT_CHAIN).map((c) => c.name);
  return { caps, maps, sets, chains, rules, fixedRuleChains, self };
}

// Protocol numbers, not names: nft lists names only where /etc/protocols
// exists (netbase is missing from slim images), so a listing is normalised
// to numbers before it is compared (normalizeExpr).
const TCP_UDP = { set: [6, 17] };

function selfRules(nowLookup: string): Rule[] {
  const tcpUdp = { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: TCP_UDP } };
  const field = (f: 'daddr' | 'saddr') => ({ payload: { protocol: 'ip6', field: f } });
  return [
    {
      ...ref,
      chain: 'self_prerouting',
      expr: [
        { match: { op: '==', left: field('daddr'), right: `@${nowLookup}` } },
        tcpUdp,
        { match: { op: '==', left: { socket: { key: 'transparent' } }, right: { set: [0, 1] } } },
        { return: null },
      ],
    },
    {
      ...ref,
      chain: 'self_prerouting',
      expr: [tcpUdp, { dnat: { family: 'ip6', addr: { map: { key: field('daddr'), data: `@${SELF_IN_MAP}` } } } }],
    },
    {
      ...ref,
      chain: 'self_postrouting',
      expr: [{ match: { op: '==', left: { meta: { key: 'oifname' } }, right: 'lo' } }, { return: null }],
    },
    {
      ...ref,
      chain: 'self_postrouting',
      expr: [{ snat: { family: 'ip6', addr: { map: { key: field('saddr'), data: `@${SELF_OUT_MAP}` } } } }],
    },
  ];
}

/** Names of layer 4 protocols nft may print in a listing, as numbers (all addrmap's rules use). */
const PROTOCOL_NUMBERS: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, 'ipv6-icmp': 58, icmpv6: 58, sctp: 132, udplite: 136 };

/**
 * A listed rule's statements with protocol names turned into numbers, so a
 * listing compares equal whatever /etc/protocols holds (or whether it exists).
 */
export function normalizeExpr(expr: unknown[]): unknown[] {
  const fix = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(fix);
    if (typeof v !== 'object' || v === null) return v;
    const o = v as Record<string, unknown>;
    const m = o.match as { left?: { meta?: { key?: string } }; right?: unknown; op?: string } | undefined;
    if (m && m.left?.meta?.key === 'l4proto') {
      const num = (x: unknown) => (typeof x === 'string' && x in PROTOCOL_NUMBERS ? PROTOCOL_NUMBERS[x] : x);
      const right = m.right;
      const fixed =
        typeof right === 'object' && right !== null && Array.isArray((right as { set?: unknown[] }).set)
          ? { set: (right as { set: unknown[] }).set.map(num) }
          : num(right);
      return { ...o, match: { ...m, right: fixed } };
    }
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, fix(x)]));
  };
  return expr.map(fix);
}

/** The table on a kernel that accepts everything (6.12 and later). */
export const FULL_RULESET = buildRuleset(FULL_CAPS);
export const MAPS = FULL_RULESET.maps;
export const CHAINS = FULL_RULESET.chains;
export const RULES = FULL_RULESET.rules;
