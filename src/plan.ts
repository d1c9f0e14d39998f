// The plan: the smallest nft transaction that turns what the kernel has into
// what the mapping file asks for. A change of mappings is an element delta; a
// missing or foreign-shaped table is rebuilt whole, in the same transaction as
// its elements, so no mapped address is ever unmapped in between.
import { isDeepStrictEqual } from 'node:util';
import { normalizeIp, type IpFamily } from './address.js';
import type { DesiredMappings } from './resolve.js';
import { CHAINS, FIXED_RULE_CHAINS, MAPS, MAP_NAMES, SELF_IN_MAP, SELF_OUT_MAP, PREFIX_COUNT_CHAIN, PREFIX_DNAT_CHAIN, RULES, TABLE, decodePrefixCount, decodePrefixRule, prefixRules } from './ruleset.js';
import type { PrefixMapping } from './resolve.js';
import { Transaction, type TableListing } from './nft/index.js';

/** What addrmap's table holds, as far as planning is concerned. */
export interface KernelView {
  /** False when the table is missing or its chains, rules or maps differ from ours. */
  layoutOk: boolean;
  v4: ReadonlyMap<string, string>;
  v6: ReadonlyMap<string, string>;
  /** Prefix mappings in rule order (absent: none); null when the prefix chains hold rules that are not ours. */
  prefixes?: PrefixMapping[] | null;
  /** Own previous addresses, previous -> now, as the outbound map holds them (absent: none). */
  self?: Map<string, string>;
  /** The inbound map, now -> previous. */
  selfIn?: Map<string, string>;
}

export interface Change {
  family: IpFamily;
  from: string;
  to: string;
  /** The previous target, for retargets. */
  was?: string;
  /** Set for prefix mappings. */
  length?: number;
}

export interface Plan {
  kind: 'none' | 'delta' | 'full';
  tx: Transaction;
  added: Change[];
  retargeted: Change[];
  removed: Change[];
}

export const EMPTY_VIEW: KernelView = { layoutOk: false, v4: new Map(), v6: new Map(), prefixes: [] };

export function viewFromListing(listing: TableListing | null): KernelView {
  if (!listing) return EMPTY_VIEW;
  const view: KernelView = { layoutOk: layoutMatches(listing), v4: new Map(), v6: new Map(), prefixes: prefixesOf(listing) };
  const read = (name: string) => {
    const out = new Map<string, string>();
    for (const el of listing.maps.find((m) => m.name === name)?.elements ?? []) if (el.value !== undefined) out.set(normalizeIp(el.key), normalizeIp(el.value));
    return out;
  };
  view.v4 = read(MAP_NAMES[4]);
  view.v6 = read(MAP_NAMES[6]);
  const self = read(SELF_OUT_MAP);
  const selfIn = read(SELF_IN_MAP);
  if (self.size || selfIn.size) Object.assign(view, { self, selfIn });
  return view;
}

/** Prefix mappings as the kernel holds them; null when the prefix chains are not as addrmap wrote them. */
function prefixesOf(l: TableListing): PrefixMapping[] | null {
  const dnat = l.rules.filter((r) => r.chain === PREFIX_DNAT_CHAIN).map(decodePrefixRule);
  if (dnat.some((d) => d === null)) return null;
  const out = dnat.map((d) => d!.mapping);
  const counts = l.rules.filter((r) => r.chain === PREFIX_COUNT_CHAIN).map(decodePrefixCount);
  if (counts.length !== out.length || counts.some((c, i) => c?.key !== `${out[i]!.from}/${out[i]!.length}`)) return null;
  return out;
}

function layoutMatches(l: TableListing): boolean {
  const fixed = l.rules.filter((r) => FIXED_RULE_CHAINS.includes(r.chain));
  if (l.chains.length !== CHAINS.length || l.maps.length !== MAPS.length || fixed.length !== RULES.length) return false;
  const chainsOk = CHAINS.every((want) =>
    l.chains.some((c) => c.name === want.name && c.type === want.type && c.hook === want.hook && c.prio === want.prio && c.policy === want.policy),
  );
  const mapsOk = MAPS.every((want) => l.maps.some((m) => m.name === want.name && m.type === want.type && m.map === want.map && !!m.counter === !!want.counter));
  // Rules compare per chain and in order: the kernel lists the JSON we sent verbatim.
  const rulesOk = FIXED_RULE_CHAINS.every((name) => {
    const have = l.rules.filter((r) => r.chain === name).map((r) => r.expr);
    const want = RULES.filter((r) => r.chain === name).map((r) => r.expr);
    return isDeepStrictEqual(have, want);
  });
  return chainsOk && mapsOk && rulesOk;
}

export function planSync(current: KernelView, desired: DesiredMappings, forceFull = false): Plan {
  const full = forceFull || !current.layoutOk;
  const tx = new Transaction();
  const plan: Plan = { kind: 'none', tx, added: [], retargeted: [], removed: [] };

  const wantPrefixes = desired.prefixes ?? [];
  const havePrefixes = current.prefixes ?? [];
  const key = (p: PrefixMapping) => `${p.from}/${p.length}`;
  const haveByKey = new Map(havePrefixes.map((p) => [key(p), p]));
  const wantByKey = new Map(wantPrefixes.map((p) => [key(p), p]));
  for (const p of wantPrefixes) {
    const was = haveByKey.get(key(p));
    if (!was) plan.added.push({ family: p.family, from: p.from, to: p.to, length: p.length });
    else if (was.to !== p.to) plan.retargeted.push({ family: p.family, from: p.from, to: p.to, was: was.to, length: p.length });
  }
  for (const p of havePrefixes) if (!wantByKey.has(key(p))) plan.removed.push({ family: p.family, from: p.from, to: p.to, length: p.length });
  const prefixesChanged = current.prefixes === null || JSON.stringify(havePrefixes) !== JSON.stringify(wantPrefixes);

  for (const family of [4, 6] as const) {
    const have = current[family === 4 ? 'v4' : 'v6'];
    const want = desired[family === 4 ? 'v4' : 'v6'];
    for (const [from, to] of want) {
      const was = have.get(from);
      if (was === undefined) plan.added.push({ family, from, to });
      else if (was !== to) plan.retargeted.push({ family, from, to, was });
    }
    for (const [from, to] of have) if (!want.has(from)) plan.removed.push({ family, from, to });
  }

  if (full) {
    plan.kind = 'full';
    // "add, delete, add" removes whatever table is there without failing when
    // none is, and the rebuild commits atomically with it.
    tx.add({ table: TABLE }).delete({ table: TABLE }).add({ table: TABLE });
    for (const map of MAPS) tx.add({ map });
    for (const chain of CHAINS) tx.add({ chain });
    for (const rule of RULES) tx.add({ rule });
    for (const p of wantPrefixes) for (const rule of prefixRules(p)) tx.add({ rule });
    for (const family of [4, 6] as const) {
      for (const [from, to] of desired[family === 4 ? 'v4' : 'v6']) tx.add({ element: element(family, from, to) });
    }
    for (const [prev, now] of desired.self ?? []) {
      tx.add({ element: { ...mapRef(SELF_IN_MAP), key: now, value: prev } });
      tx.add({ element: { ...mapRef(SELF_OUT_MAP), key: prev, value: now } });
    }
    return plan;
  }

  // A map element's value cannot be changed in place: a retarget is delete +
  // add. Both are in one transaction, so the address is never unmapped; all
  // deletes go first so the batch stays a few large commands.
  const singles = (cs: Change[]) => cs.filter((c) => c.length === undefined);
  for (const c of singles([...plan.removed, ...plan.retargeted])) tx.delete({ element: element(c.family, c.from) });
  for (const c of singles([...plan.retargeted, ...plan.added])) tx.add({ element: element(c.family, c.from, c.to) });
  // Prefix rules are few and ordered (longest first): any change rewrites
  // both prefix chains, in the same transaction as the rest.
  if (prefixesChanged) {
    tx.flush({ chain: { family: TABLE.family, table: TABLE.name, name: PREFIX_DNAT_CHAIN } });
    tx.flush({ chain: { family: TABLE.family, table: TABLE.name, name: PREFIX_COUNT_CHAIN } });
    for (const p of wantPrefixes) for (const rule of prefixRules(p)) tx.add({ rule });
  }
  const wantSelf = desired.self ?? new Map<string, string>();
  diffMap(tx, SELF_OUT_MAP, current.self ?? new Map(), wantSelf);
  diffMap(tx, SELF_IN_MAP, current.selfIn ?? new Map(), new Map([...wantSelf].map(([prev, now]) => [now, prev])));
  plan.kind = tx.size > 0 ? 'delta' : 'none';
  return plan;
}

const mapRef = (name: string) => ({ family: TABLE.family, table: TABLE.name, name });

/** Element delta of one map: deletes (also of retargeted keys), then adds. */
function diffMap(tx: Transaction, name: string, have: ReadonlyMap<string, string>, want: ReadonlyMap<string, string>): void {
  for (const [key, value] of have) if (want.get(key) !== value) tx.delete({ element: { ...mapRef(name), key } });
  for (const [key, value] of want) if (have.get(key) !== value) tx.add({ element: { ...mapRef(name), key, value } });
}

function element(family: IpFamily, key: string, value?: string) {
  return { family: TABLE.family, table: TABLE.name, name: MAP_NAMES[family], key, ...(value === undefined ? {} : { value }) };
}

export function viewOf(desired: DesiredMappings): KernelView {
  const self = desired.self ?? new Map<string, string>();
  // The desired maps themselves, not copies: nothing changes them after
  // resolution, and at 100k mappings a copy per push costs time and memory.
  const view: KernelView = { layoutOk: true, v4: desired.v4, v6: desired.v6, prefixes: [...(desired.prefixes ?? [])] };
  if (self.size) {
    view.self = new Map(self);
    view.selfIn = new Map([...self].map(([prev, now]) => [now, prev]));
  }
  return view;
}
