import { describe, expect, test } from 'vitest';
import { decodeListing, encodeBatch, Transaction, type TableListing } from '../../../../src/kernel/nft/index.js';
import { FakeNft } from '../../../fakes/nft.js';
import { EMPTY_VIEW, planSync, viewFromListing } from '../../../../src/kernel/plan.js';
import { desired } from '../../fakes.js';

/** `nft -j list table inet addrmap` as printed by nft 1.0.6 (one chain, one rule, one element). */
const NFT_106_LISTING = `{"nftables":[{"metainfo":{"version":"1.0.6","release_name":"Lester Gooch #5","json_schema_version":1}},{"table":{"family":"inet","name":"addrmap","handle":1}},{"map":{"family":"inet","name":"dnat6","table":"addrmap","type":"ipv6_addr","handle":2,"map":"ipv6_addr","elem":[[{"elem":{"val":"fdaa::1","counter":{"packets":0,"bytes":0}}},"fdaa::2"]],"stmt":[{"counter":null}]}},{"chain":{"family":"inet","table":"addrmap","name":"output","handle":1,"type":"nat","hook":"output","prio":-100,"policy":"accept"}},{"rule":{"family":"inet","table":"addrmap","chain":"output","handle":3,"expr":[{"dnat":{"family":"ip6","addr":{"map":{"key":{"payload":{"protocol":"ip6","field":"daddr"}},"data":"@dnat6"}}}}]}}]}`;

const DNAT6_EXPR = [{ dnat: { family: 'ip6', addr: { map: { key: { payload: { protocol: 'ip6', field: 'daddr' } }, data: '@dnat6' } } } }];
const DNAT4_EXPR = [{ dnat: { family: 'ip', addr: { map: { key: { payload: { protocol: 'ip', field: 'daddr' } }, data: '@dnat4' } } } }];

const ref = { family: 'inet', table: 'addrmap' } as const;
const el = (name: string, key: string, value?: string) => ({ element: { ...ref, name, key, ...(value === undefined ? {} : { value }) } });

describe('encodeBatch', () => {
  // As `nft -j list chain` prints `ct status dnat ct direction original ct state established ct original ip6 daddr @dnat6`.
  const countExpr = (proto: string, map: string) => [
    { match: { op: 'in', left: { ct: { key: 'status' } }, right: 'dnat' } },
    { match: { op: '==', left: { ct: { key: 'direction' } }, right: 'original' } },
    { match: { op: 'in', left: { ct: { key: 'state' } }, right: 'established' } },
    { match: { op: '==', left: { ct: { key: `${proto} daddr`, dir: 'original' } }, right: `@${map}` } },
    { return: null },
  ];

  test('a full plan encodes to the exact libnftables JSON batch', () => {
    const plan = planSync(EMPTY_VIEW, desired({ 'fd00::1': 'fdaa::1', 'fd00::2': 'fdaa::2' }, { '10.0.0.1': '10.9.0.1' }));
    const expected = {
      nftables: [
        { metainfo: { json_schema_version: 1 } },
        { add: { table: { family: 'inet', name: 'addrmap' } } },
        { delete: { table: { family: 'inet', name: 'addrmap' } } },
        { add: { table: { family: 'inet', name: 'addrmap' } } },
        {
          add: { map: { family: 'inet', table: 'addrmap', name: 'dnat4', type: 'ipv4_addr', map: 'ipv4_addr', stmt: [{ counter: null }] } },
        },
        {
          add: { map: { family: 'inet', table: 'addrmap', name: 'dnat6', type: 'ipv6_addr', map: 'ipv6_addr', stmt: [{ counter: null }] } },
        },
        { add: { map: { family: 'inet', table: 'addrmap', name: 'self_in6', type: 'ipv6_addr', map: 'ipv6_addr' } } },
        { add: { map: { family: 'inet', table: 'addrmap', name: 'self_out6', type: 'ipv6_addr', map: 'ipv6_addr' } } },
        {
          add: {
            chain: { family: 'inet', table: 'addrmap', name: 'dnat_output', type: 'nat', hook: 'output', prio: -100, policy: 'accept' },
          },
        },
        {
          add: {
            chain: {
              family: 'inet',
              table: 'addrmap',
              name: 'dnat_prerouting',
              type: 'nat',
              hook: 'prerouting',
              prio: -100,
              policy: 'accept',
            },
          },
        },
        {
          add: {
            chain: { family: 'inet', table: 'addrmap', name: 'count_output', type: 'filter', hook: 'output', prio: 0, policy: 'accept' },
          },
        },
        {
          add: {
            chain: { family: 'inet', table: 'addrmap', name: 'count_forward', type: 'filter', hook: 'forward', prio: 0, policy: 'accept' },
          },
        },
        { add: { chain: { family: 'inet', table: 'addrmap', name: 'prefix_dnat' } } },
        { add: { chain: { family: 'inet', table: 'addrmap', name: 'prefix_count' } } },
        {
          add: {
            chain: {
              family: 'inet',
              table: 'addrmap',
              name: 'self_prerouting',
              type: 'nat',
              hook: 'prerouting',
              prio: -101,
              policy: 'accept',
            },
          },
        },
        {
          add: {
            chain: {
              family: 'inet',
              table: 'addrmap',
              name: 'self_postrouting',
              type: 'nat',
              hook: 'postrouting',
              prio: 100,
              policy: 'accept',
            },
          },
        },
        { add: { rule: { family: 'inet', table: 'addrmap', chain: 'dnat_output', expr: DNAT4_EXPR } } },
        { add: { rule: { family: 'inet', table: 'addrmap', chain: 'dnat_output', expr: DNAT6_EXPR } } },
        { add: { rule: { family: 'inet', table: 'addrmap', chain: 'dnat_output', expr: [{ jump: { target: 'prefix_dnat' } }] } } },
        { add: { rule: { family: 'inet', table: 'addrmap', chain: 'dnat_prerouting', expr: DNAT4_EXPR } } },
        { add: { rule: { family: 'inet', table: 'addrmap', chain: 'dnat_prerouting', expr: DNAT6_EXPR } } },
        { add: { rule: { family: 'inet', table: 'addrmap', chain: 'dnat_prerouting', expr: [{ jump: { target: 'prefix_dnat' } }] } } },
        { add: { rule: { family: 'inet', table: 'addrmap', chain: 'count_output', expr: countExpr('ip', 'dnat4') } } },
        { add: { rule: { family: 'inet', table: 'addrmap', chain: 'count_output', expr: countExpr('ip6', 'dnat6') } } },
        { add: { rule: { family: 'inet', table: 'addrmap', chain: 'count_output', expr: [{ jump: { target: 'prefix_count' } }] } } },
        { add: { rule: { family: 'inet', table: 'addrmap', chain: 'count_forward', expr: countExpr('ip', 'dnat4') } } },
        { add: { rule: { family: 'inet', table: 'addrmap', chain: 'count_forward', expr: countExpr('ip6', 'dnat6') } } },
        { add: { rule: { family: 'inet', table: 'addrmap', chain: 'count_forward', expr: [{ jump: { target: 'prefix_count' } }] } } },
        // As `nft -j list` prints the rules of the own-address chains.
        {
          add: {
            rule: {
              family: 'inet',
              table: 'addrmap',
              chain: 'self_prerouting',
              expr: [
                { match: { op: '==', left: { payload: { protocol: 'ip6', field: 'daddr' } }, right: '@self_in6' } },
                { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: { set: [6, 17] } } },
                { match: { op: '==', left: { socket: { key: 'transparent' } }, right: { set: [0, 1] } } },
                { return: null },
              ],
            },
          },
        },
        {
          add: {
            rule: {
              family: 'inet',
              table: 'addrmap',
              chain: 'self_prerouting',
              expr: [
                { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: { set: [6, 17] } } },
                { dnat: { family: 'ip6', addr: { map: { key: { payload: { protocol: 'ip6', field: 'daddr' } }, data: '@self_in6' } } } },
              ],
            },
          },
        },
        {
          add: {
            rule: {
              family: 'inet',
              table: 'addrmap',
              chain: 'self_postrouting',
              expr: [{ match: { op: '==', left: { meta: { key: 'oifname' } }, right: 'lo' } }, { return: null }],
            },
          },
        },
        {
          add: {
            rule: {
              family: 'inet',
              table: 'addrmap',
              chain: 'self_postrouting',
              expr: [
                { snat: { family: 'ip6', addr: { map: { key: { payload: { protocol: 'ip6', field: 'saddr' } }, data: '@self_out6' } } } },
              ],
            },
          },
        },
        { add: { element: { family: 'inet', table: 'addrmap', name: 'dnat4', elem: [['10.0.0.1', '10.9.0.1']] } } },
        {
          add: {
            element: {
              family: 'inet',
              table: 'addrmap',
              name: 'dnat6',
              elem: [
                ['fd00::1', 'fdaa::1'],
                ['fd00::2', 'fdaa::2'],
              ],
            },
          },
        },
      ],
    };
    const batch = encodeBatch(plan.tx);
    expect(batch).toStrictEqual(expected);
    // Byte for byte, as written to the batch file (key order included).
    expect(JSON.stringify(batch)).toBe(JSON.stringify(expected));
  });

  test('the text carries a null counter statement and numeric priorities', () => {
    const text = JSON.stringify(encodeBatch(planSync(EMPTY_VIEW, desired()).tx));
    expect(text).toContain('"stmt":[{"counter":null}]');
    expect(text).toContain('"prio":-100');
    expect(text).not.toContain('"prio":"');
    expect(text.startsWith('{"nftables":[{"metainfo":{"json_schema_version":1}}')).toBe(true);
  });

  test('a delta: consecutive element operations on one map with one verb are one command; deletes are bare keys, adds [key, value] pairs', () => {
    const tx = new Transaction()
      .delete(el('dnat6', 'fd00::1'))
      .delete(el('dnat6', 'fd00::2'))
      .delete(el('dnat4', '10.0.0.1'))
      .add(el('dnat6', 'fd00::1', 'fdbb::1'))
      .add(el('dnat6', 'fd00::3', 'fdbb::3'))
      .add(el('dnat4', '10.0.0.2', '10.9.0.2'))
      .add(el('dnat4', '10.0.0.3', '10.9.0.3'));
    expect(JSON.stringify(encodeBatch(tx))).toBe(
      JSON.stringify({
        nftables: [
          { metainfo: { json_schema_version: 1 } },
          { delete: { element: { family: 'inet', table: 'addrmap', name: 'dnat6', elem: ['fd00::1', 'fd00::2'] } } },
          { delete: { element: { family: 'inet', table: 'addrmap', name: 'dnat4', elem: ['10.0.0.1'] } } },
          {
            add: {
              element: {
                family: 'inet',
                table: 'addrmap',
                name: 'dnat6',
                elem: [
                  ['fd00::1', 'fdbb::1'],
                  ['fd00::3', 'fdbb::3'],
                ],
              },
            },
          },
          {
            add: {
              element: {
                family: 'inet',
                table: 'addrmap',
                name: 'dnat4',
                elem: [
                  ['10.0.0.2', '10.9.0.2'],
                  ['10.0.0.3', '10.9.0.3'],
                ],
              },
            },
          },
        ],
      }),
    );
  });

  test('grouping keeps order: a delete+add retarget of one key stays delete then add, and interleaved maps are not merged', () => {
    const tx = new Transaction()
      .delete(el('dnat6', 'fd00::1'))
      .add(el('dnat6', 'fd00::1', 'fdbb::1'))
      .add(el('dnat4', '10.0.0.1', '10.9.0.1'))
      .add(el('dnat6', 'fd00::2', 'fdbb::2'));
    expect(encodeBatch(tx).nftables.slice(1)).toEqual([
      { delete: { element: { ...ref, name: 'dnat6', elem: ['fd00::1'] } } },
      { add: { element: { ...ref, name: 'dnat6', elem: [['fd00::1', 'fdbb::1']] } } },
      { add: { element: { ...ref, name: 'dnat4', elem: [['10.0.0.1', '10.9.0.1']] } } },
      { add: { element: { ...ref, name: 'dnat6', elem: [['fd00::2', 'fdbb::2']] } } },
    ]);
  });

  test('a non-element operation ends a group of elements', () => {
    const tx = new Transaction()
      .add(el('dnat6', 'fd00::1', 'fdbb::1'))
      .add({ table: { family: 'inet', name: 'addrmap' } })
      .add(el('dnat6', 'fd00::2', 'fdbb::2'));
    expect(encodeBatch(tx).nftables.slice(1)).toEqual([
      { add: { element: { ...ref, name: 'dnat6', elem: [['fd00::1', 'fdbb::1']] } } },
      { add: { table: { family: 'inet', name: 'addrmap' } } },
      { add: { element: { ...ref, name: 'dnat6', elem: [['fd00::2', 'fdbb::2']] } } },
    ]);
  });

  test('delete encodes objects by name: chains without hook, maps without type, rules by handle', () => {
    const tx = new Transaction()
      .delete({ chain: { ...ref, name: 'dnat_output', type: 'nat', hook: 'output', prio: -100, policy: 'accept' } })
      .delete({ map: { ...ref, name: 'dnat4', type: 'ipv4_addr', map: 'ipv4_addr', counter: true } })
      .delete({ rule: { ...ref, chain: 'dnat_output', expr: DNAT4_EXPR, handle: 7 } });
    expect(encodeBatch(tx).nftables.slice(1)).toStrictEqual([
      { delete: { chain: { ...ref, name: 'dnat_output' } } },
      { delete: { map: { ...ref, name: 'dnat4' } } },
      { delete: { rule: { ...ref, chain: 'dnat_output', handle: 7 } } },
    ]);
  });

  test('a regular chain has no hook; a map without counters has no stmt; a rule comment is sent; create and flush keep their verb', () => {
    const tx = new Transaction()
      .create({ chain: { ...ref, name: 'helper' } })
      .create({ map: { ...ref, name: 'plain', type: 'ipv4_addr', map: 'ipv4_addr' } })
      .add({ rule: { ...ref, chain: 'helper', expr: [{ accept: null }], comment: 'hi' } })
      .flush({ table: { family: 'inet', name: 'addrmap' } });
    expect(JSON.stringify(encodeBatch(tx).nftables.slice(1))).toBe(
      JSON.stringify([
        { create: { chain: { family: 'inet', table: 'addrmap', name: 'helper' } } },
        { create: { map: { family: 'inet', table: 'addrmap', name: 'plain', type: 'ipv4_addr', map: 'ipv4_addr' } } },
        { add: { rule: { family: 'inet', table: 'addrmap', chain: 'helper', comment: 'hi', expr: [{ accept: null }] } } },
        { flush: { table: { family: 'inet', name: 'addrmap' } } },
      ]),
    );
  });

  test('an empty transaction is the metainfo alone', () => {
    expect(encodeBatch(new Transaction())).toStrictEqual({ nftables: [{ metainfo: { json_schema_version: 1 } }] });
  });

  test('100 000 element adds on one map are a single command', () => {
    const tx = new Transaction();
    for (let i = 1; i <= 100_000; i++) tx.add(el('dnat6', `fd00::${i.toString(16)}`, 'fdaa::1'));
    const batch = encodeBatch(tx);
    expect(batch.nftables).toHaveLength(2);
    const cmd = batch.nftables[1] as { add: { element: { elem: unknown[] } } };
    expect(cmd.add.element.elem).toHaveLength(100_000);
  });
});

describe('decodeListing', () => {
  test('decodes real nft 1.0.6 output: table, map with element counters, base chain, rule', () => {
    expect(decodeListing(JSON.parse(NFT_106_LISTING))).toStrictEqual<TableListing>({
      table: { family: 'inet', name: 'addrmap' },
      chains: [{ family: 'inet', table: 'addrmap', name: 'output', type: 'nat', hook: 'output', prio: -100, policy: 'accept' }],
      rules: [{ family: 'inet', table: 'addrmap', chain: 'output', expr: DNAT6_EXPR, handle: 3 }],
      maps: [
        {
          family: 'inet',
          table: 'addrmap',
          name: 'dnat6',
          type: 'ipv6_addr',
          map: 'ipv6_addr',
          counter: true,
          elements: [
            { family: 'inet', table: 'addrmap', name: 'dnat6', key: 'fdaa::1', value: 'fdaa::2', counter: { packets: 0, bytes: 0 } },
          ],
        },
      ],
    });
  });

  test('round trip: re-encoding the decoded listing gives back the objects nft printed, minus handles and elements', () => {
    const raw = JSON.parse(NFT_106_LISTING) as { nftables: Record<string, Record<string, unknown>>[] };
    const listing = decodeListing(raw)!;
    const tx = new Transaction().add({ table: listing.table });
    for (const { elements: _e, ...map } of listing.maps) tx.add({ map });
    for (const chain of listing.chains) tx.add({ chain });
    for (const { handle: _h, ...rule } of listing.rules) tx.add({ rule });
    for (const m of listing.maps) for (const e of m.elements) tx.add({ element: e });
    const sent = encodeBatch(tx)
      .nftables.slice(1)
      .map((c) => (c as { add: Record<string, unknown> }).add);

    const printed = (kind: string) => {
      const o = { ...raw.nftables.find((i) => kind in i)![kind]! };
      delete o.handle;
      delete o.elem;
      return o;
    };
    expect(sent[0]).toEqual({ table: printed('table') });
    expect(sent[1]).toEqual({ map: printed('map') });
    expect(sent[2]).toEqual({ chain: printed('chain') });
    expect(sent[3]).toEqual({ rule: printed('rule') });
    expect(sent[4]).toEqual({ element: { family: 'inet', table: 'addrmap', name: 'dnat6', elem: [['fdaa::1', 'fdaa::2']] } });
    expect(sent).toHaveLength(5);
  });

  test('round trip through the fake: committing the re-encoded objects lists the same table', async () => {
    const listing = decodeListing(JSON.parse(NFT_106_LISTING))!;
    const nft = new FakeNft();
    const tx = new Transaction().add({ table: listing.table });
    for (const { elements: _e, ...map } of listing.maps) tx.add({ map });
    for (const chain of listing.chains) tx.add({ chain });
    for (const { handle: _h, ...rule } of listing.rules) tx.add({ rule });
    for (const m of listing.maps) for (const { counter: _c, ...e } of m.elements) tx.add({ element: e });
    await nft.run(tx);
    const again = (await nft.listTable('inet', 'addrmap'))!;
    const strip = (l: TableListing) => ({ ...l, rules: l.rules.map(({ handle: _h, ...r }) => r) });
    expect(strip(again)).toEqual(strip(listing));
  });

  test("the sample is not addrmap's layout (one chain named output), so its view forces a rebuild but keeps its mapping", () => {
    const v = viewFromListing(decodeListing(JSON.parse(NFT_106_LISTING)));
    expect(v).toEqual({ layoutOk: false, v4: new Map(), v6: new Map([['fdaa::1', 'fdaa::2']]), prefixes: [] });
  });

  test('elements without counters ([key, value] pairs) and maps without stmt decode', () => {
    const listing = decodeListing({
      nftables: [
        { metainfo: { json_schema_version: 1 } },
        { table: { family: 'inet', name: 'addrmap', handle: 4 } },
        {
          map: {
            family: 'inet',
            name: 'dnat4',
            table: 'addrmap',
            type: 'ipv4_addr',
            handle: 5,
            map: 'ipv4_addr',
            elem: [
              ['10.0.0.1', '10.9.0.1'],
              ['10.0.0.2', '10.9.0.2'],
            ],
          },
        },
        { chain: { family: 'inet', table: 'addrmap', name: 'helper', handle: 6 } },
      ],
    })!;
    expect(listing.maps[0]!.counter).toBe(false);
    expect(listing.maps[0]!.elements).toEqual([
      { family: 'inet', table: 'addrmap', name: 'dnat4', key: '10.0.0.1', value: '10.9.0.1' },
      { family: 'inet', table: 'addrmap', name: 'dnat4', key: '10.0.0.2', value: '10.9.0.2' },
    ]);
    // A regular chain carries no hook fields.
    expect(listing.chains).toStrictEqual([{ family: 'inet', table: 'addrmap', name: 'helper' }]);
  });

  test('an empty map has no elements', () => {
    const listing = decodeListing({
      nftables: [
        { table: { family: 'inet', name: 'addrmap', handle: 1 } },
        {
          map: {
            family: 'inet',
            name: 'dnat6',
            table: 'addrmap',
            type: 'ipv6_addr',
            handle: 2,
            map: 'ipv6_addr',
            stmt: [{ counter: null }],
          },
        },
      ],
    })!;
    expect(listing.maps).toEqual([expect.objectContaining({ name: 'dnat6', counter: true, elements: [] })]);
  });

  test('output without a table decodes to null', () => {
    expect(decodeListing({ nftables: [{ metainfo: { version: '1.0.6', json_schema_version: 1 } }] })).toBeNull();
  });

  test.each([[{}], [null], [{ nftables: {} }], ['text']])('output without an nftables array (%j) is an error', (doc) => {
    expect(() => decodeListing(doc)).toThrow(/no "nftables" array/);
  });
});
