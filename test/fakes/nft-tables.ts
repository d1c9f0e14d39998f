// The fake kernel's state: the tables it holds, each with its chains, rules,
// maps and sets, and the copy a transaction is applied to (the kernel applies
// a batch to a copy and keeps it only if every operation succeeds).
import type { Chain, KeyType, Rule, TableFamily } from '../../src/kernel/nft/types.js';

/** A map, or a set when `map` is absent: the kernel keeps both in one namespace. */
export interface FakeMap {
  family: TableFamily;
  table: string;
  name: string;
  type: KeyType;
  map?: KeyType;
  counter: boolean;
  elements: Map<string, { value?: string; packets: number; bytes: number }>;
}

export interface FakeTable {
  family: TableFamily;
  name: string;
  chains: Map<string, Chain>;
  rules: Rule[];
  maps: Map<string, FakeMap>;
}

/** A table's key in the fake kernel: family and name. */
export const tableKey = (family: string, name: string) => `${family} ${name}`;

/** A copy of the tables for a transaction to change; nft's own pass needs no elements, so it can leave them out. */
export function cloneTables(src: Map<string, FakeTable>, withElements: boolean): Map<string, FakeTable> {
  const out = new Map<string, FakeTable>();
  for (const [k, t] of src) {
    const maps = [...t.maps].map(([n, m]): [string, FakeMap] => [
      n,
      { ...m, elements: new Map(withElements ? [...m.elements].map(([ek, ev]) => [ek, { ...ev }]) : []) },
    ]);
    out.set(k, {
      family: t.family,
      name: t.name,
      chains: new Map([...t.chains].map(([n, c]) => [n, { ...c }])),
      rules: t.rules.map((r) => structuredClone(r)),
      maps: new Map(maps),
    });
  }
  return out;
}
