// In-memory nftables for unit tests. It enforces the semantics of nft 1.0.6
// and the kernel, as measured and held to them by the contract test
// (test/kernel/nft-contract.test.ts): nft evaluates the whole batch first
// (addresses, datatypes, references to tables, maps and sets) and refuses it
// before the kernel sees any of it; the kernel then applies the operations
// in order to a copy, and the first error discards the whole copy. Errors
// carry the kind LibNft reads from libnftables' answer (NftErrorKind). Rule
// statements are checked and listed the way nft lists them back, for the
// vocabulary addrmap uses (match, counter, verdicts, jump/goto, dnat/snat);
// anything else is refused as invalid. Rule handles increase in creation
// order, as the kernel's do, but their values are the fake's own.
import { describeObject } from '../../src/kernel/nft/json.js';
import {
  assertOwnTable,
  NftError,
  type Chain,
  type Element,
  type KeyType,
  type NftErrorKind,
  type NftInfo,
  type NftInterface,
  type Operation,
  type Rule,
  type Table,
  type TableFamily,
  type TableListing,
  Transaction,
} from '../../src/kernel/nft/types.js';

/** A map, or a set when `map` is absent: the kernel keeps both in one namespace. */
interface FakeMap {
  family: TableFamily;
  table: string;
  name: string;
  type: KeyType;
  map?: KeyType;
  counter: boolean;
  elements: Map<string, { value?: string; packets: number; bytes: number }>;
}

interface FakeTable {
  family: TableFamily;
  name: string;
  chains: Map<string, Chain>;
  rules: Rule[];
  maps: Map<string, FakeMap>;
}

/**
 * Who refuses: nft, evaluating the batch against its cache before sending
 * it (its complaint wins wherever it stands in the batch), or the kernel,
 * applying it in order (the first refusal is reported).
 */
type Stage = 'nft' | 'kernel';
const stages = new WeakMap<NftError, Stage>();

const FAILED = 'nft transaction failed, nothing was changed';

export class FakeNft implements NftInterface {
  private tables = new Map<string, FakeTable>();
  private nextHandle = 1;
  private failures: { message: string; kind: NftErrorKind }[] = [];
  /** Every transaction that was run, committed or not, for assertions. */
  readonly history: { tx: Transaction; committed: boolean }[] = [];

  /** A fake kernel, seen through a client of `table` (addrmap's own by default). */
  constructor(readonly table: Table = { family: 'inet', name: 'addrmap' }) {}

  /** The next run() fails as the kernel would, with this message (and kind). */
  failNextRun(message = 'Operation not permitted', kind: NftErrorKind = 'other'): void {
    this.failures.push({ message, kind });
  }

  async ready(): Promise<NftInfo> {
    return { version: 'fake' };
  }

  async run(tx: Transaction): Promise<void> {
    assertOwnTable(this.table, tx);
    return this.runAnyTable(tx);
  }

  /** Another tool's transaction, on any table (a firewall beside addrmap's, say). */
  async runAnyTable(tx: Transaction): Promise<void> {
    const injected = this.failures.shift();
    if (injected !== undefined) {
      this.history.push({ tx, committed: false });
      throw new NftError(FAILED, injected.message, injected.kind);
    }
    let result: { tables: Map<string, FakeTable>; handle: number };
    try {
      result = this.evaluate(tx);
    } catch (e) {
      this.history.push({ tx, committed: false });
      throw e;
    }
    this.tables = result.tables;
    this.nextHandle = result.handle;
    this.history.push({ tx, committed: true });
  }

  async check(tx: Transaction): Promise<void> {
    assertOwnTable(this.table, tx);
    this.evaluate(tx);
  }

  async list(): Promise<TableListing | null> {
    return this.listTable(this.table.family, this.table.name);
  }

  async listChains(): Promise<Chain[]> {
    return (await this.list())?.chains ?? [];
  }

  /** What the kernel would hold after the transaction; throws what nft and the kernel would refuse. */
  private evaluate(tx: Transaction): { tables: Map<string, FakeTable>; handle: number } {
    let handle = this.nextHandle;
    // nft's pass: what the kernel would refuse is skipped here. None of its
    // checks looks at elements, so the copy leaves them out.
    const evaluated = cloneTables(this.tables, false);
    let h = handle;
    for (const op of tx.operations) {
      try {
        h = apply(evaluated, op, h);
      } catch (e) {
        if (!(e instanceof NftError) || stages.get(e) !== 'kernel') throw e;
      }
    }
    // The kernel's pass, then the checks it makes at commit.
    const work = cloneTables(this.tables, true);
    for (const op of tx.operations) handle = apply(work, op, handle);
    for (const t of work.values()) validateTable(t);
    return { tables: work, handle };
  }

  /** Any table with its contents, as `nft list table` shows it: for assertions on the whole fake kernel. */
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
      const rest = { family: m.family, table: m.table, name: m.name, type: m.type };
      if (m.map === undefined) sets.push({ ...rest, counter: m.counter, elements: elementsOf(m) });
      else maps.push({ ...rest, map: m.map, counter: m.counter, elements: elementsOf(m) });
    }
    // The kernel lists rules chain by chain, each chain's in order.
    const rules = [...t.chains.keys()].flatMap((c) => t.rules.filter((r) => r.chain === c));
    const listing: TableListing = {
      table: { family, name },
      chains: [...t.chains.values()].map((c) => ({ ...c })),
      rules: rules.map((r) => structuredClone(r)),
      maps,
    };
    if (sets.length) listing.sets = sets;
    return listing;
  }

  /** Simulates traffic through a mapped address (a map's or a set's element), for counter assertions. */
  hit(family: TableFamily, table: string, map: string, address: string, packets = 1, bytes = 60): void {
    const m = this.tables.get(key(family, table))?.maps.get(map);
    const k = m && canonical(m.type, address);
    const e = k ? m.elements.get(k) : undefined;
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

/** Throws what nft prints for a JSON batch (which nftErrorKind reads as `kind`), naming the operation. */
function fail(what: string, kind: NftErrorKind, reason: string, stage: Stage): never {
  const prefix = stage === 'kernel' ? 'Could not process rule: ' : '';
  const e = new NftError(FAILED, `internal:0:0-0: Error: ${prefix}${reason}: ${what}`, kind);
  stages.set(e, stage);
  throw e;
}

const ENOENT = 'No such file or directory';
const EEXIST = 'File exists';
const EBUSY = 'Device or resource busy';
const EOPNOTSUPP = 'Operation not supported';
const EINVAL = 'Invalid argument';

function cloneTables(src: Map<string, FakeTable>, withElements: boolean): Map<string, FakeTable> {
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

function apply(tables: Map<string, FakeTable>, op: Operation, handle: number): number {
  const o = op.object;
  const what = `${op.verb} ${describeObject(o)}`;
  const tableOf = (family: TableFamily, name: string): FakeTable => tables.get(key(family, name)) ?? fail(what, 'not-found', ENOENT, 'nft');
  if ('table' in o) {
    const k = key(o.table.family, o.table.name);
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

// ---- Rule statements: checked, and turned into what nft lists back ----

/** What a match's left-hand side yields, which decides what its right-hand side may be. */
type ExprType = KeyType | 'ct_status' | 'ct_state' | 'ct_dir' | 'proto' | 'ifname' | 'integer';

const SYMBOLS: Partial<Record<ExprType, string[]>> = {
  ct_status: ['expected', 'seen-reply', 'assured', 'confirmed', 'snat', 'dnat', 'dying'],
  ct_state: ['invalid', 'established', 'related', 'new', 'untracked'],
  ct_dir: ['original', 'reply'],
  proto: ['tcp', 'udp', 'icmp', 'ipv6-icmp', 'icmpv6', 'sctp', 'udplite'],
};

/** Hooks where a statement works, reached from a base chain; nat statements need a nat chain. */
const HOOKS: Record<string, { hooks: string[]; nat: boolean }> = {
  dnat: { hooks: ['prerouting', 'output'], nat: true },
  snat: { hooks: ['postrouting', 'input'], nat: true },
  socket: { hooks: ['prerouting', 'input', 'output'], nat: false },
};

/** The kernel's jump stack (NFT_JUMP_STACK_SIZE). */
const MAX_DEPTH = 16;

/** The only key of a one-key object, with its value. */
function only(v: unknown): [string, unknown] | null {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const entries = Object.entries(v);
  return entries.length === 1 ? entries[0]! : null;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function checkRule(t: FakeTable, statements: unknown, what: string): unknown[] {
  const invalid = (why: string): never => fail(what, 'invalid', why, 'nft');
  const expr: unknown[] = Array.isArray(statements) ? statements : invalid('a rule is an array of statements');

  const typeOf = (e: unknown): ExprType => {
    const [k, v] = only(e) ?? invalid(`unknown expression ${JSON.stringify(e)}`);
    if (!isObject(v)) return invalid(`unknown expression ${JSON.stringify(e)}`);
    if (k === 'payload') {
      if ((v.protocol === 'ip' || v.protocol === 'ip6') && (v.field === 'saddr' || v.field === 'daddr'))
        return v.protocol === 'ip' ? 'ipv4_addr' : 'ipv6_addr';
      if ((v.protocol === 'tcp' || v.protocol === 'udp') && (v.field === 'sport' || v.field === 'dport')) return 'integer';
    } else if (k === 'ct') {
      if (v.key === 'status') return 'ct_status';
      if (v.key === 'state') return 'ct_state';
      if (v.key === 'direction') return 'ct_dir';
      const addr = /^(ip6?) (saddr|daddr)$/.exec(String(v.key));
      if (addr && (v.dir === 'original' || v.dir === 'reply')) return addr[1] === 'ip' ? 'ipv4_addr' : 'ipv6_addr';
    } else if (k === 'meta') {
      if (v.key === 'l4proto') return 'proto';
      if (v.key === 'iifname' || v.key === 'oifname') return 'ifname';
    } else if (k === 'socket' && v.key === 'transparent') return 'integer';
    return invalid(`unknown expression ${JSON.stringify(e)}`);
  };

  const lookup = (name: string, type: ExprType, asMap: boolean): string => {
    const m = t.maps.get(name.slice(1)) ?? fail(what, 'not-found', ENOENT, 'nft');
    if (asMap && m.map === undefined) invalid(`${name} is not a map`);
    if (m.type !== type) invalid(`datatype mismatch, expected ${type}, expression has type ${m.type}`);
    return name;
  };

  const address = (type: KeyType, v: unknown): string =>
    canonical(type, v) ?? invalid(`Could not resolve hostname: ${JSON.stringify(v)} is not ${type}`);

  const right = (type: ExprType, v: unknown, inSet = false): unknown => {
    if (typeof v === 'string' && v.startsWith('@') && !inSet) {
      // A named set, or a map used as one (kernels from 6.12 take that).
      return lookup(v, type, false);
    }
    if (isObject(v) && 'set' in v && !inSet) {
      if (!Array.isArray(v.set) || v.set.length === 0) invalid('an anonymous set lists its elements');
      return { set: (v.set as unknown[]).map((x) => right(type, x, true)) };
    }
    if (type === 'ipv4_addr' || type === 'ipv6_addr') {
      if (isObject(v) && 'prefix' in v) {
        const p = v.prefix as { addr?: unknown; len?: unknown };
        const bits = type === 'ipv4_addr' ? 32 : 128;
        const len = typeof p.len === 'number' && Number.isInteger(p.len) && p.len >= 0 && p.len <= bits ? p.len : -1;
        if (len < 0) invalid(`Prefix length ${String(p.len)} is invalid for type of ${bits} bits width`);
        const bytes = toBytes(type, p.addr) ?? invalid(`Could not resolve hostname: ${JSON.stringify(p.addr)} is not ${type}`);
        // nft sends the network (host bits cleared) and lists a full-length prefix as the address.
        const net = bytes.map((b, i) => (i * 8 >= len ? 0 : i * 8 + 8 <= len ? b : b & (0xff << (8 - (len - i * 8)))));
        return len === bits ? fromBytes(net) : { prefix: { addr: fromBytes(net), len } };
      }
      return address(type, v);
    }
    const symbols = SYMBOLS[type];
    if (typeof v === 'string' && symbols?.includes(v)) return v;
    if (type === 'ifname' && typeof v === 'string' && v.length > 0 && v.length < 16) return v;
    if (
      (type === 'proto' || type === 'integer') &&
      typeof v === 'number' &&
      Number.isInteger(v) &&
      v >= 0 &&
      (type === 'integer' || v < 256)
    )
      return v;
    return invalid(`${JSON.stringify(v)} is not a valid ${type}`);
  };

  /** A nat statement's address: literal, looked up in a map, or the bitwise expression prefix rules use. */
  const natAddr = (type: KeyType, v: unknown): unknown => {
    if (typeof v === 'string') return address(type, v);
    const [k, inner] = only(v) ?? invalid(`unknown nat address ${JSON.stringify(v)}`);
    if (k === 'map' && isObject(inner) && typeof inner.data === 'string' && inner.data.startsWith('@')) {
      const m = t.maps.get(inner.data.slice(1)) ?? fail(what, 'not-found', ENOENT, 'nft');
      if (m.map === undefined) invalid(`${inner.data} is not a map`);
      const keyType = typeOf(inner.key);
      if (keyType !== m.type) invalid(`datatype mismatch, map expects ${m.type}, mapping expression has type ${keyType}`);
      if (m.map !== type) invalid(`datatype mismatch, expected ${type}, map has type ${m.map}`);
      return { map: { key: structuredClone(inner.key), data: inner.data } };
    }
    if ((k === '|' || k === '&') && Array.isArray(inner) && inner.length === 2) {
      const operand = (x: unknown): unknown => {
        if (typeof x === 'string') return address(type, x);
        const [ok] = only(x) ?? invalid(`unknown operand ${JSON.stringify(x)}`);
        if (ok === '|' || ok === '&') return natAddr(type, x);
        if (typeOf(x) !== type) invalid(`datatype mismatch, expected ${type}`);
        return structuredClone(x);
      };
      return { [k]: inner.map(operand) };
    }
    return invalid(`unknown nat address ${JSON.stringify(v)}`);
  };

  // The kernel's checks come after all of nft's, which see the whole rule first.
  const targets: string[] = [];
  const out = expr.map((stmt: unknown): unknown => {
    const [k, v] = only(stmt) ?? invalid(`unknown statement ${JSON.stringify(stmt)}`);
    switch (k) {
      case 'counter':
        // nft lists a new counter with its values.
        if (v === null) return { counter: { packets: 0, bytes: 0 } };
        if (isObject(v) && typeof v.packets === 'number' && typeof v.bytes === 'number')
          return { counter: { packets: v.packets, bytes: v.bytes } };
        return invalid('a counter is null or has packets and bytes');
      case 'accept':
      case 'drop':
      case 'return':
      case 'continue':
        if (v !== null) invalid(`${k} takes no argument`);
        return { [k]: null };
      case 'jump':
      case 'goto': {
        const target = isObject(v) && typeof v.target === 'string' ? v.target : invalid(`${k} needs a target`);
        targets.push(target);
        return { [k]: { target } };
      }
      case 'match': {
        if (!isObject(v) || !['==', '!=', 'in'].includes(String(v.op))) return invalid('a match has op, left and right');
        return { match: { op: v.op, left: structuredClone(v.left), right: right(typeOf(v.left), v.right) } };
      }
      case 'dnat':
      case 'snat': {
        if (!isObject(v) || Object.keys(v).some((x) => x !== 'family' && x !== 'addr')) return invalid(`unknown ${k} arguments`);
        const family = v.family ?? (t.family === 'inet' ? undefined : t.family);
        if (family !== 'ip' && family !== 'ip6') return invalid('ip or ip6 must be specified with address for inet tables.');
        return { [k]: { family, addr: natAddr(family === 'ip' ? 'ipv4_addr' : 'ipv6_addr', v.addr) } };
      }
      default:
        return invalid(`Unknown statement object '${k}'.`);
    }
  });
  for (const target of targets) {
    const chain = t.chains.get(target) ?? fail(what, 'not-found', ENOENT, 'kernel');
    if (chain.hook !== undefined) fail(what, 'invalid', EOPNOTSUPP, 'kernel');
  }
  return out;
}

/**
 * The checks the kernel makes of a table at commit: no chain reaches itself
 * or nests deeper than the jump stack, and every hook-bound statement is only
 * reached from base chains whose hook (and type) it works in.
 */
function validateTable(t: FakeTable): void {
  const what = `table ${t.family} ${t.name}`;
  const rulesOf = (chain: string) => t.rules.filter((r) => r.chain === chain);
  const walk = (chain: string, base: Chain | null, path: string[]): void => {
    if (path.length > MAX_DEPTH) fail(what, 'invalid', 'Too many links', 'kernel');
    for (const r of rulesOf(chain)) {
      for (const stmt of r.expr) {
        const [k, v] = only(stmt) ?? ['', null];
        const bound = Object.hasOwn(HOOKS, k)
          ? HOOKS[k]
          : k === 'match' && isObject(v) && isObject(v.left) && 'socket' in v.left
            ? HOOKS.socket
            : undefined;
        if (base && bound && (!bound.hooks.includes(base.hook!) || (bound.nat && base.type !== 'nat')))
          fail(`rule in chain ${t.family} ${t.name} ${chain}`, 'invalid', EOPNOTSUPP, 'kernel');
      }
      for (const target of jumpTargets(r)) {
        if (path.includes(target)) fail(what, 'invalid', 'Too many links', 'kernel');
        walk(target, base, [...path, target]);
      }
    }
  };
  for (const c of t.chains.values()) walk(c.name, c.hook === undefined ? null : c, [c.name]);
}

/** Chains a rule jumps or goes to. */
function jumpTargets(r: Rule): string[] {
  const out: string[] = [];
  for (const stmt of r.expr) {
    const [k, v] = only(stmt) ?? ['', null];
    if ((k === 'jump' || k === 'goto') && isObject(v) && typeof v.target === 'string') out.push(v.target);
  }
  return out;
}

/** Names of maps and sets a rule's statements refer to ("@name"). */
function mapRefs(expr: unknown): string[] {
  const out: string[] = [];
  JSON.stringify(expr, (_k, v: unknown) => {
    if (typeof v === 'string' && v.startsWith('@')) out.push(v.slice(1));
    return v;
  });
  return out;
}

// ---- Addresses: the fake's own reading, as nft's (getaddrinfo, inet_ntop) ----
// Its own, not the code under test's (src/net/address.ts), so a bug there
// cannot hide in the fake. Names nft would resolve (host names; zone ids,
// which nft takes only for an interface that exists, then drops) are refused:
// the fake has no resolver and no interfaces.

/** An address as nft lists it, or null where nft would not take the text as one of this type. */
function canonical(type: KeyType, text: unknown): string | null {
  const bytes = toBytes(type, text);
  return bytes && fromBytes(bytes);
}

/** The 4 or 16 bytes of an address: IPv4 in any form inet_aton takes ("10.1", "010.0.0.1", "0x0a.0.0.1"), IPv6 as inet_pton does. */
function toBytes(type: KeyType, text: unknown): number[] | null {
  if (typeof text !== 'string') return null;
  return type === 'ipv4_addr' ? bytes4(text) : bytes6(text);
}

function bytes4(s: string): number[] | null {
  const parts = s.split('.');
  if (parts.length > 4) return null;
  const nums: number[] = [];
  for (const p of parts) {
    const m = /^(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))$/.exec(p);
    if (!m) return null;
    nums.push(m[1] !== undefined ? parseInt(m[1], 16) : m[2] !== undefined ? parseInt(m[2], 8) : parseInt(m[3]!, 10));
  }
  // The last part fills the bytes the others leave.
  const last = nums.pop()!;
  const room = 4 - nums.length;
  if (nums.some((n) => n > 255) || last >= 2 ** (8 * room)) return null;
  for (let i = room - 1; i >= 0; i--) nums.push(Math.floor(last / 2 ** (8 * i)) % 256);
  return nums;
}

const DOTTED_QUAD =
  /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

function bytes6(s: string): number[] | null {
  if (!/^[0-9a-fA-F:.]+$/.test(s)) return null;
  const gap = s.indexOf('::');
  if (gap !== -1 && s.indexOf('::', gap + 1) !== -1) return null;
  // Groups of one side of "::"; a dotted quad may end the address.
  const side = (x: string, last: boolean): number[] | null => {
    if (x === '') return [];
    const pieces = x.split(':');
    const out: number[] = [];
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i]!;
      const quad = last && i === pieces.length - 1 ? DOTTED_QUAD.exec(p) : null;
      if (/^[0-9a-fA-F]{1,4}$/.test(p)) out.push(parseInt(p, 16));
      else if (quad) out.push(Number(quad[1]) * 256 + Number(quad[2]), Number(quad[3]) * 256 + Number(quad[4]));
      else return null;
    }
    return out;
  };
  let groups: number[] | null;
  if (gap === -1) {
    groups = side(s, true);
    if (groups?.length !== 8) return null;
  } else {
    const head = side(s.slice(0, gap), false);
    const tail = side(s.slice(gap + 2), true);
    if (!head || !tail || head.length + tail.length > 7) return null;
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

/** inet_ntop's text: dotted quad; for IPv6 the first longest run of two or more zero groups as "::", IPv4-mapped and -compatible forms dotted. */
function fromBytes(b: number[]): string {
  if (b.length === 4) return b.join('.');
  const g = Array.from({ length: 8 }, (_, i) => b[2 * i]! * 256 + b[2 * i + 1]!);
  let best = { base: -1, len: 0 };
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > best.len) best = { base: i, len: j - i };
    i = j;
  }
  if (best.len < 2) best = { base: -1, len: 0 };
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (best.base !== -1 && i >= best.base && i < best.base + best.len) {
      if (i === best.base) out += ':';
      continue;
    }
    if (i !== 0) out += ':';
    if (i === 6 && best.base === 0 && (best.len === 6 || (best.len === 5 && g[5] === 0xffff))) {
      out += b.slice(12).join('.');
      return out;
    }
    out += g[i]!.toString(16);
  }
  if (best.base !== -1 && best.base + best.len === 8) out += ':';
  return out;
}
