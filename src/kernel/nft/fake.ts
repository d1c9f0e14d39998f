// In-memory nftables for unit tests. It enforces the kernel's transaction
// semantics as measured with nft 1.0.6: operations apply in order to a copy,
// the first error discards the whole copy, and the same operations that fail
// in the kernel (EEXIST, ENOENT, EBUSY, wrong key type) fail here.
import { isIPv4, isIPv6 } from 'node:net';
import { normalizeIp } from '../../net/address.js';
import { describeObject } from './json.js';
import {
  NftError,
  type Chain,
  type Element,
  type NftInterface,
  type NftMap,
  type NftSet,
  type Operation,
  type Rule,
  type TableFamily,
  type TableListing,
  Transaction,
} from './types.js';

/** A map, or a set when `map` is absent: the kernel keeps both in one namespace. */
interface FakeMap extends Omit<NftMap, 'map'> {
  map?: NftMap['map'];
  elements: Map<string, { value?: string; packets: number; bytes: number }>;
}

interface FakeTable {
  family: TableFamily;
  name: string;
  chains: Map<string, Chain>;
  rules: Rule[];
  maps: Map<string, FakeMap>;
}

export class FakeNft implements NftInterface {
  private tables = new Map<string, FakeTable>();
  private nextHandle = 1;
  private failures: string[] = [];
  /** Every transaction that was run, committed or not, for assertions. */
  readonly history: { tx: Transaction; committed: boolean }[] = [];

  /** The next run() fails as the kernel would, with this message. */
  failNextRun(message = 'Operation not permitted'): void {
    this.failures.push(message);
  }

  async run(tx: Transaction): Promise<void> {
    const injected = this.failures.shift();
    if (injected !== undefined) {
      this.history.push({ tx, committed: false });
      throw new NftError('nft transaction failed, nothing was changed', injected);
    }
    const work = cloneTables(this.tables);
    let handle = this.nextHandle;
    try {
      for (const op of tx.operations) handle = apply(work, op, handle);
    } catch (e) {
      this.history.push({ tx, committed: false });
      throw e;
    }
    this.tables = work;
    this.nextHandle = handle;
    this.history.push({ tx, committed: true });
  }

  async listTable(family: TableFamily, name: string): Promise<TableListing | null> {
    const t = this.tables.get(key(family, name));
    if (!t) return null;
    const elementsOf = (m: FakeMap) =>
      [...m.elements].map(([k, e]): Element => {
        const el: Element = { family, table: name, name: m.name, key: k };
        if (e.value !== undefined) el.value = e.value;
        if (m.counter) el.counter = { packets: e.packets, bytes: e.bytes };
        return el;
      });
    const maps: TableListing['maps'] = [];
    const sets: NonNullable<TableListing['sets']> = [];
    for (const m of t.maps.values()) {
      const { elements: _, map, ...rest } = m;
      if (map === undefined) sets.push({ ...rest, elements: elementsOf(m) });
      else maps.push({ ...rest, map, elements: elementsOf(m) });
    }
    const listing: TableListing = {
      table: { family, name },
      chains: [...t.chains.values()].map((c) => ({ ...c })),
      rules: t.rules.map((r) => structuredClone(r)),
      maps,
    };
    if (sets.length) listing.sets = sets;
    return listing;
  }

  /** Simulates traffic through a mapped address (a map's or a set's element), for counter assertions. */
  hit(family: TableFamily, table: string, map: string, address: string, packets = 1, bytes = 60): void {
    const e = this.tables.get(key(family, table))?.maps.get(map)?.elements.get(normalizeIp(address));
    if (!e) throw new Error(`no element ${address} in ${map}`);
    e.packets += packets;
    e.bytes += bytes;
  }

  /** Another tool's change, bypassing transactions (e.g. `nft delete table`). */
  externalDeleteTable(family: TableFamily, name: string): void {
    this.tables.delete(key(family, name));
  }
}

const key = (family: string, name: string) => `${family} ${name}`;

function fail(op: Operation, reason: string): never {
  throw new NftError(
    'nft transaction failed, nothing was changed',
    `Could not process rule: ${reason}: ${op.verb} ${describeObject(op.object)}`,
  );
}

function cloneTables(src: Map<string, FakeTable>): Map<string, FakeTable> {
  const out = new Map<string, FakeTable>();
  for (const [k, t] of src) {
    out.set(k, {
      family: t.family,
      name: t.name,
      chains: new Map([...t.chains].map(([n, c]) => [n, { ...c }])),
      rules: t.rules.map((r) => structuredClone(r)),
      maps: new Map([...t.maps].map(([n, m]) => [n, { ...m, elements: new Map([...m.elements].map(([ek, ev]) => [ek, { ...ev }])) }])),
    });
  }
  return out;
}

function tableOf(tables: Map<string, FakeTable>, op: Operation, family: TableFamily, name: string): FakeTable {
  const t = tables.get(key(family, name));
  if (!t) fail(op, 'No such file or directory');
  return t;
}

function apply(tables: Map<string, FakeTable>, op: Operation, handle: number): number {
  const o = op.object;
  if ('table' in o) {
    const k = key(o.table.family, o.table.name);
    const t = tables.get(k);
    switch (op.verb) {
      case 'add':
      case 'create':
        if (t && op.verb === 'create') fail(op, 'File exists');
        if (!t) tables.set(k, { family: o.table.family, name: o.table.name, chains: new Map(), rules: [], maps: new Map() });
        return handle;
      case 'delete':
        if (!t) fail(op, 'No such file or directory');
        tables.delete(k);
        return handle;
      case 'flush':
        if (!t) fail(op, 'No such file or directory');
        t.rules = [];
        for (const m of t.maps.values()) m.elements.clear();
        return handle;
    }
  }
  if ('chain' in o) {
    const c = o.chain;
    const t = tableOf(tables, op, c.family, c.table);
    const existing = t.chains.get(c.name);
    switch (op.verb) {
      case 'add':
      case 'create':
        if (existing) {
          if (op.verb === 'create') fail(op, 'File exists');
          if (existing.hook !== c.hook || existing.type !== c.type || existing.prio !== c.prio) fail(op, 'Operation not supported');
          return handle;
        }
        t.chains.set(c.name, { ...c, policy: c.hook ? (c.policy ?? 'accept') : undefined });
        return handle;
      case 'delete':
        if (!existing) fail(op, 'No such file or directory');
        t.chains.delete(c.name);
        t.rules = t.rules.filter((r) => r.chain !== c.name);
        return handle;
      case 'flush':
        if (!existing) fail(op, 'No such file or directory');
        t.rules = t.rules.filter((r) => r.chain !== c.name);
        return handle;
    }
  }
  if ('rule' in o) {
    const r = o.rule;
    const t = tableOf(tables, op, r.family, r.table);
    if (!t.chains.has(r.chain)) fail(op, 'No such file or directory');
    if (op.verb === 'add' || op.verb === 'create') {
      for (const ref of mapRefs(r.expr)) if (!t.maps.has(ref)) fail(op, 'No such file or directory');
      t.rules.push({ ...structuredClone(r), handle });
      return handle + 1;
    }
    if (op.verb === 'delete') {
      const i = t.rules.findIndex((x) => x.chain === r.chain && x.handle === r.handle);
      if (i < 0) fail(op, 'No such file or directory');
      t.rules.splice(i, 1);
      return handle;
    }
    fail(op, 'Operation not supported');
  }
  if ('map' in o || 'set' in o) {
    const m: NftMap | NftSet = 'map' in o ? o.map : o.set;
    const valueType = 'map' in o ? o.map.map : undefined;
    const t = tableOf(tables, op, m.family, m.table);
    const existing = t.maps.get(m.name);
    switch (op.verb) {
      case 'add':
      case 'create':
        if (existing) {
          if (op.verb === 'create' || existing.type !== m.type || existing.map !== valueType) fail(op, 'File exists');
          return handle;
        }
        t.maps.set(m.name, { ...m, map: valueType, counter: !!m.counter, elements: new Map() });
        return handle;
      case 'delete':
        if (!existing) fail(op, 'No such file or directory');
        if (t.rules.some((r) => mapRefs(r.expr).includes(m.name))) fail(op, 'Device or resource busy');
        t.maps.delete(m.name);
        return handle;
      case 'flush':
        if (!existing) fail(op, 'No such file or directory');
        existing.elements.clear();
        return handle;
    }
  }
  if ('element' in o) {
    const el = o.element;
    const t = tableOf(tables, op, el.family, el.table);
    const m = t.maps.get(el.name);
    if (!m) fail(op, 'No such file or directory');
    if (!fits(m.type, el.key)) fail(op, `Invalid argument (key ${el.key} is not ${m.type})`);
    // The kernel stores binary addresses: any spelling names the same element.
    const k = normalizeIp(el.key);
    const existing = m.elements.get(k);
    switch (op.verb) {
      case 'add':
      case 'create': {
        if (m.map === undefined) {
          if (el.value !== undefined) fail(op, 'Invalid argument (a set element has no value)');
        } else if (el.value === undefined || !fits(m.map, el.value)) fail(op, `Invalid argument (value ${el.value} is not ${m.map})`);
        const value = el.value === undefined ? undefined : normalizeIp(el.value);
        if (existing) {
          // The kernel keeps an element's value: changing it needs delete + add.
          if (op.verb === 'create' || existing.value !== value) fail(op, 'File exists');
          return handle;
        }
        m.elements.set(k, value === undefined ? { packets: 0, bytes: 0 } : { value, packets: 0, bytes: 0 });
        return handle;
      }
      case 'delete':
        if (!existing) fail(op, 'No such file or directory');
        m.elements.delete(k);
        return handle;
      case 'flush':
        fail(op, 'Operation not supported');
    }
  }
  throw new Error(`unknown object ${JSON.stringify(o)}`);
}

function fits(type: string, value: string): boolean {
  return type === 'ipv4_addr' ? isIPv4(value) : type === 'ipv6_addr' ? isIPv6(value) && !value.includes('%') : false;
}

/** Names of maps a rule's statements refer to ("@name"). */
function mapRefs(expr: unknown): string[] {
  const out: string[] = [];
  JSON.stringify(expr, (_k, v: unknown) => {
    if (typeof v === 'string' && v.startsWith('@')) out.push(v.slice(1));
    return v;
  });
  return out;
}
