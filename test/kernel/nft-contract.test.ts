// The fake proven against the kernel: every scenario runs the same sequence
// of transactions, failing ones included, through FakeNft and through LibNft
// (libnftables in-process, in a lab's network namespace: a netns worker holds
// it there), and after every step compares whether it failed, with which
// error kind, and the table's listing.
// Listings are compared whole, with only what the kernel decides on its own
// left out: the order of a map's elements, counter values (their presence is
// compared), rule handle values (their order is compared) and protocol names
// (nft prints names where /etc/protocols has them).
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  NftError,
  Transaction,
  type Chain,
  type NftInfo,
  type NftInterface,
  type NftObject,
  type Rule,
  type Table,
  type TableListing,
} from '../../src/kernel/nft/index.js';
import { FakeNft } from '../fakes/nft.js';
import { EMPTY_VIEW, planSync, viewOf } from '../../src/kernel/plan.js';
import { buildRuleset, FULL_RULESET, TABLE, type Ruleset } from '../../src/kernel/ruleset.js';
import type { DesiredMappings, PrefixMapping } from '../../src/desired/resolve.js';
import { Lab, ROOT } from '../support/lab.js';
import { NetnsWorker, WorkerError } from '../support/netns-worker.js';

/**
 * LibNft in the worker, seen as an NftInterface here: transactions travel as
 * their operations, and an NftError thrown there is an NftError here again,
 * with its message, detail and kind.
 */
class RemoteNft implements NftInterface {
  constructor(
    private readonly worker: NetnsWorker,
    readonly table: Table,
  ) {}
  ready = () => this.call<NftInfo>('ready', this.table);
  run = (tx: Transaction) => this.call<void>('run', this.table, tx.operations);
  check = (tx: Transaction) => this.call<void>('check', this.table, tx.operations);
  list = () => this.call<TableListing | null>('list', this.table);
  listChains = () => this.call<Chain[]>('listChains', this.table);

  private async call<T>(fn: string, ...args: unknown[]): Promise<T> {
    try {
      return await this.worker.call<T>(fn, ...args);
    } catch (e) {
      if (!(e instanceof WorkerError) || typeof e.kind !== 'string') throw e;
      const detail = typeof e.detail === 'string' ? e.detail : '';
      const message = detail && e.message.endsWith(`: ${detail}`) ? e.message.slice(0, -detail.length - 2) : e.message;
      throw new NftError(message, detail, e.kind as NftError['kind']);
    }
  }
}

let lab: Lab;
let worker: NetnsWorker;
let kernel: RemoteNft;

/** A fresh ruleset in the lab's namespace, by nft playing another tool. */
async function flushRuleset(): Promise<void> {
  const r = await lab.exec(lab.guest, 'nft', ['flush', 'ruleset']);
  if (r.code !== 0) throw new Error(`nft flush ruleset: ${r.stderr.trim()}`);
}

beforeAll(async () => {
  lab = await Lab.create({ peer: false });
  worker = await NetnsWorker.start(lab, lab.guest, join(ROOT, 'test/kernel/workers/libnft.ts'));
  kernel = new RemoteNft(worker, TABLE);
});

afterAll(async () => {
  await worker?.stop();
  await lab?.destroy();
});

// ---- Transactions, built the way the agent builds them ----

const ref = { family: 'inet', table: 'addrmap' } as const;
const SET_CAPS = buildRuleset({ count: 'set', selfGuard: 'set' });

interface Want {
  v6?: Record<string, string>;
  v4?: Record<string, string>;
  prefixes?: PrefixMapping[];
  self?: Record<string, string>;
}
const want = (w: Want): DesiredMappings => ({
  v4: new Map(Object.entries(w.v4 ?? {})),
  v6: new Map(Object.entries(w.v6 ?? {})),
  prefixes: w.prefixes ?? [],
  ...(w.self ? { self: new Map(Object.entries(w.self)) } : {}),
});
/** The whole table with these mappings, as the agent writes it when the table is missing or not its own. */
const full = (w: Want, rs: Ruleset = FULL_RULESET) => planSync(EMPTY_VIEW, want(w), true, rs).tx;
/** The agent's delta from what it pushed last to what it pushes now. */
const delta = (from: Want, to: Want, rs: Ruleset = FULL_RULESET) => planSync(viewOf(want(from)), want(to), false, rs).tx;
const el = (name: string, key: string, value?: string): NftObject => ({
  element: { ...ref, name, key, ...(value === undefined ? {} : { value }) },
});
const tx = (...ops: [verb: 'add' | 'create' | 'delete' | 'flush', object: NftObject][]) => {
  const t = new Transaction();
  for (const [verb, object] of ops) t[verb](object);
  return t;
};
const table: NftObject = { table: TABLE };
const chain = (c: Partial<Chain> & { name: string }): NftObject => ({ chain: { ...ref, ...c } });
const rule = (chainName: string, expr: unknown[], extra: Partial<Rule> = {}): NftObject => ({
  rule: { ...ref, chain: chainName, expr, ...extra },
});
const DNAT_OUTPUT = { name: 'dnat_output', type: 'nat', hook: 'output', prio: -100, policy: 'accept' } as const;
const d6 = { payload: { protocol: 'ip6', field: 'daddr' } };
const d4 = { payload: { protocol: 'ip', field: 'daddr' } };
const dnatVia = (family: 'ip' | 'ip6', key: unknown, map: string) => [{ dnat: { family, addr: { map: { key, data: `@${map}` } } } }];

const P6: PrefixMapping = { family: 6, from: 'fd00:5::', to: 'fdaa:5::', length: 64 };
const P6b: PrefixMapping = { family: 6, from: 'fd00:6::', to: 'fdaa:6::', length: 48 };
const P4: PrefixMapping = { family: 4, from: '10.5.0.0', to: '10.6.0.0', length: 16 };

const A: Want = { v6: { 'fd00::1': 'fdaa::1', 'fd00::2': 'fdaa::2' }, v4: { '10.0.0.1': '10.9.0.1' } };
const B: Want = { v6: { 'fd00::1': 'fdaa::1', 'fd00::2': 'fdbb::2', 'fd00::3': 'fdaa::3' }, v4: { '10.0.0.2': '10.9.0.2' } };

interface Step {
  name: string;
  /** Built from each side's own listing (rule handles differ between the two). */
  tx: Transaction | ((listing: TableListing | null) => Transaction);
  /** What the kernel is expected to answer: held here too, so a scenario means what its name says. */
  fails?: NftError['kind'];
}
interface Scenario {
  name: string;
  steps: Step[];
}

const handleOf = (l: TableListing | null, chainName: string, i = 0) => l?.rules.filter((r) => r.chain === chainName)[i]?.handle ?? -1;

const SCENARIOS: Scenario[] = [
  {
    name: 'the full table, element deltas and a retarget',
    steps: [
      { name: 'full table from nothing', tx: full(A) },
      { name: 'adds and removals', tx: delta(A, B) },
      { name: 'retarget: delete + add in one transaction', tx: delta(B, { ...B, v6: { ...B.v6, 'fd00::1': 'fdcc::1' } }) },
      { name: 'everything removed', tx: delta(B, {}) },
      { name: 'full table over the existing one', tx: full(B) },
      { name: 'the same full table again', tx: full(B) },
      { name: 'an empty transaction', tx: new Transaction() },
    ],
  },
  {
    name: 'count and self sets (kernels that cannot look a map up as a set)',
    steps: [
      { name: 'full table with self entries', tx: full({ ...A, self: { 'fd00::a': 'fd00::b' } }, SET_CAPS) },
      {
        name: 'delta: the count sets follow the maps, the self set the self maps',
        tx: delta({ ...A, self: { 'fd00::a': 'fd00::b' } }, { ...B, self: { 'fd00::c': 'fd00::d' } }, SET_CAPS),
      },
      { name: 'a key already in a set', tx: tx(['add', el('count6', 'fd00::3')]) },
      { name: 'creating a key already in a set', tx: tx(['create', el('count6', 'fd00::3')]), fails: 'exists' },
      { name: 'a set element with a value', tx: tx(['add', el('count6', 'fd00::9', 'fdaa::9')]), fails: 'invalid' },
      { name: 'deleting a key not in the set', tx: tx(['delete', el('count4', '10.0.0.99')]), fails: 'not-found' },
      { name: 'flush the table: rules go, elements of maps and sets stay', tx: tx(['flush', table]) },
      { name: 'rebuilt', tx: full(B, SET_CAPS) },
    ],
  },
  {
    name: 'prefix rules',
    steps: [
      { name: 'full table with prefixes', tx: full({ ...A, prefixes: [P6, P4] }) },
      { name: 'a prefix added (both prefix chains rewritten)', tx: delta({ ...A, prefixes: [P6, P4] }, { ...A, prefixes: [P6, P6b, P4] }) },
      {
        name: 'a prefix retargeted',
        tx: delta({ ...A, prefixes: [P6, P6b, P4] }, { ...A, prefixes: [{ ...P6, to: 'fdab:5::' }, P6b, P4] }),
      },
      {
        name: 'a prefix rule deleted by its handle',
        tx: (l) => tx(['delete', { rule: { ...ref, chain: 'prefix_dnat', expr: [], handle: handleOf(l, 'prefix_dnat', 1) } }]),
      },
      {
        name: 'a handle the chain does not hold',
        tx: (l) => tx(['delete', { rule: { ...ref, chain: 'prefix_count', expr: [], handle: handleOf(l, 'prefix_dnat') } }]),
        fails: 'not-found',
      },
      { name: 'all prefixes removed', tx: delta({ ...A, prefixes: [P6, P6b, P4] }, A) },
    ],
  },
  {
    name: 'flush table and delete table',
    steps: [
      { name: 'full table', tx: full(A) },
      { name: 'flush table', tx: tx(['flush', table]) },
      { name: 'a map no rule refers to any more can go', tx: tx(['delete', { map: FULL_RULESET.maps[1]! }]) },
      { name: 'a chain no rule jumps to any more can go', tx: tx(['delete', chain({ name: 'prefix_dnat' })]) },
      { name: 'rebuilt', tx: full(A) },
      { name: 'delete table', tx: tx(['delete', table]) },
      { name: 'delete the missing table', tx: tx(['delete', table]), fails: 'not-found' },
      { name: 'flush the missing table', tx: tx(['flush', table]), fails: 'not-found' },
      { name: 'an element of the missing table', tx: tx(['add', el('dnat6', 'fd00::1', 'fdaa::1')]), fails: 'not-found' },
      { name: 'a rule of the missing table', tx: tx(['add', rule('dnat_output', [{ accept: null }])]), fails: 'not-found' },
      { name: 'a chain of the missing table', tx: tx(['add', chain({ name: 'x' })]), fails: 'not-found' },
      { name: '"add, delete, add table" where there is none', tx: tx(['add', table], ['delete', table], ['add', table]) },
      { name: 'creating the existing table', tx: tx(['create', table]), fails: 'exists' },
      { name: 'rebuilt', tx: full(B) },
    ],
  },
  {
    name: 'a chain added again with other properties',
    steps: [
      { name: 'full table', tx: full(A) },
      { name: 'policy drop', tx: tx(['add', chain({ ...DNAT_OUTPUT, policy: 'drop' })]) },
      { name: 'no policy given: accept', tx: tx(['add', chain({ ...DNAT_OUTPUT, policy: undefined })]) },
      {
        name: 'another policy and another priority',
        tx: tx(['add', chain({ ...DNAT_OUTPUT, policy: 'drop', prio: 5 })]),
        fails: 'invalid',
      },
      { name: 'another hook', tx: tx(['add', chain({ ...DNAT_OUTPUT, hook: 'prerouting' })]), fails: 'invalid' },
      { name: 'another type', tx: tx(['add', chain({ ...DNAT_OUTPUT, type: 'filter' })]), fails: 'exists' },
      { name: 'another type and hook', tx: tx(['add', chain({ ...DNAT_OUTPUT, type: 'filter', hook: 'input' })]), fails: 'invalid' },
      { name: 'created again', tx: tx(['create', chain(DNAT_OUTPUT)]), fails: 'exists' },
      { name: 'as a regular chain: unchanged', tx: tx(['add', chain({ name: 'dnat_output' })]) },
      { name: 'a regular chain as a base chain', tx: tx(['add', chain({ ...DNAT_OUTPUT, name: 'prefix_dnat' })]), fails: 'invalid' },
      {
        name: 'a new base chain with policy drop',
        tx: tx(['add', chain({ name: 'extra', type: 'filter', hook: 'input', prio: 0, policy: 'drop' })]),
      },
      {
        name: 'a nat chain on the forward hook',
        tx: tx(['add', chain({ name: 'natfwd', type: 'nat', hook: 'forward', prio: 0 })]),
        fails: 'invalid',
      },
      {
        name: 'a policy change in a transaction that fails leaves no trace',
        tx: tx(['add', chain({ ...DNAT_OUTPUT, policy: 'drop' })], ['delete', el('dnat6', 'fd00::99')]),
        fails: 'not-found',
      },
      { name: 'rebuilt: the policy is accept again', tx: full(A) },
    ],
  },
  {
    name: 'element operations that fail, and some that do not',
    steps: [
      { name: 'full table', tx: full(A) },
      { name: 'an element of a missing map', tx: tx(['add', el('dnat5', 'fd00::9', 'fdaa::9')]), fails: 'not-found' },
      { name: 'deleting from a missing map', tx: tx(['delete', el('dnat5', 'fd00::9')]), fails: 'not-found' },
      { name: 'an existing element, same value (add)', tx: tx(['add', el('dnat6', 'fd00::1', 'fdaa::1')]) },
      { name: 'an existing element, same value spelt otherwise (add)', tx: tx(['add', el('dnat6', 'FD00:0:0::1', 'FDAA::0001')]) },
      { name: 'an existing element, another value (add)', tx: tx(['add', el('dnat6', 'fd00::1', 'fdbb::1')]), fails: 'exists' },
      { name: 'an existing element, same value (create)', tx: tx(['create', el('dnat6', 'fd00::1', 'fdaa::1')]), fails: 'exists' },
      { name: 'a new element (create)', tx: tx(['create', el('dnat4', '10.0.0.7', '10.9.0.7')]) },
      {
        name: 'the same new key twice, other values',
        tx: tx(['add', el('dnat6', 'fd00::7', 'fdaa::7')], ['add', el('dnat6', 'fd00::7', 'fdaa::8')]),
        fails: 'exists',
      },
      {
        name: 'the same new element twice',
        tx: tx(['add', el('dnat6', 'fd00::7', 'fdaa::7')], ['add', el('dnat6', 'fd00::7', 'fdaa::7')]),
      },
      { name: 'a missing element deleted', tx: tx(['delete', el('dnat6', 'fd00::99')]), fails: 'not-found' },
      {
        name: 'an element deleted twice',
        tx: tx(['delete', el('dnat6', 'fd00::7')], ['delete', el('dnat6', 'fd00::7')]),
        fails: 'not-found',
      },
      {
        name: 'added and deleted in one transaction',
        tx: tx(['add', el('dnat6', 'fd00::8', 'fdaa::8')], ['delete', el('dnat6', 'fd00::8')]),
      },
      { name: 'deleted by another spelling', tx: tx(['delete', el('dnat6', 'fd00:0::0007')]) },
      { name: 'an IPv4 key in the IPv6 map', tx: tx(['add', el('dnat6', '10.0.0.5', 'fdaa::5')]), fails: 'invalid' },
      { name: 'an IPv6 value in the IPv4 map', tx: tx(['add', el('dnat4', '10.0.0.5', 'fdaa::5')]), fails: 'invalid' },
      { name: 'a key with a zone id (of no interface)', tx: tx(['add', el('dnat6', 'fe80::5%nosuchif0', 'fdaa::5')]), fails: 'invalid' },
      { name: 'deleting with a key of the other family', tx: tx(['delete', el('dnat4', 'fd00::1')]), fails: 'invalid' },
      { name: 'a map element without a value', tx: tx(['add', el('dnat6', 'fd00::5')]), fails: 'invalid' },
      {
        name: 'spellings nft reads as addresses',
        tx: tx(
          ['add', el('dnat6', '::ffff:10.0.0.1', '::ffff:10.9.0.1')],
          ['add', el('dnat6', '::10.0.0.2', 'fdaa::2')],
          ['add', el('dnat6', 'FD00:0:0:0:0:0:0:0003', 'fdaa:0:0:0:1:0:0:0')],
          ['add', el('dnat6', '1:0:0:1:0:0:0:1', '1:0:0:1:1:0:0:1')],
          ['add', el('dnat6', '0:0:0:0:0:0:0:0', '::0.0.1.1')],
          ['add', el('dnat4', '10.8', '0x0a.0.0.2')],
          ['add', el('dnat4', '010.000.000.003', '10.0.0.3')],
        ),
      },
      {
        name: 'the same elements in canonical spelling, one with another value',
        tx: tx(['add', el('dnat6', '::ffff:10.0.0.1', '::ffff:10.9.0.1')], ['add', el('dnat4', '10.0.0.8', '10.0.0.3')]),
        fails: 'exists',
      },
      { name: 'an octet above 255', tx: tx(['add', el('dnat4', '10.0.0.256', '10.9.0.1')]), fails: 'invalid' },
    ],
  },
  {
    name: 'a transaction whose last operation fails leaves no trace',
    steps: [
      { name: 'full table', tx: full({ ...A, prefixes: [P6] }) },
      {
        name: 'a delta (adds, removals, a retarget, prefixes), then a missing element deleted',
        tx: delta({ ...A, prefixes: [P6] }, { ...B, prefixes: [P6b] }).delete(el('dnat6', 'fd00::99')),
        fails: 'not-found',
      },
      { name: 'a rebuild, then an element of a missing map', tx: full(B).add(el('nomap', 'fd00::9', 'fdaa::9')), fails: 'not-found' },
      {
        name: 'a rebuild, then an element that exists with another value',
        tx: full(B).add(el('dnat6', 'fd00::3', 'fdbb::3')),
        fails: 'exists',
      },
      { name: 'a rebuild, then a map the rules hold deleted', tx: full(B).delete({ map: FULL_RULESET.maps[0]! }), fails: 'busy' },
      {
        name: 'a delta, then a rule nft refuses',
        tx: delta({ ...A, prefixes: [P6] }, B).add(rule('prefix_dnat', [{ frobnicate: null }])),
        fails: 'invalid',
      },
      {
        name: 'a delta, then a table deletion, then an element',
        tx: delta({ ...A, prefixes: [P6] }, B)
          .delete(table)
          .add(el('dnat6', 'fd00::9', 'fdaa::9')),
        fails: 'not-found',
      },
      // nft evaluates the whole batch before the kernel sees it: its complaint wins over the kernel's, wherever it stands.
      {
        name: "the kernel's refusal first, nft's last",
        tx: tx(['delete', el('dnat6', 'fd00::99')], ['add', el('dnat6', '10.0.0.1', 'fdaa::1')]),
        fails: 'invalid',
      },
      {
        name: "two of the kernel's refusals: the first counts",
        tx: tx(['add', el('dnat6', 'fd00::1', 'fdbb::1')], ['delete', el('dnat4', '10.0.0.99')]),
        fails: 'exists',
      },
      { name: 'the delta alone commits', tx: delta({ ...A, prefixes: [P6] }, { ...B, prefixes: [P6b] }) },
    ],
  },
  {
    name: 'maps, sets and chains in use',
    steps: [
      { name: 'full table', tx: full(A) },
      { name: 'deleting a map rules look up', tx: tx(['delete', { map: FULL_RULESET.maps[1]! }]), fails: 'busy' },
      { name: 'deleting a chain others jump to', tx: tx(['delete', chain({ name: 'prefix_dnat' })]), fails: 'busy' },
      { name: 'deleting a chain with rules of its own', tx: tx(['delete', chain({ name: 'self_postrouting' })]) },
      { name: 'deleting a missing chain', tx: tx(['delete', chain({ name: 'nochain' })]), fails: 'not-found' },
      { name: 'flushing a missing chain', tx: tx(['flush', chain({ name: 'nochain' })]), fails: 'not-found' },
      { name: 'deleting a missing map', tx: tx(['delete', { map: { ...FULL_RULESET.maps[0]!, name: 'nomap' } }]), fails: 'not-found' },
      { name: 'flushing a missing map', tx: tx(['flush', { map: { ...FULL_RULESET.maps[0]!, name: 'nomap' } }]), fails: 'not-found' },
      {
        name: 'an existing map with another type',
        tx: tx(['add', { map: { ...FULL_RULESET.maps[0]!, type: 'ipv6_addr', map: 'ipv6_addr' } }]),
        fails: 'exists',
      },
      { name: 'an existing map without counters', tx: tx(['add', { map: { ...FULL_RULESET.maps[0]!, counter: false } }]), fails: 'exists' },
      { name: 'a set named like a map', tx: tx(['add', { set: { ...ref, name: 'dnat4', type: 'ipv4_addr' } }]), fails: 'exists' },
      { name: 'creating an existing map', tx: tx(['create', { map: FULL_RULESET.maps[0]! }]), fails: 'exists' },
      { name: 'an existing map as it is', tx: tx(['add', { map: FULL_RULESET.maps[0]! }]) },
      { name: 'flushing a map', tx: tx(['flush', { map: FULL_RULESET.maps[1]! }]) },
      {
        name: 'a new map, its elements, then deleted',
        tx: tx(['add', { map: { ...ref, name: 'new6', type: 'ipv6_addr', map: 'ipv6_addr' } }], ['add', el('new6', 'fd00::1', 'fdaa::1')]),
      },
      { name: 'and deleted', tx: tx(['delete', { map: { ...ref, name: 'new6', type: 'ipv6_addr', map: 'ipv6_addr' } }]) },
    ],
  },
  {
    name: 'rule statements',
    steps: [
      { name: 'full table', tx: full(A) },
      { name: 'a map that does not exist', tx: tx(['add', rule('prefix_dnat', dnatVia('ip6', d6, 'nosuchmap'))]), fails: 'not-found' },
      {
        name: 'a set that does not exist',
        tx: tx(['add', rule('prefix_dnat', [{ match: { op: '==', left: d6, right: '@nosuch' } }, { return: null }])]),
        fails: 'not-found',
      },
      { name: 'a jump to a missing chain', tx: tx(['add', rule('prefix_dnat', [{ jump: { target: 'nochain' } }])]), fails: 'not-found' },
      { name: 'a rule in a missing chain', tx: tx(['add', rule('nochain', [{ accept: null }])]), fails: 'not-found' },
      { name: 'a jump to a base chain', tx: tx(['add', rule('prefix_dnat', [{ jump: { target: 'dnat_output' } }])]), fails: 'invalid' },
      { name: 'an unknown statement', tx: tx(['add', rule('prefix_dnat', [{ frobnicate: null }])]), fails: 'invalid' },
      { name: 'an IPv4 key looked up in the IPv6 map', tx: tx(['add', rule('prefix_dnat', dnatVia('ip', d4, 'dnat6'))]), fails: 'invalid' },
      {
        name: 'IPv4 matched against an IPv6 map',
        tx: tx(['add', rule('prefix_dnat', [{ match: { op: '==', left: d4, right: '@dnat6' } }, { return: null }])]),
        fails: 'invalid',
      },
      {
        name: 'a map looked up as a set (6.12 and later)',
        tx: tx(['add', rule('prefix_dnat', [{ match: { op: '==', left: d6, right: '@dnat6' } }, { return: null }])]),
      },
      {
        name: 'a prefix of the other family',
        tx: tx([
          'add',
          rule('prefix_dnat', [{ match: { op: '==', left: d4, right: { prefix: { addr: 'fd00::', len: 64 } } } }, { return: null }]),
        ]),
        fails: 'invalid',
      },
      {
        name: 'a prefix too long',
        tx: tx([
          'add',
          rule('prefix_dnat', [{ match: { op: '==', left: d4, right: { prefix: { addr: '10.0.0.0', len: 40 } } } }, { return: null }]),
        ]),
        fails: 'invalid',
      },
      {
        name: 'dnat to an address of the other family',
        tx: tx(['add', rule('prefix_dnat', [{ dnat: { family: 'ip6', addr: '10.0.0.1' } }])]),
        fails: 'invalid',
      },
      {
        name: 'dnat without a family in an inet table',
        tx: tx(['add', rule('prefix_dnat', [{ dnat: { addr: 'fdaa::1' } }])]),
        fails: 'invalid',
      },
      {
        name: 'snat where only dnat works',
        tx: tx(['add', rule('prefix_dnat', [{ snat: { family: 'ip6', addr: 'fdaa::1' } }])]),
        fails: 'invalid',
      },
      {
        name: 'dnat in a chain a filter chain jumps to',
        tx: tx(['add', rule('prefix_count', [{ dnat: { family: 'ip6', addr: 'fdaa::1' } }])]),
        fails: 'invalid',
      },
      {
        name: 'socket where it does not work',
        tx: tx([
          'add',
          rule('self_postrouting', [{ match: { op: '==', left: { socket: { key: 'transparent' } }, right: 1 } }, { return: null }]),
        ]),
        fails: 'invalid',
      },
      {
        name: 'spellings nft lists otherwise: addresses, prefixes, counters, a comment',
        tx: tx(
          [
            'add',
            rule('prefix_dnat', [
              { match: { op: '==', left: d6, right: { prefix: { addr: 'FD00:5:0::1', len: 64 } } } },
              { counter: null },
              { dnat: { family: 'ip6', addr: { '|': [{ '&': [d6, 'FDAA:5::FFFF:FFFF:FFFF:FFFF'] }, 'FDAA:5:0::'] } } },
            ]),
          ],
          [
            'add',
            rule('prefix_dnat', [
              { match: { op: '==', left: d6, right: 'FD00::0001' } },
              { counter: { packets: 5, bytes: 10 } },
              { dnat: { family: 'ip6', addr: 'FDAA::1' } },
            ]),
          ],
          [
            'add',
            rule('prefix_dnat', [{ match: { op: '==', left: d4, right: { prefix: { addr: '10.5.0.0', len: 32 } } } }, { accept: null }]),
          ],
          [
            'add',
            rule('prefix_dnat', [{ match: { op: '==', left: d4, right: { prefix: { addr: '10.5.0.0', len: 0 } } } }, { accept: null }]),
          ],
          [
            'add',
            rule('prefix_dnat', [{ match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 6 } }, { accept: null }], {
              comment: 'hello',
            }),
          ],
          ['add', rule('prefix_count', [])],
        ),
      },
      {
        name: 'dnat in a chain nothing jumps to',
        tx: tx(['add', chain({ name: 'lonely' })], ['add', rule('lonely', [{ dnat: { family: 'ip6', addr: 'fdaa::1' } }])]),
      },
      { name: 'a filter chain jumps to it', tx: tx(['add', rule('count_output', [{ jump: { target: 'lonely' } }])]), fails: 'invalid' },
      { name: 'a nat output chain jumps to it', tx: tx(['add', rule('dnat_output', [{ jump: { target: 'lonely' } }])]) },
      {
        name: 'a loop',
        tx: tx(
          ['add', rule('lonely', [{ jump: { target: 'prefix_dnat' } }])],
          ['add', rule('prefix_dnat', [{ jump: { target: 'lonely' } }])],
        ),
        fails: 'invalid',
      },
      {
        name: 'the chain can go once nothing jumps to it',
        tx: (l) =>
          tx(
            ['delete', { rule: { ...ref, chain: 'dnat_output', expr: [], handle: handleOf(l, 'dnat_output', 3) } }],
            ['delete', chain({ name: 'lonely' })],
          ),
      },
    ],
  },
];

// ---- Running and comparing ----

type Outcome = { ok: true } | { ok: false; kind: NftError['kind']; detail: string };

async function outcome(nft: NftInterface, t: Transaction, how: 'run' | 'check' = 'run'): Promise<Outcome> {
  try {
    await (how === 'run' ? nft.run(t) : nft.check(t));
    return { ok: true };
  } catch (e) {
    if (!(e instanceof NftError)) throw e;
    return { ok: false, kind: e.kind, detail: e.detail };
  }
}

const PROTOCOLS: Record<string, number> = { tcp: 6, udp: 17 };

/** What the kernel decides on its own, left out (see the top of the file). */
function normalise(l: TableListing | null): unknown {
  if (!l) return null;
  const rank = new Map([...l.rules.map((r) => r.handle!)].sort((a, b) => a - b).map((h, i) => [h, i]));
  const stmt = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(stmt);
    if (typeof x !== 'object' || x === null) return x;
    const o = x as Record<string, unknown>;
    if ('counter' in o && Object.keys(o).length === 1) return { counter: o.counter === null ? null : 'values' };
    const m = o.match as { left?: { meta?: { key?: string } }; right?: unknown } | undefined;
    if (m?.left?.meta?.key === 'l4proto') {
      const num = (v: unknown) => (typeof v === 'string' && v in PROTOCOLS ? PROTOCOLS[v] : v);
      const r = m.right as { set?: unknown[] };
      return { match: { ...m, right: Array.isArray(r?.set) ? { set: r.set.map(num) } : num(m.right) } };
    }
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, stmt(v)]));
  };
  const elements = (els: TableListing['maps'][number]['elements']) =>
    els.map((e) => ({ ...e, ...(e.counter ? { counter: 'values' } : {}) })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return {
    ...l,
    rules: l.rules.map((r) => ({ ...r, handle: rank.get(r.handle!), expr: stmt(r.expr) })),
    maps: l.maps.map((m) => ({ ...m, elements: elements(m.elements) })),
    ...(l.sets ? { sets: l.sets.map((s) => ({ ...s, elements: elements(s.elements) })) } : {}),
  };
}

describe('FakeNft against the kernel (libnftables in a network namespace)', () => {
  test.each(SCENARIOS.map((s) => [s.name, s] as const))('%s', async (_name, scenario) => {
    const fake = new FakeNft();
    // A fresh namespace state per scenario.
    await flushRuleset();
    const list = (nft: NftInterface) => nft.list();
    for (const step of scenario.steps) {
      const build = (l: TableListing | null) => (typeof step.tx === 'function' ? step.tx(l) : step.tx);
      const [fakeBefore, kernelBefore] = [await list(fake), await list(kernel)];
      // A check answers what the run will, and changes nothing.
      const fc = await outcome(fake, build(fakeBefore), 'check');
      const kc = await outcome(kernel, build(kernelBefore), 'check');
      const f = await outcome(fake, build(fakeBefore));
      const k = await outcome(kernel, build(kernelBefore));
      const where = `${scenario.name} / ${step.name}\n  fake:   ${JSON.stringify(f)}\n  kernel: ${JSON.stringify(k)}`;
      expect(k.ok ? 'ok' : k.kind, `the kernel's answer\n${where}`).toBe(step.fails ?? 'ok');
      expect(f.ok ? 'ok' : f.kind, `fake vs kernel\n${where}`).toBe(k.ok ? 'ok' : k.kind);
      expect(
        [fc, kc].map((c) => (c.ok ? 'ok' : c.kind)),
        `check vs run\n${where}`,
      ).toEqual([k.ok ? 'ok' : k.kind, k.ok ? 'ok' : k.kind]);
      const [fakeAfter, kernelAfter] = [await list(fake), await list(kernel)];
      expect(normalise(fakeAfter), `listing after\n${where}`).toStrictEqual(normalise(kernelAfter));
      expect(byName(await fake.listChains()), `chains after\n${where}`).toStrictEqual(byName(await kernel.listChains()));
      // A failed transaction leaves no trace, on either side.
      if (!k.ok) expect(normalise(kernelAfter), `kernel unchanged\n${where}`).toStrictEqual(normalise(kernelBefore));
      if (!f.ok) expect(normalise(fakeAfter), `fake unchanged\n${where}`).toStrictEqual(normalise(fakeBefore));
    }
  });
});

const byName = (cs: Chain[]) => [...cs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

describe('one client, one table', () => {
  test("listChains shows the client's own table only, and run and check refuse any other table, on both", async () => {
    await flushRuleset();
    const fake = new FakeNft();
    // Chains of addrmap's names in another table of the family, and in a table of addrmap's name in another family.
    const others = [
      { family: 'inet' as const, name: 'nat' },
      { family: 'ip' as const, name: TABLE.name },
    ];
    for (const t of others) {
      const foreign = new Transaction().add({ table: t });
      for (const c of FULL_RULESET.chains) foreign.add({ chain: { ...c, family: t.family, table: t.name } });
      await fake.runAnyTable(foreign);
      await new RemoteNft(worker, t).run(foreign);
    }
    expect(await fake.listChains()).toEqual([]);
    expect(await kernel.listChains()).toEqual([]);
    await fake.run(full(A));
    await kernel.run(full(A));
    const [f, k] = [byName(await fake.listChains()), byName(await kernel.listChains())];
    expect(f).toStrictEqual(k);
    expect(new Set(k.map((c) => `${c.family} ${c.table}`))).toEqual(new Set([`${TABLE.family} ${TABLE.name}`]));
    expect(k.map((c) => c.name).sort()).toEqual(FULL_RULESET.chains.map((c) => c.name).sort());

    const elsewhere = new Transaction().add({ table: others[0]! });
    for (const nft of [fake, kernel])
      for (const how of ['run', 'check'] as const) expect(await outcome(nft, elsewhere, how)).toMatchObject({ ok: false, kind: 'invalid' });
  });
});
