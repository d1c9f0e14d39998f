// One operation of a transaction applied to the fake kernel's tables, or
// refused the way nft (evaluating the batch) or the kernel (applying it) would.
import { describeObject } from '../../src/kernel/nft/json.js';
import type { Chain, Operation, Rule, TableFamily } from '../../src/kernel/nft/types.js';
import { canonical } from './nft-addresses.js';
import { EBUSY, EEXIST, EINVAL, ENOENT, EOPNOTSUPP, fail } from './nft-errors.js';
import { checkRule, jumpTargets, mapRefs } from './nft-rules.js';
import { tableKey, type FakeTable } from './nft-tables.js';

/** Applies one operation to `tables` (a copy), returning the next rule handle; throws what nft or the kernel would refuse. */
export function apply(tables: Map<string, FakeTable>, op: Operation, handle: number): number {
  const o = op.object;
  const what = `${op.verb} ${describeObject(o)}`;
  const tableOf = (family: TableFamily, name: string): FakeTable =>
    tables.get(tableKey(family, name)) ?? fail(what, 'not-found', ENOENT, 'nft');
  if ('table' in o) {
    const k = tableKey(o.table.family, o.table.name);
    const t = tables.get(k);
    switch (op.verb) {
      case 'add':
      case 'create':
        if (t && op.verb === 'create') fail(what, 'exists', EEXIST, 'kernel');
        if (!t) tables.set(k, { family: o.table.family, name: o.table.name, chains: new Map(), rules: [], maps: new Map() });
        return handle;
      case 'delete':
        if (!t) fail(what, 'not-found', ENOENT, 'kernel');
        tables.delete(k);
        return handle;
      case 'flush':
        // nft 1.0.6 flushes a table's rules; its maps and sets keep their elements.
        if (!t) fail(what, 'not-found', ENOENT, 'kernel');
        t.rules = [];
        return handle;
    }
  }
  if ('chain' in o) {
    const c = o.chain;
    const t = tableOf(c.family, c.table);
    const existing = t.chains.get(c.name);
    switch (op.verb) {
      case 'add':
      case 'create': {
        // What is sent (encodeBatch): the name alone for a regular chain; type, hook, priority and policy (accept unless given) for a base chain.
        const want: Chain = { family: c.family, table: c.table, name: c.name };
        if (c.hook !== undefined) {
          if (c.type === undefined || typeof c.prio !== 'number') fail(what, 'invalid', 'a base chain needs a type and a priority', 'nft');
          Object.assign(want, { type: c.type, hook: c.hook, prio: c.prio, policy: c.policy ?? 'accept' });
        }
        if (existing) {
          if (op.verb === 'create') fail(what, 'exists', EEXIST, 'kernel');
          if (want.hook === undefined) return handle;
          if (existing.hook === undefined || existing.hook !== want.hook || existing.prio !== want.prio)
            fail(what, 'invalid', EOPNOTSUPP, 'kernel');
          if (existing.type !== want.type) fail(what, 'exists', EEXIST, 'kernel');
          // The one thing "add chain" changes on an existing base chain.
          existing.policy = want.policy;
          return handle;
        }
        if (want.type === 'nat' && want.hook === 'forward') fail(what, 'invalid', EOPNOTSUPP, 'kernel');
        if (want.type === 'route' && want.hook !== 'output') fail(what, 'invalid', EOPNOTSUPP, 'kernel');
        t.chains.set(c.name, want);
        return handle;
      }
      case 'delete':
        if (!existing) fail(what, 'not-found', ENOENT, 'kernel');
        // Its own rules go with it; a jump from elsewhere holds it.
        if (t.rules.some((r) => r.chain !== c.name && jumpTargets(r).includes(c.name))) fail(what, 'busy', EBUSY, 'kernel');
        t.chains.delete(c.name);
        t.rules = t.rules.filter((r) => r.chain !== c.name);
        return handle;
      case 'flush':
        if (!existing) fail(what, 'not-found', ENOENT, 'kernel');
        t.rules = t.rules.filter((r) => r.chain !== c.name);
        return handle;
    }
  }
  if ('rule' in o) {
    const r = o.rule;
    const t = tableOf(r.family, r.table);
    if (op.verb === 'add' || op.verb === 'create') {
      const expr = checkRule(t, r.expr, what);
      if (!t.chains.has(r.chain)) fail(what, 'not-found', ENOENT, 'kernel');
      const rule: Rule = { family: r.family, table: r.table, chain: r.chain, expr, handle };
      if (r.comment !== undefined) rule.comment = r.comment;
      t.rules.push(rule);
      return handle + 1;
    }
    if (!t.chains.has(r.chain)) fail(what, 'not-found', ENOENT, 'kernel');
    if (op.verb === 'delete') {
      const i = t.rules.findIndex((x) => x.chain === r.chain && x.handle === r.handle);
      if (i < 0) fail(what, 'not-found', ENOENT, 'kernel');
      t.rules.splice(i, 1);
      return handle;
    }
    fail(what, 'invalid', EOPNOTSUPP, 'nft');
  }
  if ('map' in o || 'set' in o) {
    const m = 'map' in o ? o.map : o.set;
    const valueType = 'map' in o ? o.map.map : undefined;
    const t = tableOf(m.family, m.table);
    const existing = t.maps.get(m.name);
    switch (op.verb) {
      case 'add':
      case 'create':
        if (existing) {
          const same = existing.type === m.type && existing.map === valueType && existing.counter === !!m.counter;
          if (op.verb === 'create' || !same) fail(what, 'exists', EEXIST, 'kernel');
          return handle;
        }
        t.maps.set(m.name, {
          family: m.family,
          table: m.table,
          name: m.name,
          type: m.type,
          map: valueType,
          counter: !!m.counter,
          elements: new Map(),
        });
        return handle;
      case 'delete':
        if (!existing) fail(what, 'not-found', ENOENT, 'kernel');
        if (t.rules.some((r) => mapRefs(r.expr).includes(m.name))) fail(what, 'busy', EBUSY, 'kernel');
        t.maps.delete(m.name);
        return handle;
      case 'flush':
        if (!existing) fail(what, 'not-found', ENOENT, 'nft');
        existing.elements.clear();
        return handle;
    }
  }
  if ('element' in o) {
    const el = o.element;
    const t = tableOf(el.family, el.table);
    const m = t.maps.get(el.name) ?? fail(what, 'not-found', ENOENT, 'nft');
    if (op.verb === 'flush') fail(what, 'invalid', EOPNOTSUPP, 'nft');
    // The kernel stores binary addresses: any spelling names the same element.
    const k = canonical(m.type, el.key) ?? fail(what, 'invalid', `Could not resolve hostname (key ${el.key} is not ${m.type})`, 'nft');
    const existing = m.elements.get(k);
    if (op.verb === 'delete') {
      if (!existing) fail(what, 'not-found', ENOENT, 'kernel');
      m.elements.delete(k);
      return handle;
    }
    let value: string | undefined;
    if (m.map === undefined) {
      if (el.value !== undefined) fail(what, 'invalid', 'set is not a map (Invalid argument)', 'nft');
    } else if (el.value !== undefined) {
      value = canonical(m.map, el.value) ?? fail(what, 'invalid', `Could not resolve hostname (value ${el.value} is not ${m.map})`, 'nft');
    } else fail(what, 'invalid', `${EINVAL} (a map element needs a value)`, 'kernel');
    if (existing) {
      // The kernel keeps an element's value: changing it needs delete + add.
      if (op.verb === 'create' || existing.value !== value) fail(what, 'exists', EEXIST, 'kernel');
      return handle;
    }
    m.elements.set(k, value === undefined ? { packets: 0, bytes: 0 } : { value, packets: 0, bytes: 0 });
    return handle;
  }
  throw new Error(`unknown object ${JSON.stringify(o)}`);
}
