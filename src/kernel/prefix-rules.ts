// Prefix mappings as nft rules, both ways: the two rules one prefix mapping
// installs, and the mapping (and its counters) read back from a listed rule.
// Rules, not map elements: nft 1.0.6's JSON cannot declare the interval-data
// map `dnat ip6 prefix to ... map` would need.
import { addressToBig, bigToAddress, hostMask, normalizeIp } from '../net/address.js';
import type { Rule } from './nft/index.js';
import type { PrefixMapping } from '../desired/resolve.js';
import { prefixKey } from '../net/prefix.js';
import { TRANSLATED_FLOW, ref } from './table.js';

/** The chains the base chains jump to, after the single-address maps (ruleset.ts). */
export const PREFIX_DNAT_CHAIN = 'prefix_dnat';
export const PREFIX_COUNT_CHAIN = 'prefix_count';

/** The two rules of one prefix mapping. */
export function prefixRules(p: PrefixMapping): Rule[] {
  const proto = p.family === 6 ? 'ip6' : 'ip';
  const daddr = { payload: { protocol: proto, field: 'daddr' } };
  const from = { prefix: { addr: p.from, len: p.length } };
  // to | host bits of daddr, written as nft lists it: (daddr & (to | hostmask)) | to.
  const mask = bigToAddress(p.family, addressToBig(p.family, p.to) | hostMask(p.family, p.length));
  return [
    {
      ...ref,
      chain: PREFIX_DNAT_CHAIN,
      expr: [
        { match: { op: '==', left: daddr, right: from } },
        { counter: null },
        { dnat: { family: proto, addr: { '|': [{ '&': [daddr, mask] }, p.to] } } },
      ],
    },
    {
      ...ref,
      chain: PREFIX_COUNT_CHAIN,
      expr: [
        ...TRANSLATED_FLOW,
        { match: { op: '==', left: { ct: { key: `${proto} daddr`, dir: 'original' } }, right: from } },
        { counter: null },
        { return: null },
      ],
    },
  ];
}

/**
 * What decoding a listed prefix rule reads of its statements
 * (libnftables-json(5)). Any part may be missing from a rule that is not
 * one of ours; the decoders check before they use it.
 */
interface ListedStatement {
  match?: { left?: { payload?: { protocol?: string } }; right?: { prefix?: { addr: string; len: number } } };
  counter?: { packets?: number; bytes?: number } | null;
  dnat?: { addr?: { '|'?: unknown[] } };
}

/** The prefix mapping a prefix_dnat rule installs, or null for a rule that is not one of ours. */
export function decodePrefixRule(rule: Rule): { mapping: PrefixMapping; packets: number; bytes: number } | null {
  const [match, counter, dnat] = rule.expr as ListedStatement[];
  const from = match?.match?.right?.prefix;
  const proto = match?.match?.left?.payload?.protocol;
  const to = dnat?.dnat?.addr?.['|']?.[1];
  if (
    rule.expr.length !== 3 ||
    !from ||
    (proto !== 'ip' && proto !== 'ip6') ||
    typeof to !== 'string' ||
    !counter ||
    !('counter' in counter)
  )
    return null;
  const family = proto === 'ip6' ? 6 : 4;
  try {
    const mapping: PrefixMapping = { family, from: normalizeIp(String(from.addr)), to: normalizeIp(to), length: Number(from.len) };
    const expected = prefixRules(mapping)[0]!.expr;
    if (JSON.stringify(withoutCounters(rule.expr)) !== JSON.stringify(withoutCounters(expected))) return null;
    return { mapping, packets: counter.counter?.packets ?? 0, bytes: counter.counter?.bytes ?? 0 };
  } catch {
    return null;
  }
}

/** The counter of a prefix_count rule for the given prefix, or null. */
export function decodePrefixCount(rule: Rule): { key: string; packets: number; bytes: number } | null {
  const match = (rule.expr as ListedStatement[])[3];
  const counter = (rule.expr as ListedStatement[])[4];
  const from = match?.match?.right?.prefix;
  if (!from || !counter || !('counter' in counter)) return null;
  try {
    return {
      key: prefixKey(normalizeIp(String(from.addr)), from.len),
      packets: counter.counter?.packets ?? 0,
      bytes: counter.counter?.bytes ?? 0,
    };
  } catch {
    return null;
  }
}

const withoutCounters = (expr: unknown[]) =>
  expr.map((x) => (typeof x === 'object' && x !== null && 'counter' in x ? { counter: null } : x));
