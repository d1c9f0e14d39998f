// Translation between Transactions/listings and libnftables JSON documents.
// Kept apart from process handling so unit tests can check the exact batch
// that would be sent to the kernel.
import type { Element, NftObject, Operation, TableListing, Transaction, Chain, Rule, NftMap, NftSet, Table } from './types.js';

type Json = Record<string, unknown>;

export function encodeBatch(tx: Transaction): { nftables: Json[] } {
  const commands: Json[] = [{ metainfo: { json_schema_version: 1 } }];
  // Consecutive element operations on the same map with the same verb travel
  // as one command; with 100k elements this keeps the batch small and fast to
  // parse. Order is kept, so a delete+add retarget stays delete then add.
  let pending: { verb: string; el: Element; elems: unknown[] } | null = null;
  const flush = () => {
    if (!pending) return;
    const { verb, el, elems } = pending;
    commands.push({ [verb]: { element: { family: el.family, table: el.table, name: el.name, elem: elems } } });
    pending = null;
  };
  for (const op of tx.operations) {
    if ('element' in op.object) {
      const el = op.object.element;
      const item = op.verb === 'delete' || el.value === undefined ? el.key : [el.key, el.value];
      if (
        pending &&
        pending.verb === op.verb &&
        pending.el.name === el.name &&
        pending.el.table === el.table &&
        pending.el.family === el.family
      ) {
        pending.elems.push(item);
      } else {
        flush();
        pending = { verb: op.verb, el, elems: [item] };
      }
      continue;
    }
    flush();
    commands.push({ [op.verb]: encodeObject(op) });
  }
  flush();
  return { nftables: commands };
}

function encodeObject(op: Operation): Json {
  const o = op.object;
  if ('table' in o) return { table: { family: o.table.family, name: o.table.name } };
  if ('chain' in o) {
    const c = o.chain;
    // Deleting names the chain only; adding a base chain carries its hook.
    if (op.verb === 'delete' || c.hook === undefined) return { chain: { family: c.family, table: c.table, name: c.name } };
    return {
      chain: { family: c.family, table: c.table, name: c.name, type: c.type, hook: c.hook, prio: c.prio, policy: c.policy ?? 'accept' },
    };
  }
  if ('rule' in o) {
    const r = o.rule;
    const rule: Json = { family: r.family, table: r.table, chain: r.chain };
    if (op.verb === 'delete') return { rule: { ...rule, handle: r.handle } };
    if (r.comment !== undefined) rule.comment = r.comment;
    rule.expr = r.expr;
    return { rule };
  }
  if ('map' in o) {
    const m = o.map;
    const map: Json = { family: m.family, table: m.table, name: m.name };
    if (op.verb === 'add' || op.verb === 'create') {
      map.type = m.type;
      map.map = m.map;
      if (m.counter) map.stmt = [{ counter: null }];
    }
    return { map };
  }
  if ('set' in o) {
    const m = o.set;
    const set: Json = { family: m.family, table: m.table, name: m.name };
    if (op.verb === 'add' || op.verb === 'create') {
      set.type = m.type;
      if (m.counter) set.stmt = [{ counter: null }];
    }
    return { set };
  }
  throw new Error(`cannot encode ${JSON.stringify(o)}`);
}

/** Parses a JSON `list table` answer. */
export function decodeListing(doc: unknown): TableListing | null {
  const items = (doc as { nftables?: Json[] })?.nftables;
  if (!Array.isArray(items)) throw new Error('nft output has no "nftables" array');
  let table: Table | null = null;
  const chains: Chain[] = [];
  const rules: Rule[] = [];
  const maps: TableListing['maps'] = [];
  const sets: NonNullable<TableListing['sets']> = [];
  for (const item of items) {
    if ('table' in item) {
      const t = item.table as Json;
      table = { family: t.family as Table['family'], name: String(t.name) };
    } else if ('chain' in item) {
      chains.push(decodeChain(item.chain as Json));
    } else if ('rule' in item) {
      // nft lists a rule's comment as a string.
      const r = item.rule as Json & { comment?: string };
      const rule: Rule = {
        family: r.family as Rule['family'],
        table: String(r.table),
        chain: String(r.chain),
        // nft leaves "expr" out of a rule without statements.
        expr: (r.expr as unknown[] | undefined) ?? [],
        handle: Number(r.handle),
      };
      if (r.comment !== undefined) rule.comment = String(r.comment);
      rules.push(rule);
    } else if ('map' in item) {
      const m = item.map as Json;
      const ref = { family: m.family as NftMap['family'], table: String(m.table), name: String(m.name) };
      const stmts = (m.stmt as Json[] | undefined) ?? [];
      const elements: Element[] = ((m.elem as unknown[] | undefined) ?? []).map((e) => decodeElement(ref, e));
      maps.push({
        ...ref,
        type: m.type as NftMap['type'],
        map: m.map as NftMap['map'],
        counter: stmts.some((s) => 'counter' in s),
        elements,
      });
    } else if ('set' in item) {
      const m = item.set as Json;
      const ref = { family: m.family as NftSet['family'], table: String(m.table), name: String(m.name) };
      const stmts = (m.stmt as Json[] | undefined) ?? [];
      const elements: Element[] = ((m.elem as unknown[] | undefined) ?? []).map((e) => decodeElement(ref, e));
      sets.push({ ...ref, type: m.type as NftSet['type'], counter: stmts.some((s) => 'counter' in s), elements });
    }
  }
  if (!table) return null;
  return sets.length ? { table, chains, rules, maps, sets } : { table, chains, rules, maps };
}

/** Parses a JSON `list chains` answer. */
export function decodeChains(doc: unknown): Chain[] {
  const items = (doc as { nftables?: Json[] })?.nftables;
  if (!Array.isArray(items)) throw new Error('nft output has no "nftables" array');
  return items.filter((i) => 'chain' in i).map((i) => decodeChain(i.chain as Json));
}

function decodeChain(c: Json): Chain {
  const chain: Chain = { family: c.family as Chain['family'], table: String(c.table), name: String(c.name) };
  if (c.hook !== undefined) {
    chain.type = c.type as Chain['type'];
    chain.hook = c.hook as Chain['hook'];
    chain.prio = Number(c.prio);
    chain.policy = c.policy as Chain['policy'];
  }
  return chain;
}

function decodeElement(ref: { family: Element['family']; table: string; name: string }, raw: unknown): Element {
  // A map element is [key, value]; a key with per-element statements is
  // {"elem": {"val": key, "counter": {...}}}. The value is an address (a string).
  const [rawKey, value] = Array.isArray(raw) ? (raw as [unknown, string]) : [raw, undefined];
  const el: Element = { ...ref, key: '' };
  if (typeof rawKey === 'object' && rawKey !== null && 'elem' in rawKey) {
    const inner = (rawKey as { elem: Json }).elem;
    el.key = String(inner.val);
    if (inner.counter) el.counter = inner.counter as Element['counter'];
  } else {
    el.key = String(rawKey);
  }
  if (value !== undefined) el.value = String(value);
  return el;
}

export function describeObject(o: NftObject): string {
  if ('table' in o) return `table ${o.table.family} ${o.table.name}`;
  if ('chain' in o) return `chain ${o.chain.family} ${o.chain.table} ${o.chain.name}`;
  if ('rule' in o) return `rule in chain ${o.rule.family} ${o.rule.table} ${o.rule.chain}`;
  if ('map' in o) return `map ${o.map.family} ${o.map.table} ${o.map.name}`;
  if ('set' in o) return `set ${o.set.family} ${o.set.table} ${o.set.name}`;
  return `element ${o.element.key} of map ${o.element.family} ${o.element.table} ${o.element.name}`;
}
