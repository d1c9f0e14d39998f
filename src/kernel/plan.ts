// The plan: the smallest nft transaction that turns what the kernel has into
// what the mapping file asks for. A change of mappings is an element delta; a
// missing or foreign-shaped table is rebuilt whole, in the same transaction as
// its elements, so no mapped address is ever unmapped in between.
import { isDeepStrictEqual } from 'node:util';
import { normalizeIp, type IpFamily } from '../net/address.js';
import type { DesiredMappings } from '../desired/resolve.js';
import type { DesiredChange } from '../desired/resolve-delta.js';
import {
  COUNT_SET_NAMES,
  FULL_RULESET,
  MAP_NAMES,
  SELF_IN_MAP,
  SELF_NOW_SET,
  SELF_OUT_MAP,
  PREFIX_COUNT_CHAIN,
  PREFIX_DNAT_CHAIN,
  TABLE,
  decodePrefixCount,
  decodePrefixRule,
  normalizeExpr,
  prefixRules,
  type Ruleset,
} from './ruleset.js';
import type { PrefixMapping } from '../desired/resolve.js';
import { Transaction, type TableListing } from './nft/index.js';
import { prefixKey } from '../net/prefix.js';

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

export function viewFromListing(listing: TableListing | null, ruleset: Ruleset = FULL_RULESET): KernelView {
  if (!listing) return EMPTY_VIEW;
  const view: KernelView = { layoutOk: layoutMatches(listing, ruleset), v4: new Map(), v6: new Map(), prefixes: prefixesOf(listing) };
  const read = (name: string) => {
    const out = new Map<string, string>();
    for (const el of listing.maps.find((m) => m.name === name)?.elements ?? [])
      if (el.value !== undefined) out.set(normalizeIp(el.key), normalizeIp(el.value));
    return out;
  };
  view.v4 = read(MAP_NAMES[4]);
  view.v6 = read(MAP_NAMES[6]);
  const self = read(SELF_OUT_MAP);
  const selfIn = read(SELF_IN_MAP);
  if (self.size || selfIn.size) Object.assign(view, { self, selfIn });
  // A set mirroring a map's keys that lost or gained one is repaired by a rebuild.
  const keysOf = (name: string) => new Set((listing.sets?.find((x) => x.name === name)?.elements ?? []).map((el) => normalizeIp(el.key)));
  const mirrors = (name: string, of: ReadonlyMap<string, string>) => {
    const keys = keysOf(name);
    return keys.size === of.size && [...of.keys()].every((k) => keys.has(k));
  };
  if (ruleset.caps.count === 'set' && !(mirrors(COUNT_SET_NAMES[4], view.v4) && mirrors(COUNT_SET_NAMES[6], view.v6)))
    view.layoutOk = false;
  if (ruleset.caps.selfGuard === 'set' && !mirrors(SELF_NOW_SET, selfIn)) view.layoutOk = false;
  return view;
}

/** Prefix mappings as the kernel holds them; null when the prefix chains are not as addrmap wrote them. */
function prefixesOf(l: TableListing): PrefixMapping[] | null {
  const dnat = l.rules.filter((r) => r.chain === PREFIX_DNAT_CHAIN).map(decodePrefixRule);
  if (dnat.some((d) => d === null)) return null;
  const out = dnat.map((d) => d!.mapping);
  const counts = l.rules.filter((r) => r.chain === PREFIX_COUNT_CHAIN).map(decodePrefixCount);
  if (counts.length !== out.length || counts.some((c, i) => c?.key !== prefixKey(out[i]!.from, out[i]!.length))) return null;
  return out;
}

function layoutMatches(l: TableListing, rs: Ruleset): boolean {
  const fixed = l.rules.filter((r) => rs.fixedRuleChains.includes(r.chain));
  const sets = l.sets ?? [];
  if (
    l.chains.length !== rs.chains.length ||
    l.maps.length !== rs.maps.length ||
    sets.length !== rs.sets.length ||
    fixed.length !== rs.rules.length
  )
    return false;
  const chainsOk = rs.chains.every((want) =>
    l.chains.some(
      (c) => c.name === want.name && c.type === want.type && c.hook === want.hook && c.prio === want.prio && c.policy === want.policy,
    ),
  );
  const mapsOk = rs.maps.every((want) =>
    l.maps.some((m) => m.name === want.name && m.type === want.type && m.map === want.map && !!m.counter === !!want.counter),
  );
  const setsOk = rs.sets.every((want) => sets.some((m) => m.name === want.name && m.type === want.type && !!m.counter === !!want.counter));
  // Rules compare per chain and in order: the kernel lists the JSON we sent
  // verbatim, but for protocol names where /etc/protocols has them.
  const rulesOk = rs.fixedRuleChains.every((name) => {
    const have = l.rules.filter((r) => r.chain === name).map((r) => normalizeExpr(r.expr));
    const want = rs.rules.filter((r) => r.chain === name).map((r) => r.expr);
    return isDeepStrictEqual(have, want);
  });
  return chainsOk && mapsOk && setsOk && rulesOk;
}

export function planSync(current: KernelView, desired: DesiredMappings, forceFull = false, rs: Ruleset = FULL_RULESET): Plan {
  const full = forceFull || !current.layoutOk;
  const tx = new Transaction();
  const plan: Plan = { kind: 'none', tx, added: [], retargeted: [], removed: [] };

  const wantPrefixes = desired.prefixes ?? [];
  const havePrefixes = current.prefixes ?? [];
  const key = (p: PrefixMapping) => prefixKey(p.from, p.length);
  const haveByKey = new Map(havePrefixes.map((p) => [key(p), p]));
  const wantByKey = new Map(wantPrefixes.map((p) => [key(p), p]));
  for (const p of wantPrefixes) {
    const was = haveByKey.get(key(p));
    if (!was) plan.added.push({ family: p.family, from: p.from, to: p.to, length: p.length });
    else if (was.to !== p.to) plan.retargeted.push({ family: p.family, from: p.from, to: p.to, was: was.to, length: p.length });
  }
  for (const p of havePrefixes)
    if (!wantByKey.has(key(p))) plan.removed.push({ family: p.family, from: p.from, to: p.to, length: p.length });
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
    for (const map of rs.maps) tx.add({ map });
    for (const set of rs.sets) tx.add({ set });
    for (const chain of rs.chains) tx.add({ chain });
    for (const rule of rs.rules) tx.add({ rule });
    for (const p of wantPrefixes) for (const rule of prefixRules(p)) tx.add({ rule });
    for (const family of [4, 6] as const) {
      const want = desired[family === 4 ? 'v4' : 'v6'];
      for (const [from, to] of want) tx.add({ element: element(family, from, to) });
      if (rs.caps.count === 'set') for (const from of want.keys()) tx.add({ element: { ...mapRef(COUNT_SET_NAMES[family]), key: from } });
    }
    for (const [prev, now] of rs.self ? (desired.self ?? []) : []) {
      tx.add({ element: { ...mapRef(SELF_IN_MAP), key: now, value: prev } });
      tx.add({ element: { ...mapRef(SELF_OUT_MAP), key: prev, value: now } });
      if (rs.caps.selfGuard === 'set') tx.add({ element: { ...mapRef(SELF_NOW_SET), key: now } });
    }
    return plan;
  }

  elementDelta(tx, plan, rs);
  // Prefix rules are few and ordered (longest first): any change rewrites
  // both prefix chains, in the same transaction as the rest.
  if (prefixesChanged) {
    tx.flush({ chain: { family: TABLE.family, table: TABLE.name, name: PREFIX_DNAT_CHAIN } });
    tx.flush({ chain: { family: TABLE.family, table: TABLE.name, name: PREFIX_COUNT_CHAIN } });
    for (const p of wantPrefixes) for (const rule of prefixRules(p)) tx.add({ rule });
  }
  // Without the self guard the table has no self maps: nothing to diff.
  const none = new Map<string, string>();
  const wantSelf = rs.self ? (desired.self ?? none) : none;
  const haveSelfIn = rs.self ? (current.selfIn ?? none) : none;
  diffMap(tx, SELF_OUT_MAP, rs.self ? (current.self ?? none) : none, wantSelf);
  diffMap(tx, SELF_IN_MAP, haveSelfIn, new Map([...wantSelf].map(([prev, now]) => [now, prev])));
  if (rs.caps.selfGuard === 'set') {
    const wantNow = new Set(wantSelf.values());
    for (const now of haveSelfIn.keys()) if (!wantNow.has(now)) tx.delete({ element: { ...mapRef(SELF_NOW_SET), key: now } });
    for (const now of wantNow) if (!haveSelfIn.has(now)) tx.add({ element: { ...mapRef(SELF_NOW_SET), key: now } });
  }
  plan.kind = tx.size > 0 ? 'delta' : 'none';
  return plan;
}

/**
 * The plan for a known set of changed stale addresses, against a view that
 * holds everything else as wanted: what a push changing a few mappings of a
 * large table costs, instead of comparing the whole table.
 */
export function planChanges(current: KernelView, changes: readonly DesiredChange[], rs: Ruleset = FULL_RULESET): Plan {
  const plan: Plan = { kind: 'none', tx: new Transaction(), added: [], retargeted: [], removed: [] };
  // The last change of an address wins, as the file's order says.
  const last = new Map<string, DesiredChange>();
  for (const c of changes) last.set(`${c.family}|${c.from}`, c);
  for (const { family, from, to } of last.values()) {
    const was = current[family === 4 ? 'v4' : 'v6'].get(from);
    if (to === null) {
      if (was !== undefined) plan.removed.push({ family, from, to: was });
    } else if (was === undefined) plan.added.push({ family, from, to });
    else if (was !== to) plan.retargeted.push({ family, from, to, was });
  }
  elementDelta(plan.tx, plan, rs);
  plan.kind = plan.tx.size > 0 ? 'delta' : 'none';
  return plan;
}

/** The map and count-set elements of a plan's single-address changes. */
function elementDelta(tx: Transaction, plan: Plan, rs: Ruleset): void {
  // A map element's value cannot be changed in place: a retarget is delete +
  // add. Both are in one transaction, so the address is never unmapped; all
  // deletes go first so the batch stays a few large commands.
  const singles = (cs: Change[]) => cs.filter((c) => c.length === undefined);
  for (const c of singles([...plan.removed, ...plan.retargeted])) tx.delete({ element: element(c.family, c.from) });
  for (const c of singles([...plan.retargeted, ...plan.added])) tx.add({ element: element(c.family, c.from, c.to) });
  // A retarget keeps its key, so the count sets change only by additions and removals.
  if (rs.caps.count === 'set') {
    for (const c of singles(plan.removed)) tx.delete({ element: { ...mapRef(COUNT_SET_NAMES[c.family]), key: c.from } });
    for (const c of singles(plan.added)) tx.add({ element: { ...mapRef(COUNT_SET_NAMES[c.family]), key: c.from } });
  }
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
