// The fake must behave like the kernel (as measured with nft 1.0.6), or every
// reconciler test built on it proves nothing.
import { beforeEach, describe, expect, test } from 'vitest';
import { NftError, Transaction, type NftErrorKind, type NftObject } from '../../../../src/kernel/nft/index.js';
import { FakeNft } from '../../../fakes/nft.js';
import { nftErrorKind } from '../../../../src/kernel/nft/errors.js';
import { EMPTY_VIEW, planSync } from '../../../../src/kernel/plan.js';
import { MAPS, TABLE } from '../../../../src/kernel/ruleset.js';
import { desired, elementsOf } from '../../fakes.js';

const ref = { family: 'inet', table: 'addrmap' } as const;
const el6 = (key: string, value?: string): NftObject => ({
  element: { ...ref, name: 'dnat6', key, ...(value === undefined ? {} : { value }) },
});
const el4 = (key: string, value?: string): NftObject => ({
  element: { ...ref, name: 'dnat4', key, ...(value === undefined ? {} : { value }) },
});
const table: NftObject = { table: TABLE };

let nft: FakeNft;
const list = () => nft.listTable('inet', 'addrmap');

/** Runs tx, expecting the whole transaction to fail with an error of `kind` (and `detail`), and the table to be exactly as before. */
/** Fails the way nft would; `anyTable` runs it as another tool, not through addrmap's client. */
async function expectRejected(tx: Transaction, kind: NftErrorKind, detail?: RegExp, anyTable = false): Promise<void> {
  const before = await list();
  const historyBefore = nft.history.length;
  const err = await (anyTable ? nft.runAnyTable(tx) : nft.run(tx)).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NftError);
  expect((err as NftError).kind).toBe(kind);
  // The fake says it as nft would: ExecNft would read the same kind.
  expect(nftErrorKind((err as NftError).detail)).toBe(kind);
  if (detail) expect((err as NftError).detail).toMatch(detail);
  expect((err as NftError).message).toMatch(/^nft transaction failed, nothing was changed: /);
  expect(await list()).toEqual(before);
  expect(nft.history.slice(historyBefore)).toEqual([{ tx, committed: false }]);
}

beforeEach(async () => {
  nft = new FakeNft();
  await nft.run(planSync(EMPTY_VIEW, desired({ 'fd00::1': 'fdaa::1', 'fd00::2': 'fdaa::2' }, { '10.0.0.1': '10.9.0.1' })).tx);
});

describe('FakeNft transactions', () => {
  test('a committed transaction is recorded and visible in the listing', async () => {
    expect(nft.history).toHaveLength(1);
    expect(nft.history[0]!.committed).toBe(true);
    expect(elementsOf(await list())).toEqual({ dnat4: ['10.0.0.1 -> 10.9.0.1'], dnat6: ['fd00::1 -> fdaa::1', 'fd00::2 -> fdaa::2'] });
  });

  test.each([
    ['first', 0],
    ['middle', 2],
    ['last', 4],
  ])('a failing op in the %s position discards the whole transaction', async (_pos, at) => {
    const ops: NftObject[] = [
      el6('fd00::10', 'fdaa::10'),
      el6('fd00::11', 'fdaa::11'),
      el6('fd00::12', 'fdaa::12'),
      el4('10.0.0.10', '10.9.0.10'),
    ];
    const tx = new Transaction();
    ops.forEach((o, i) => {
      if (i === at) tx.delete(el6('fd00::99'));
      tx.add(o);
    });
    if (at === ops.length) tx.delete(el6('fd00::99'));
    await expectRejected(tx, 'not-found', /No such file or directory/);
    expect(elementsOf(await list()).dnat6).toEqual(['fd00::1 -> fdaa::1', 'fd00::2 -> fdaa::2']);
  });

  test('a failed rebuild leaves the old table, contents and counters in place', async () => {
    nft.hit('inet', 'addrmap', 'dnat6', 'fd00::1', 3, 180);
    const tx = planSync(EMPTY_VIEW, desired({ 'fd00::5': 'fdaa::5' })).tx;
    tx.add(el6('fd00::5', 'fdbb::5')); // a second value for the same key: EEXIST at the very end
    await expectRejected(tx, 'exists', /File exists/);
    const e = (await list())!.maps.find((m) => m.name === 'dnat6')!.elements.find((x) => x.key === 'fd00::1');
    expect(e?.counter).toEqual({ packets: 3, bytes: 180 });
  });

  test('an empty transaction commits and changes nothing', async () => {
    const before = await list();
    await nft.run(new Transaction());
    expect(await list()).toEqual(before);
    expect(nft.history.at(-1)).toEqual({ tx: new Transaction(), committed: true });
  });
});

describe('FakeNft elements', () => {
  test('adding an existing element with the same value is a no-op', async () => {
    nft.hit('inet', 'addrmap', 'dnat6', 'fd00::1');
    await nft.run(new Transaction().add(el6('fd00::1', 'fdaa::1')));
    const dnat6 = (await list())!.maps.find((m) => m.name === 'dnat6')!;
    expect(dnat6.elements.filter((e) => e.key === 'fd00::1')).toEqual([
      { ...ref, name: 'dnat6', key: 'fd00::1', value: 'fdaa::1', counter: { packets: 1, bytes: 60 } },
    ]);
  });

  test('adding an existing element with the same value spelt differently is a no-op', async () => {
    await nft.run(new Transaction().add(el6('FD00:0:0::1', 'FDAA::0001')));
    expect(elementsOf(await list()).dnat6).toEqual(['fd00::1 -> fdaa::1', 'fd00::2 -> fdaa::2']);
  });

  test('adding an existing element with a different value fails with EEXIST', async () => {
    await expectRejected(new Transaction().add(el6('fd00::1', 'fdbb::1')), 'exists', /File exists/);
  });

  test('delete + add of an element in one transaction changes its value and resets its counter', async () => {
    nft.hit('inet', 'addrmap', 'dnat6', 'fd00::1', 5, 500);
    await nft.run(new Transaction().delete(el6('fd00::1')).add(el6('fd00::1', 'fdbb::1')));
    const dnat6 = (await list())!.maps.find((m) => m.name === 'dnat6')!;
    expect(dnat6.elements.find((e) => e.key === 'fd00::1')).toEqual({
      ...ref,
      name: 'dnat6',
      key: 'fd00::1',
      value: 'fdbb::1',
      counter: { packets: 0, bytes: 0 },
    });
  });

  test('add then delete of a new element in one transaction leaves nothing', async () => {
    const before = await list();
    await nft.run(new Transaction().add(el6('fd00::7', 'fdaa::7')).delete(el6('fd00::7')));
    expect(await list()).toEqual(before);
  });

  test('creating an existing element fails, even with the same value', async () => {
    await expectRejected(new Transaction().create(el6('fd00::1', 'fdaa::1')), 'exists', /File exists/);
  });

  test('creating a new element works', async () => {
    await nft.run(new Transaction().create(el4('10.0.0.2', '10.9.0.2')));
    expect(elementsOf(await list()).dnat4).toEqual(['10.0.0.1 -> 10.9.0.1', '10.0.0.2 -> 10.9.0.2']);
  });

  test('deleting a missing element fails with ENOENT', async () => {
    await expectRejected(new Transaction().delete(el6('fd00::99')), 'not-found', /No such file or directory/);
  });

  test('deleting the same element twice in one transaction fails', async () => {
    await expectRejected(new Transaction().delete(el6('fd00::1')).delete(el6('fd00::1')), 'not-found', /No such file or directory/);
  });

  test('an element of a map that does not exist fails with ENOENT', async () => {
    await expectRejected(
      new Transaction().add({ element: { ...ref, name: 'dnat5', key: 'fd00::9', value: 'fdaa::9' } }),
      'not-found',
      /No such file or directory/,
    );
  });

  test.each([
    ['an IPv4 key in the IPv6 map', el6('10.0.0.5', 'fdaa::5')],
    ['an IPv6 key in the IPv4 map', el4('fd00::5', '10.9.0.5')],
    ['an IPv4 value in the IPv6 map', el6('fd00::5', '10.9.0.5')],
    ['an IPv6 value in the IPv4 map', el4('10.0.0.5', 'fdaa::5')],
    ['a key with a zone id', el6('fe80::5%eth0', 'fdaa::5')],
    ['a key that is not an address', el6('db.example', 'fdaa::5')],
    ['an add without a value', el6('fd00::5')],
  ])('%s is refused as invalid', async (_name, obj) => {
    await expectRejected(new Transaction().add(obj), 'invalid');
  });

  test('deleting with a key of the wrong family fails', async () => {
    await expectRejected(new Transaction().delete(el4('fd00::1')), 'invalid', /Could not resolve hostname/);
  });

  test('key spelling variants name the same element (the kernel stores binary addresses)', async () => {
    await nft.run(new Transaction().add(el6('FD00:0000:0000:0000:0000:0000:0000:0009', 'fdaa::9')));
    expect(elementsOf(await list()).dnat6).toContain('fd00::9 -> fdaa::9');
    await expectRejected(new Transaction().add(el6('fd00::9', 'fdbb::9')), 'exists', /File exists/);
    await nft.run(new Transaction().delete(el6('fd00:0::09')));
    expect(elementsOf(await list()).dnat6).not.toContain('fd00::9 -> fdaa::9');
  });

  test('hit() counts traffic per element, by any spelling, and refuses unknown elements', async () => {
    nft.hit('inet', 'addrmap', 'dnat4', '10.0.0.1', 2, 100);
    nft.hit('inet', 'addrmap', 'dnat6', 'FD00::2');
    const maps = (await list())!.maps;
    expect(maps.find((m) => m.name === 'dnat4')!.elements[0]!.counter).toEqual({ packets: 2, bytes: 100 });
    expect(maps.find((m) => m.name === 'dnat6')!.elements.find((e) => e.key === 'fd00::2')!.counter).toEqual({ packets: 1, bytes: 60 });
    expect(() => nft.hit('inet', 'addrmap', 'dnat6', 'fd00::77')).toThrow(/no element/);
  });

  test('counters survive unrelated transactions', async () => {
    nft.hit('inet', 'addrmap', 'dnat6', 'fd00::1', 4, 240);
    await nft.run(new Transaction().add(el6('fd00::3', 'fdaa::3')).delete(el6('fd00::2')).add(table));
    const e = (await list())!.maps.find((m) => m.name === 'dnat6')!.elements.find((x) => x.key === 'fd00::1');
    expect(e?.counter).toEqual({ packets: 4, bytes: 240 });
  });
});

describe('FakeNft tables, maps, chains and rules', () => {
  test('adding an existing table is idempotent and keeps its contents', async () => {
    const before = await list();
    await nft.run(new Transaction().add(table).add(table));
    expect(await list()).toEqual(before);
  });

  test('creating an existing table fails with EEXIST', async () => {
    await expectRejected(new Transaction().create(table), 'exists', /File exists/);
  });

  test('deleting a missing table fails with ENOENT', async () => {
    const notFound = /No such file or directory/;
    await expectRejected(new Transaction().delete({ table: { family: 'inet', name: 'nope' } }), 'not-found', notFound, true);
    // Same name, other family: a different table.
    await expectRejected(new Transaction().delete({ table: { family: 'ip6', name: 'addrmap' } }), 'not-found', notFound, true);
  });

  test('check answers what run would, and commits nothing', async () => {
    const before = await list();
    await nft.check(new Transaction().delete(table));
    await expect(nft.check(new Transaction().create(table))).rejects.toMatchObject({ kind: 'exists' });
    expect(await list()).toEqual(before);
    expect(nft.history).toHaveLength(1);
  });

  test("addrmap's client refuses another table's operations before anything is evaluated", async () => {
    const before = await list();
    for (const t of [
      new Transaction().add({ table: { family: 'inet', name: 'firewall' } }),
      new Transaction().add(table).delete({ table: { family: 'ip6', name: 'addrmap' } }),
    ])
      for (const how of [(x: Transaction) => nft.run(x), (x: Transaction) => nft.check(x)])
        await expect(how(t)).rejects.toMatchObject({ kind: 'invalid', detail: expect.stringMatching(/works on inet addrmap only/) });
    expect(await list()).toEqual(before);
    expect(nft.history).toHaveLength(1); // the table's, made before each test
  });

  test('"add, delete, add table" empties an existing table', async () => {
    await nft.run(new Transaction().add(table).delete(table).add(table));
    expect(await list()).toEqual({ table: TABLE, chains: [], rules: [], maps: [] });
  });

  test('"add, delete, add table" works when the table does not exist', async () => {
    const fresh = new FakeNft();
    await fresh.run(new Transaction().add(table).delete(table).add(table));
    expect(await fresh.listTable('inet', 'addrmap')).toEqual({ table: TABLE, chains: [], rules: [], maps: [] });
  });

  test('a plain delete of the table removes it with everything in it', async () => {
    await nft.run(new Transaction().delete(table));
    expect(await list()).toBeNull();
  });

  test('listing a missing table gives null', async () => {
    expect(await new FakeNft().listTable('inet', 'addrmap')).toBeNull();
  });

  test('objects inside a missing table fail with ENOENT', async () => {
    const fresh = new FakeNft();
    fresh.externalDeleteTable('inet', 'addrmap');
    await expect(fresh.run(new Transaction().add({ map: MAPS[0]! }))).rejects.toThrow(/No such file or directory/);
  });

  test('deleting a map referenced by a rule fails with EBUSY', async () => {
    await expectRejected(new Transaction().delete({ map: MAPS[1]! }), 'busy', /Device or resource busy/);
  });

  test('a map can be deleted once the rules referring to it are gone', async () => {
    const rules = (await list())!.rules.filter((r) => JSON.stringify(r.expr).includes('@dnat6'));
    expect(rules).toHaveLength(4); // two DNAT and two count rules
    const tx = new Transaction();
    for (const r of rules) tx.delete({ rule: r });
    tx.delete({ map: MAPS[1]! });
    await nft.run(tx);
    const after = (await list())!;
    expect(after.maps.map((m) => m.name)).toEqual(['dnat4', 'self_in6', 'self_out6']);
    expect(after.rules).toHaveLength(12);
  });

  test('deleting a rule by a handle that does not exist fails', async () => {
    await expectRejected(
      new Transaction().delete({ rule: { ...ref, chain: 'dnat_output', expr: [], handle: 9999 } }),
      'not-found',
      /No such file or directory/,
    );
  });

  test('a rule referring to a missing map fails', async () => {
    const expr = [
      { dnat: { family: 'ip6', addr: { map: { key: { payload: { protocol: 'ip6', field: 'daddr' } }, data: '@nosuchmap' } } } },
    ];
    await expectRejected(new Transaction().add({ rule: { ...ref, chain: 'dnat_output', expr } }), 'not-found', /No such file or directory/);
  });

  test('a rule in a missing chain fails', async () => {
    await expectRejected(
      new Transaction().add({ rule: { ...ref, chain: 'nochain', expr: [{ accept: null }] } }),
      'not-found',
      /No such file or directory/,
    );
  });

  test('rules get increasing handles', async () => {
    const handles = (await list())!.rules.map((r) => r.handle!);
    expect(handles).toHaveLength(16);
    expect([...handles].sort((a, b) => a - b)).toEqual(handles);
    expect(new Set(handles).size).toBe(16);
  });

  test('creating an existing map or chain fails; adding one with the same definition is a no-op', async () => {
    const before = await list();
    const chain = before!.chains[0]!;
    await nft.run(new Transaction().add({ map: MAPS[0]! }).add({ chain }));
    expect(await list()).toEqual(before);
    await expectRejected(new Transaction().create({ map: MAPS[0]! }), 'exists', /File exists/);
    await expectRejected(new Transaction().create({ chain }), 'exists', /File exists/);
  });

  test('adding an existing map with another type fails', async () => {
    await expectRejected(new Transaction().add({ map: { ...MAPS[0]!, type: 'ipv6_addr', map: 'ipv6_addr' } }), 'exists', /File exists/);
  });

  test('adding an existing base chain with another hook fails', async () => {
    const chain = (await list())!.chains[0]!;
    await expectRejected(new Transaction().add({ chain: { ...chain, hook: 'input' } }), 'invalid', /Operation not supported/);
  });

  test('flushing a map empties it and keeps its rules', async () => {
    await nft.run(new Transaction().flush({ map: MAPS[1]! }));
    const after = (await list())!;
    expect(elementsOf(after)).toEqual({ dnat4: ['10.0.0.1 -> 10.9.0.1'], dnat6: [] });
    expect(after.rules).toHaveLength(16);
  });

  test('externalDeleteTable removes the table outside any transaction', async () => {
    const n = nft.history.length;
    nft.externalDeleteTable('inet', 'addrmap');
    expect(await list()).toBeNull();
    expect(nft.history).toHaveLength(n);
  });
});

// What the contract test (test/kernel/nft-contract.test.ts) found the kernel doing, held here where no kernel is needed.
describe('FakeNft as the kernel does it', () => {
  const chainOf = async (name: string) => (await list())!.chains.find((c) => c.name === name)!;

  test('flush table empties the chains and keeps the elements', async () => {
    await nft.run(new Transaction().flush(table));
    const after = (await list())!;
    expect(after.rules).toEqual([]);
    expect(elementsOf(after)).toEqual({ dnat4: ['10.0.0.1 -> 10.9.0.1'], dnat6: ['fd00::1 -> fdaa::1', 'fd00::2 -> fdaa::2'] });
  });

  test('adding a base chain again sets its policy (accept unless given); another type fails with EEXIST', async () => {
    const chain = await chainOf('dnat_output');
    await nft.run(new Transaction().add({ chain: { ...chain, policy: 'drop' } }));
    expect((await chainOf('dnat_output')).policy).toBe('drop');
    await nft.run(new Transaction().add({ chain: { ...chain, policy: undefined } }));
    expect((await chainOf('dnat_output')).policy).toBe('accept');
    await expectRejected(new Transaction().add({ chain: { ...chain, type: 'filter' } }), 'exists');
    await expectRejected(new Transaction().add({ chain: { ...chain, policy: 'drop', prio: 5 } }), 'invalid');
  });

  test('a regular chain spelt over a base chain changes nothing; the other way round fails', async () => {
    const before = await list();
    await nft.run(new Transaction().add({ chain: { ...ref, name: 'dnat_output' } }));
    expect(await list()).toEqual(before);
    const base = await chainOf('dnat_output');
    await expectRejected(new Transaction().add({ chain: { ...base, name: 'prefix_dnat' } }), 'invalid', /Operation not supported/);
  });

  test('deleting a chain another chain jumps to fails with EBUSY; one with only its own rules goes with them', async () => {
    await expectRejected(new Transaction().delete({ chain: { ...ref, name: 'prefix_dnat' } }), 'busy', /Device or resource busy/);
    await nft.run(new Transaction().delete({ chain: { ...ref, name: 'self_postrouting' } }));
    expect((await list())!.rules.filter((r) => r.chain === 'self_postrouting')).toEqual([]);
  });

  test.each([
    ['an unknown statement', 'prefix_dnat', [{ frobnicate: null }], 'invalid'],
    ['a jump to a missing chain', 'prefix_dnat', [{ jump: { target: 'nochain' } }], 'not-found'],
    ['a jump to a base chain', 'prefix_dnat', [{ jump: { target: 'dnat_output' } }], 'invalid'],
    [
      'an IPv4 key looked up in the IPv6 map',
      'prefix_dnat',
      [{ dnat: { family: 'ip', addr: { map: { key: { payload: { protocol: 'ip', field: 'daddr' } }, data: '@dnat6' } } } }],
      'invalid',
    ],
    [
      'a prefix too long',
      'prefix_dnat',
      [{ match: { op: '==', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: { prefix: { addr: '10.0.0.0', len: 33 } } } }],
      'invalid',
    ],
    ['dnat without a family in an inet table', 'prefix_dnat', [{ dnat: { addr: 'fdaa::1' } }], 'invalid'],
    ['dnat reached from a filter chain', 'prefix_count', [{ dnat: { family: 'ip6', addr: 'fdaa::1' } }], 'invalid'],
    ['snat in a prerouting chain', 'dnat_prerouting', [{ snat: { family: 'ip6', addr: 'fdaa::1' } }], 'invalid'],
    ['a chain that reaches itself', 'prefix_dnat', [{ jump: { target: 'prefix_dnat' } }], 'invalid'],
  ] as const)('a rule with %s is refused', async (_name, chain, expr, kind) => {
    await expectRejected(new Transaction().add({ rule: { ...ref, chain, expr: [...expr] } }), kind);
  });

  test("nft's complaint about the batch wins over the kernel's, wherever it stands", async () => {
    await expectRejected(new Transaction().delete(el6('fd00::99')).add(el6('10.0.0.1', 'fdaa::1')), 'invalid');
    await expectRejected(new Transaction().add(el6('fd00::1', 'fdbb::1')).delete(el6('fd00::99')), 'exists');
  });

  test('rules are listed as nft lists them: chain by chain, counters with values, addresses and prefixes canonical', async () => {
    const d6 = { payload: { protocol: 'ip6', field: 'daddr' } };
    await nft.run(
      new Transaction()
        .add({ rule: { ...ref, chain: 'prefix_count', expr: [{ counter: null }, { return: null }] } })
        .add({
          rule: {
            ...ref,
            chain: 'prefix_dnat',
            expr: [
              { match: { op: '==', left: d6, right: { prefix: { addr: 'FD00:5::1', len: 64 } } } },
              { dnat: { family: 'ip6', addr: 'FDAA::1' } },
            ],
          },
        })
        .add({
          rule: {
            ...ref,
            chain: 'prefix_dnat',
            expr: [{ match: { op: '==', left: d6, right: { prefix: { addr: 'fd00::9', len: 128 } } } }, { accept: null }],
          },
        }),
    );
    const rules = (await list())!.rules;
    const prefixDnat = rules.findIndex((r) => r.chain === 'prefix_dnat');
    expect(rules.slice(prefixDnat, prefixDnat + 3).map((r) => [r.chain, r.expr])).toEqual([
      [
        'prefix_dnat',
        [{ match: { op: '==', left: d6, right: { prefix: { addr: 'fd00:5::', len: 64 } } } }, { dnat: { family: 'ip6', addr: 'fdaa::1' } }],
      ],
      ['prefix_dnat', [{ match: { op: '==', left: d6, right: 'fd00::9' } }, { accept: null }]],
      ['prefix_count', [{ counter: { packets: 0, bytes: 0 } }, { return: null }]],
    ]);
  });

  test('addresses are read as nft reads them and listed as it prints them', async () => {
    await nft.run(
      new Transaction()
        .add(el4('10.8', '0x0a.0.0.2'))
        .add(el4('010.000.000.003', '10.0.0.3'))
        .add(el6('::ffff:10.0.0.7', '::ffff:10.9.0.7'))
        .add(el6('1:0:0:1:1:0:0:1', 'FDAA:0:0:0:1:0:0:0')),
    );
    const { dnat4, dnat6 } = elementsOf(await list());
    expect(dnat4).toEqual(expect.arrayContaining(['10.0.0.8 -> 10.0.0.2', '8.0.0.3 -> 10.0.0.3']));
    expect(dnat6).toEqual(expect.arrayContaining(['::ffff:10.0.0.7 -> ::ffff:10.9.0.7', '1::1:1:0:0:1 -> fdaa::1:0:0:0']));
    await expectRejected(new Transaction().add(el4('10.0.0.256', '10.9.0.1')), 'invalid');
    await expectRejected(new Transaction().add(el6('1::2::3', 'fdaa::1')), 'invalid');
  });

  test('an existing map with or without counters is another definition (EEXIST)', async () => {
    await expectRejected(new Transaction().add({ map: { ...MAPS[0]!, counter: false } }), 'exists');
  });
});

describe('FakeNft.failNextRun', () => {
  test('injects one failure: the next run fails without changing anything, the one after works', async () => {
    nft.failNextRun('Operation not permitted');
    const tx = new Transaction().add(el6('fd00::3', 'fdaa::3'));
    await expectRejected(tx, 'other', /^Operation not permitted$/);
    await nft.run(tx);
    expect(elementsOf(await list()).dnat6).toContain('fd00::3 -> fdaa::3');
    expect(nft.history.slice(-2).map((h) => h.committed)).toEqual([false, true]);
  });

  test('failures queue up, one per run, with their messages', async () => {
    nft.failNextRun('first');
    nft.failNextRun('second');
    const tx = new Transaction().add(el6('fd00::3', 'fdaa::3'));
    await expect(nft.run(tx)).rejects.toThrow(/: first$/);
    await expect(nft.run(tx)).rejects.toThrow(/: second$/);
    await expect(nft.run(tx)).resolves.toBeUndefined();
  });

  test('an injected failure applies even to an empty transaction', async () => {
    nft.failNextRun();
    await expect(nft.run(new Transaction())).rejects.toThrow(/Operation not permitted/);
  });
});

describe("nftErrorKind: nft's answers (as nft 1.0.6 prints them) read as the kinds the fake throws", () => {
  test.each([
    ['internal:0:0-0: Error: Could not process rule: No such file or directory', 'not-found'],
    ['internal:0:0-0: Error: No such file or directory; did you mean map ‘dnat4’ in table inet ‘addrmap’?', 'not-found'],
    ['Error: No such file or directory\nlist table inet nope\n                ^^^^', 'not-found'],
    ['internal:0:0-0: Error: Could not process rule: File exists', 'exists'],
    ['internal:0:0-0: Error: Could not process rule: Device or resource busy', 'busy'],
    ['internal:0:0-0: Error: Could not process rule: Invalid argument', 'invalid'],
    ['internal:0:0-0: Error: Could not process rule: Operation not supported', 'invalid'],
    ['internal:0:0-0: Error: Could not process rule: Too many links', 'invalid'],
    ['internal:0:0-0: Error: Could not resolve hostname: Address family for hostname not supported', 'invalid'],
    ['internal:0:0-0: Error: datatype mismatch, map expects IPv6 address, mapping expression has type IPv4 address', 'invalid'],
    [
      "internal:0:0-0: Error: Unknown statement object 'frobnicate'.\n\ninternal:0:0-0: Error: Parsing expr array at index 0 failed.",
      'invalid',
    ],
    ['netlink: Error: set is not a map', 'invalid'],
    ['internal:0:0-0: Error: Could not process rule: Operation not permitted', 'other'],
    ['netlink: Error: Could not receive message', 'other'],
    ['\n(killed by SIGSEGV)', 'other'],
    // One line per failed command, in batch order: the first decides.
    [
      'internal:0:0-0: Error: Could not process rule: File exists\n\ninternal:0:0-0: Error: Could not process rule: No such file or directory',
      'exists',
    ],
  ])('%s', (stderr, kind) => {
    expect(nftErrorKind(stderr)).toBe(kind);
  });
});
