import { describe, expect, test } from 'vitest';
import { EMPTY_VIEW, planSync, viewFromListing, viewOf, type KernelView } from '../../../src/kernel/plan.js';
import { CHAINS, MAPS, RULES, TABLE } from '../../../src/kernel/ruleset.js';
import type { Operation, TableListing } from '../../../src/kernel/nft/index.js';
import { FakeNft } from '../../fakes/nft.js';
import { desired, elementsOf } from '../fakes.js';
import type { DesiredMappings } from '../../../src/desired/resolve.js';

const el = (name: 'dnat4' | 'dnat6', key: string, value?: string) => ({
  element: { family: 'inet' as const, table: 'addrmap', name, key, ...(value === undefined ? {} : { value }) },
});

const view = (v6: Record<string, string>, v4: Record<string, string> = {}, layoutOk = true): KernelView => ({
  layoutOk,
  v4: new Map(Object.entries(v4)),
  v6: new Map(Object.entries(v6)),
  prefixes: [],
});

/** A correct table listing holding the given mappings, as the fake kernel returns it. */
async function installed(v6: Record<string, string>, v4: Record<string, string> = {}): Promise<TableListing> {
  const nft = new FakeNft();
  await nft.run(planSync(EMPTY_VIEW, desired(v6, v4)).tx);
  return (await nft.listTable('inet', 'addrmap'))!;
}

describe('planSync', () => {
  test('a full plan on an empty view creates table, maps, chains, rules and elements, in that order', () => {
    const plan = planSync(EMPTY_VIEW, desired({ 'fd00::1': 'fdaa::1', 'fd00::2': 'fdaa::2' }, { '10.0.0.1': '10.9.0.1' }));
    expect(plan.kind).toBe('full');
    const expected: Operation[] = [
      { verb: 'add', object: { table: TABLE } },
      { verb: 'delete', object: { table: TABLE } },
      { verb: 'add', object: { table: TABLE } },
      ...MAPS.map((map): Operation => ({ verb: 'add', object: { map } })),
      ...CHAINS.map((chain): Operation => ({ verb: 'add', object: { chain } })),
      ...RULES.map((rule): Operation => ({ verb: 'add', object: { rule } })),
      { verb: 'add', object: el('dnat4', '10.0.0.1', '10.9.0.1') },
      { verb: 'add', object: el('dnat6', 'fd00::1', 'fdaa::1') },
      { verb: 'add', object: el('dnat6', 'fd00::2', 'fdaa::2') },
    ];
    expect(plan.tx.operations).toEqual(expected);
    expect(plan.added).toEqual([
      { family: 4, from: '10.0.0.1', to: '10.9.0.1' },
      { family: 6, from: 'fd00::1', to: 'fdaa::1' },
      { family: 6, from: 'fd00::2', to: 'fdaa::2' },
    ]);
    expect(plan.retargeted).toEqual([]);
    expect(plan.removed).toEqual([]);
  });

  test('the ruleset: both maps with counters, DNAT per family in output and prerouting, counting per family in output and forward', () => {
    expect(MAPS.map((m) => [m.name, m.type, m.map, m.counter])).toEqual([
      ['dnat4', 'ipv4_addr', 'ipv4_addr', true],
      ['dnat6', 'ipv6_addr', 'ipv6_addr', true],
      ['self_in6', 'ipv6_addr', 'ipv6_addr', undefined],
      ['self_out6', 'ipv6_addr', 'ipv6_addr', undefined],
    ]);
    expect(CHAINS.map((c) => [c.name, c.type, c.hook, c.prio, c.policy])).toEqual([
      ['dnat_output', 'nat', 'output', -100, 'accept'],
      ['dnat_prerouting', 'nat', 'prerouting', -100, 'accept'],
      ['count_output', 'filter', 'output', 0, 'accept'],
      ['count_forward', 'filter', 'forward', 0, 'accept'],
      ['prefix_dnat', undefined, undefined, undefined, undefined],
      ['prefix_count', undefined, undefined, undefined, undefined],
      ['self_prerouting', 'nat', 'prerouting', -101, 'accept'],
      ['self_postrouting', 'nat', 'postrouting', 100, 'accept'],
    ]);
    const count = (proto: string, map: string) =>
      `[{"match":{"op":"in","left":{"ct":{"key":"status"}},"right":"dnat"}},{"match":{"op":"==","left":{"ct":{"key":"direction"}},"right":"original"}},` +
      `{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":"established"}},{"match":{"op":"==","left":{"ct":{"key":"${proto} daddr","dir":"original"}},"right":"@${map}"}},{"return":null}]`;
    const jump = (target: string) => `[{"jump":{"target":"${target}"}}]`;
    expect(RULES.map((r) => [r.chain, JSON.stringify(r.expr)])).toEqual([
      ['dnat_output', '[{"dnat":{"family":"ip","addr":{"map":{"key":{"payload":{"protocol":"ip","field":"daddr"}},"data":"@dnat4"}}}}]'],
      ['dnat_output', '[{"dnat":{"family":"ip6","addr":{"map":{"key":{"payload":{"protocol":"ip6","field":"daddr"}},"data":"@dnat6"}}}}]'],
      ['dnat_output', jump('prefix_dnat')],
      [
        'dnat_prerouting',
        '[{"dnat":{"family":"ip","addr":{"map":{"key":{"payload":{"protocol":"ip","field":"daddr"}},"data":"@dnat4"}}}}]',
      ],
      [
        'dnat_prerouting',
        '[{"dnat":{"family":"ip6","addr":{"map":{"key":{"payload":{"protocol":"ip6","field":"daddr"}},"data":"@dnat6"}}}}]',
      ],
      ['dnat_prerouting', jump('prefix_dnat')],
      ['count_output', count('ip', 'dnat4')],
      ['count_output', count('ip6', 'dnat6')],
      ['count_output', jump('prefix_count')],
      ['count_forward', count('ip', 'dnat4')],
      ['count_forward', count('ip6', 'dnat6')],
      ['count_forward', jump('prefix_count')],
      [
        'self_prerouting',
        '[{"match":{"op":"==","left":{"payload":{"protocol":"ip6","field":"daddr"}},"right":"@self_in6"}},{"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":{"set":[6,17]}}},{"match":{"op":"==","left":{"socket":{"key":"transparent"}},"right":{"set":[0,1]}}},{"return":null}]',
      ],
      [
        'self_prerouting',
        '[{"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":{"set":[6,17]}}},{"dnat":{"family":"ip6","addr":{"map":{"key":{"payload":{"protocol":"ip6","field":"daddr"}},"data":"@self_in6"}}}}]',
      ],
      ['self_postrouting', '[{"match":{"op":"==","left":{"meta":{"key":"oifname"}},"right":"lo"}},{"return":null}]'],
      [
        'self_postrouting',
        '[{"snat":{"family":"ip6","addr":{"map":{"key":{"payload":{"protocol":"ip6","field":"saddr"}},"data":"@self_out6"}}}}]',
      ],
    ]);
  });

  test('a full plan with no mappings still builds the table', () => {
    const plan = planSync(EMPTY_VIEW, desired());
    expect(plan.kind).toBe('full');
    expect(plan.tx.size).toBe(3 + MAPS.length + CHAINS.length + RULES.length);
    expect(plan.tx.operations.some((o) => 'element' in o.object)).toBe(false);
  });

  test('a delta plan sends only element changes', () => {
    const current = view({ 'fd00::1': 'fdaa::1', 'fd00::2': 'fdaa::2' }, { '10.0.0.1': '10.9.0.1' });
    const plan = planSync(
      current,
      desired({ 'fd00::1': 'fdaa::1', 'fd00::3': 'fdaa::3' }, { '10.0.0.1': '10.9.0.1', '10.0.0.2': '10.9.0.2' }),
    );
    expect(plan.kind).toBe('delta');
    expect(plan.tx.operations.every((o) => 'element' in o.object)).toBe(true);
    expect(plan.tx.operations).toEqual([
      { verb: 'delete', object: el('dnat6', 'fd00::2') },
      { verb: 'add', object: el('dnat4', '10.0.0.2', '10.9.0.2') },
      { verb: 'add', object: el('dnat6', 'fd00::3', 'fdaa::3') },
    ]);
    expect(plan.added).toEqual([
      { family: 4, from: '10.0.0.2', to: '10.9.0.2' },
      { family: 6, from: 'fd00::3', to: 'fdaa::3' },
    ]);
    expect(plan.removed).toEqual([{ family: 6, from: 'fd00::2', to: 'fdaa::2' }]);
    expect(plan.retargeted).toEqual([]);
  });

  test('a retarget is a delete and an add of the same key in the same transaction, delete first', () => {
    const plan = planSync(view({ 'fd00::1': 'fdaa::1' }), desired({ 'fd00::1': 'fdbb::1' }));
    expect(plan.kind).toBe('delta');
    expect(plan.tx.operations).toEqual([
      { verb: 'delete', object: el('dnat6', 'fd00::1') },
      { verb: 'add', object: el('dnat6', 'fd00::1', 'fdbb::1') },
    ]);
    expect(plan.retargeted).toEqual([{ family: 6, from: 'fd00::1', to: 'fdbb::1', was: 'fdaa::1' }]);
    expect(plan.added).toEqual([]);
    expect(plan.removed).toEqual([]);
  });

  test('all deletes precede all adds, so a mixed change stays a few grouped commands', () => {
    const plan = planSync(
      view({ 'fd00::1': 'fdaa::1', 'fd00::2': 'fdaa::2', 'fd00::3': 'fdaa::3' }),
      desired({ 'fd00::1': 'fdbb::1', 'fd00::3': 'fdbb::3', 'fd00::4': 'fdaa::4' }),
    );
    const verbs = plan.tx.operations.map((o) => o.verb);
    expect(verbs).toEqual(['delete', 'delete', 'delete', 'add', 'add', 'add']);
    expect(plan.tx.operations.map((o) => ('element' in o.object ? o.object.element.key : '?'))).toEqual([
      'fd00::2',
      'fd00::1',
      'fd00::3',
      'fd00::1',
      'fd00::3',
      'fd00::4',
    ]);
  });

  test('a no-op plan has kind none and an empty transaction', () => {
    const plan = planSync(
      view({ 'fd00::1': 'fdaa::1' }, { '10.0.0.1': '10.9.0.1' }),
      desired({ 'fd00::1': 'fdaa::1' }, { '10.0.0.1': '10.9.0.1' }),
    );
    expect(plan.kind).toBe('none');
    expect(plan.tx.size).toBe(0);
    expect([plan.added, plan.removed, plan.retargeted]).toEqual([[], [], []]);
  });

  test('removing every mapping is a delta, not a rebuild', () => {
    const plan = planSync(view({ 'fd00::1': 'fdaa::1' }, { '10.0.0.1': '10.9.0.1' }), desired());
    expect(plan.kind).toBe('delta');
    expect(plan.tx.operations).toEqual([
      { verb: 'delete', object: el('dnat4', '10.0.0.1') },
      { verb: 'delete', object: el('dnat6', 'fd00::1') },
    ]);
  });

  test('a layout mismatch forces a full rebuild, reporting changes against what the kernel had', () => {
    const current = view({ 'fd00::1': 'fdaa::1', 'fd00::2': 'fdaa::2' }, {}, false);
    const plan = planSync(current, desired({ 'fd00::1': 'fdaa::1', 'fd00::3': 'fdaa::3' }));
    expect(plan.kind).toBe('full');
    expect(plan.tx.operations.slice(0, 3).map((o) => o.verb)).toEqual(['add', 'delete', 'add']);
    // The rebuild re-adds every desired element, including unchanged ones.
    expect(plan.tx.operations.filter((o) => 'element' in o.object)).toEqual([
      { verb: 'add', object: el('dnat6', 'fd00::1', 'fdaa::1') },
      { verb: 'add', object: el('dnat6', 'fd00::3', 'fdaa::3') },
    ]);
    expect(plan.added).toEqual([{ family: 6, from: 'fd00::3', to: 'fdaa::3' }]);
    expect(plan.removed).toEqual([{ family: 6, from: 'fd00::2', to: 'fdaa::2' }]);
  });

  test('forceFull rebuilds even when the layout is right and nothing changed', () => {
    const plan = planSync(view({ 'fd00::1': 'fdaa::1' }), desired({ 'fd00::1': 'fdaa::1' }), true);
    expect(plan.kind).toBe('full');
    expect(plan.tx.operations.filter((o) => 'element' in o.object)).toHaveLength(1);
  });

  test('viewOf shares the desired maps (read-only by type) rather than copying them', () => {
    const d = desired({ 'fd00::1': 'fdaa::1' });
    const v = viewOf(d);
    expect(v).toEqual(view({ 'fd00::1': 'fdaa::1' }));
    expect(v.v6).toBe(d.v6);
  });
});

describe('planSync applied to the fake kernel', () => {
  test('a full plan commits on an empty kernel, and its listing yields a correct view', async () => {
    const listing = await installed({ 'fd00::1': 'fdaa::1' }, { '10.0.0.1': '10.9.0.1' });
    expect(elementsOf(listing)).toEqual({ dnat4: ['10.0.0.1 -> 10.9.0.1'], dnat6: ['fd00::1 -> fdaa::1'] });
    expect(viewFromListing(listing)).toEqual(view({ 'fd00::1': 'fdaa::1' }, { '10.0.0.1': '10.9.0.1' }));
  });

  test('a full plan also commits over an existing table, replacing it', async () => {
    const nft = new FakeNft();
    await nft.run(planSync(EMPTY_VIEW, desired({ 'fd00::1': 'fdaa::1', 'fd00::2': 'fdaa::2' })).tx);
    const before = viewFromListing(await nft.listTable('inet', 'addrmap'));
    await nft.run(planSync(before, desired({ 'fd00::3': 'fdaa::3' }), true).tx);
    expect(elementsOf(await nft.listTable('inet', 'addrmap'))).toEqual({ dnat4: [], dnat6: ['fd00::3 -> fdaa::3'] });
  });

  test('a delta plan with a retarget commits, where a plain add of the new value would fail', async () => {
    const nft = new FakeNft();
    const first = desired({ 'fd00::1': 'fdaa::1', 'fd00::2': 'fdaa::2' });
    await nft.run(planSync(EMPTY_VIEW, first).tx);
    const plan = planSync(viewOf(first), desired({ 'fd00::1': 'fdbb::1', 'fd00::3': 'fdaa::3' }));
    await nft.run(plan.tx);
    expect(elementsOf(await nft.listTable('inet', 'addrmap'))).toEqual({ dnat4: [], dnat6: ['fd00::1 -> fdbb::1', 'fd00::3 -> fdaa::3'] });
  });
});

describe('viewFromListing', () => {
  test('no table is the empty view, with layoutOk false', () => {
    expect(viewFromListing(null)).toEqual({ layoutOk: false, v4: new Map(), v6: new Map(), prefixes: [] });
  });

  test('element keys and values are normalised, whatever spelling the listing uses', async () => {
    const listing = await installed({ 'fd00::1': 'fdaa::1' });
    const m = listing.maps.find((x) => x.name === 'dnat6')!;
    m.elements = [{ ...m.elements[0]!, key: 'FD00:0:0:0:0:0:0:1', value: 'FDAA::0001' }];
    expect(viewFromListing(listing).v6).toEqual(new Map([['fd00::1', 'fdaa::1']]));
    expect(viewFromListing(listing).layoutOk).toBe(true);
  });

  const mutations: [string, (l: TableListing) => void][] = [
    ['a chain is missing', (l) => void l.chains.pop()],
    ['an extra chain exists', (l) => void l.chains.push({ family: 'inet', table: 'addrmap', name: 'extra' })],
    ['a chain has another priority', (l) => void (l.chains[0]!.prio = 0)],
    ['a chain has another hook', (l) => void (l.chains[1]!.hook = 'input')],
    ['a chain has policy drop', (l) => void (l.chains[0]!.policy = 'drop')],
    ['a rule is missing', (l) => void l.rules.pop()],
    ['an extra rule exists', (l) => void l.rules.push({ ...l.rules[0]! })],
    ['a rule differs', (l) => void (l.rules[0]!.expr = [{ accept: null }])],
    ['two rules of a chain are swapped', (l) => void ([l.rules[0], l.rules[1]] = [l.rules[1]!, l.rules[0]!])],
    ['a map lost its counter', (l) => void (l.maps[0]!.counter = false)],
    ['a map has another type', (l) => void (l.maps[0]!.type = 'ipv6_addr')],
    ['a map is missing', (l) => void l.maps.pop()],
  ];
  test.each(mutations)('layoutOk is false when %s', async (_name, mutate) => {
    const listing = await installed({ 'fd00::1': 'fdaa::1' });
    expect(viewFromListing(listing).layoutOk).toBe(true);
    mutate(listing);
    const v = viewFromListing(listing);
    expect(v.layoutOk).toBe(false);
    // ...and a plan over it is a full rebuild.
    expect(planSync(v, desired({ 'fd00::1': 'fdaa::1' })).kind).toBe('full');
  });

  test('rule handles in the listing do not affect the layout check', async () => {
    const listing = await installed({});
    listing.rules.forEach((r, i) => (r.handle = 100 + i));
    expect(viewFromListing(listing).layoutOk).toBe(true);
  });
});

describe('own previous addresses in the plan', () => {
  test('inbound map now -> previous and outbound previous -> now, as element deltas; a retarget is delete + add', async () => {
    const nft = new FakeNft();
    const first: DesiredMappings = { ...desired({ 'fd00::1': 'fdaa::1' }), self: new Map([['fdaa::77', 'fdaa::78']]) };
    await nft.run(planSync(EMPTY_VIEW, first).tx);
    let listing = await nft.listTable('inet', 'addrmap');
    expect(elementsOf(listing)).toMatchObject({ self_in6: ['fdaa::78 -> fdaa::77'], self_out6: ['fdaa::77 -> fdaa::78'] });
    expect(viewFromListing(listing)).toEqual(viewOf(first));

    const next: DesiredMappings = { ...desired({ 'fd00::1': 'fdaa::1' }), self: new Map([['fdaa::77', 'fdaa::79']]) };
    const plan = planSync(viewFromListing(listing), next);
    expect(plan.kind).toBe('delta');
    expect(
      plan.tx.operations.map((o) => `${o.verb} ${'element' in o.object ? `${o.object.element.name} ${o.object.element.key}` : ''}`),
    ).toEqual(['delete self_out6 fdaa::77', 'add self_out6 fdaa::77', 'delete self_in6 fdaa::78', 'add self_in6 fdaa::79']);
    await nft.run(plan.tx);
    listing = await nft.listTable('inet', 'addrmap');
    expect(elementsOf(listing)).toMatchObject({ self_in6: ['fdaa::79 -> fdaa::77'], self_out6: ['fdaa::77 -> fdaa::79'] });
    expect(planSync(viewFromListing(listing), next).kind).toBe('none');
  });
});
