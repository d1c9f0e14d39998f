// The plan: the smallest nft transaction that turns what the kernel has into
// what the mapping file asks for. A change of mappings is an element delta; a
// missing or foreign-shaped table is rebuilt whole, in the same transaction as
// its elements, so no mapped address is ever unmapped in between.
import { isDeepStrictEqual } from 'node:util';
import { normalizeIp, type IpFamily } from './address.js';
import type { DesiredMappings } from './resolve.js';
import { CHAINS, MAPS, MAP_NAMES, RULES, TABLE } from './ruleset.js';
import { Transaction, type TableListing } from './nft/index.js';

/** What addrmap's table holds, as far as planning is concerned. */
export interface KernelView {
  /** False when the table is missing or its chains, rules or maps differ from ours. */
  layoutOk: boolean;
  v4: Map<string, string>;
  v6: Map<string, string>;
}

export interface Change {
  family: IpFamily;
  from: string;
  to: string;
  /** The previous target, for retargets. */
  was?: string;
}

export interface Plan {
  kind: 'none' | 'delta' | 'full';
  tx: Transaction;
  added: Change[];
  retargeted: Change[];
  removed: Change[];
}

export const EMPTY_VIEW: KernelView = { layoutOk: false, v4: new Map(), v6: new Map() };

export function viewFromListing(listing: TableListing | null): KernelView {
  if (!listing) return EMPTY_VIEW;
  const view: KernelView = { layoutOk: layoutMatches(listing), v4: new Map(), v6: new Map() };
  for (const family of [4, 6] as const) {
    const map = listing.maps.find((m) => m.name === MAP_NAMES[family]);
    for (const el of map?.elements ?? []) {
      if (el.value !== undefined) view[family === 4 ? 'v4' : 'v6'].set(normalizeIp(el.key), normalizeIp(el.value));
    }
  }
  return view;
}

function layoutMatches(l: TableListing): boolean {
  if (l.chains.length !== CHAINS.length || l.maps.length !== MAPS.length || l.rules.length !== RULES.length) return false;
  const chainsOk = CHAINS.every((want) =>
    l.chains.some((c) => c.name === want.name && c.type === want.type && c.hook === want.hook && c.prio === want.prio && c.policy === want.policy),
  );
  const mapsOk = MAPS.every((want) => l.maps.some((m) => m.name === want.name && m.type === want.type && m.map === want.map && !!m.counter === !!want.counter));
  // Rules compare per chain and in order: the kernel lists the JSON we sent verbatim.
  const rulesOk = CHAINS.every((c) => {
    const have = l.rules.filter((r) => r.chain === c.name).map((r) => r.expr);
    const want = RULES.filter((r) => r.chain === c.name).map((r) => r.expr);
    return isDeepStrictEqual(have, want);
  });
  return chainsOk && mapsOk && rulesOk;
}

export function planSync(current: KernelView, desired: DesiredMappings, forceFull = false): Plan {
  const full = forceFull || !current.layoutOk;
  const tx = new Transaction();
  const plan: Plan = { kind: 'none', tx, added: [], retargeted: [], removed: [] };

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
    for (const family of [4, 6] as const) {
      for (const [from, to] of desired[family === 4 ? 'v4' : 'v6']) tx.add({ element: element(family, from, to) });
    }
    return plan;
  }

  // A map element's value cannot be changed in place: a retarget is delete +
  // add. Both are in one transaction, so the address is never unmapped; all
  // deletes go first so the batch stays a few large commands.
  for (const c of [...plan.removed, ...plan.retargeted]) tx.delete({ element: element(c.family, c.from) });
  for (const c of [...plan.retargeted, ...plan.added]) tx.add({ element: element(c.family, c.from, c.to) });
  plan.kind = tx.size > 0 ? 'delta' : 'none';
  return plan;
}

function element(family: IpFamily, key: string, value?: string) {
  return { family: TABLE.family, table: TABLE.name, name: MAP_NAMES[family], key, ...(value === undefined ? {} : { value }) };
}

export function viewOf(desired: DesiredMappings): KernelView {
  return { layoutOk: true, v4: new Map(desired.v4), v6: new Map(desired.v6) };
}
