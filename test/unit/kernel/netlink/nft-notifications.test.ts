// The nf_tables notification parser, on datagrams captured from Linux 6.18
// (nft 1.0.6 changing a table shaped like addrmap's, in a network namespace):
// message types, nfgenmsg, attribute layout and the NEWGEN that closes a
// transaction, as the kernel really sends them.
import { describe, expect, test } from 'vitest';
import {
  parseNftEvent,
  TransactionAssembler,
  type GenerationEvent,
  type ObjectEvent,
} from '../../../../src/kernel/netlink/nft-notifications.js';
import { messages } from '../../../../src/kernel/netlink/socket.js';

const datagram = (...hex: string[]) => Buffer.from(hex.join(''), 'hex');
/** `nft delete element inet addrmap dnat6 { fdaa::1 }`: one DELSETELEM (with the element's counter). */
const deleteElement6 = datagram(
  '900000000e0a0000000000003c260000010000190c000100616464726d6170000a000200646e617436000000640003006000',
  '01001800010014000100fdaa00000000000000000000000000011800020014000100fdaa0000000000000000000000000002',
  '2c0007000c000100636f756e746572001c0002000c00010000000000000000000c0002000000000000000000',
);
/** Its NEWGEN, alone in the next datagram: generation 25, pid 9788, "nft". */
const gen25 = datagram('2c0000000f0a0000010000003c260000000000190800010000000019080002000000263c080003006e667400');
/** `nft delete element inet addrmap dnat4 { 198.51.100.10 }`. */
const deleteElement4 = datagram(
  '780000000e0a0000000000003f2600000100001a0c000100616464726d6170000a000200646e6174340000004c0003004800',
  '01000c00010008000100c633640a0c00020008000100c63364142c0007000c000100636f756e746572001c0002000c000100',
  '00000000000000000c0002000000000000000000',
);
/** `nft delete table inet addrmap`: DELRULE, DELSET x2, DELCHAIN, DELTABLE in one datagram; no element events. */
const deleteTable = datagram(
  '34010000080a0000010000004f2600000100001b0c000100616464726d61700010000200646e61745f6f7574707574000c00',
  '03000000000000000004f800040024000100090001006d6574610000000014000200080002000000000f0800010000000001',
  '2c00010008000100636d700020000200080001000000000108000200000000000c000300050001000a000000340001000c00',
  '01007061796c6f61640024000200080001000000000108000200000000010800030000000018080004000000001038000100',
  '0b0001006c6f6f6b75700000280002000a000100646e61743600000008000200000000010800030000000001080005000000',
  '000038000100080001006e6174002c0002000800010000000001080002000000000a08000300000000010800040000000001',
  '0800070000000001380000000b0a0000010000004f2600000100001b0c000100616464726d6170000a000200646e61743600',
  '00000c0010000000000000000001380000000b0a0000010000004f2600000100001b0c000100616464726d6170000a000200',
  '646e6174340000000c00100000000000000000023c000000050a0000010000004f2600000100001b0c000100616464726d61',
  '700010000300646e61745f6f7574707574000c000200000000000000000334000000020a0000010000004f2600000100001b',
  '0c000100616464726d61700008000300000000000c000400000000000000000a',
);
/** Its NEWGEN: generation 27, pid 9807. */
const gen27 = datagram('2c0000000f0a0000010000004f2600000000001b080001000000001b080002000000264f080003006e667400');

const events = (...dgs: Buffer[]) => dgs.flatMap((d) => [...messages(d)].map(parseNftEvent));
const TABLE = { family: 'inet', name: 'addrmap' };

describe('parseNftEvent', () => {
  test('an element deleted: its table, family, set, key and generation', () => {
    expect(events(deleteElement6)).toEqual([
      {
        type: 'object',
        verb: 'delete',
        object: 'element',
        family: 'inet',
        table: 'addrmap',
        name: 'dnat6',
        key: 'fdaa::1',
        generation: 25,
      },
    ]);
    expect(events(deleteElement4)[0]).toMatchObject({ object: 'element', name: 'dnat4', key: '198.51.100.10', generation: 26 });
  });

  test('NEWGEN: the generation id and the committing task', () => {
    expect(events(gen25)).toEqual([{ type: 'generation', id: 25, pid: 9788, comm: 'nft' }]);
  });

  test('a deleted table: one event per rule, set and chain, then the table (rules name their chain)', () => {
    const evs = events(deleteTable) as ObjectEvent[];
    expect(evs.map((e) => `${e.verb} ${e.object} ${e.name ?? ''}`.trim())).toEqual([
      'delete rule dnat_output',
      'delete set dnat6',
      'delete set dnat4',
      'delete chain dnat_output',
      'delete table',
    ]);
    expect(new Set(evs.map((e) => `${e.family} ${e.table} ${e.generation}`))).toEqual(new Set(['inet addrmap 27']));
  });

  test('other subsystems and message types are not nf_tables changes', () => {
    const ctnetlink = Buffer.from(gen25);
    ctnetlink.writeUInt16LE((1 << 8) | 15, 4);
    expect(events(ctnetlink)).toEqual([null]);
    const getGen = Buffer.from(gen25);
    getGen.writeUInt16LE((10 << 8) | 16, 4);
    expect(events(getGen)).toEqual([null]);
  });

  test('a NEWGEN without the process attributes (older kernels) still closes its transaction', () => {
    const bare = Buffer.from(gen25.subarray(0, 28));
    bare.writeUInt32LE(28, 0);
    expect(events(bare)).toEqual([{ type: 'generation', id: 25 } satisfies GenerationEvent]);
  });
});

describe('TransactionAssembler', () => {
  const feed = (a: TransactionAssembler, ...dgs: Buffer[]) =>
    events(...dgs)
      .flatMap((ev) => (ev ? [a.add(ev)] : []))
      .filter((g) => g !== null);

  test('one generation per transaction, with who committed it', () => {
    const a = new TransactionAssembler(TABLE);
    expect(feed(a, deleteElement6, gen25)).toEqual([
      { id: 25, pid: 9788, comm: 'nft', changes: 1, sample: [expect.objectContaining({ key: 'fdaa::1' })] },
    ]);
  });

  test('a deleted table is one generation, its table event first in the sample', () => {
    const [g] = feed(new TransactionAssembler(TABLE), deleteTable, gen27);
    expect(g).toMatchObject({ id: 27, pid: 9807, changes: 5 });
    expect(g!.sample.map((e) => e.object)).toEqual(['table', 'rule', 'set']);
  });

  test('transactions that leave the table alone are not reported', () => {
    expect(feed(new TransactionAssembler({ family: 'inet', name: 'other' }), deleteTable, gen27)).toEqual([]);
    expect(feed(new TransactionAssembler({ family: 'ip', name: 'addrmap' }), deleteElement6, gen25)).toEqual([]);
  });

  test('after a reset (events lost) the next NEWGEN closes nothing collected before', () => {
    const a = new TransactionAssembler(TABLE);
    feed(a, deleteElement6);
    a.reset();
    expect(feed(a, gen25)).toEqual([]);
  });
});
