// listFlows over a conntrack table that records what it is asked: which
// families are dumped, and which flows come back.
import { describe, expect, test } from 'vitest';
import type { ConntrackTable, FlowEntry } from '../../../src/kernel/conntrack.js';
import type { IpFamily } from '../../../src/net/address.js';
import { listFlows } from '../../../src/support/flows.js';

function recordingTable(entries: FlowEntry[]): { table: ConntrackTable; dumped: IpFamily[] } {
  const dumped: IpFamily[] = [];
  const table: ConntrackTable = {
    via: 'test',
    list: (family: IpFamily, wanted?: (origDst: string) => boolean) => {
      dumped.push(family);
      return Promise.resolve(entries.filter((e) => e.family === family && (!wanted || wanted(e.origDst))));
    },
    remove: () => Promise.reject(new Error('not used')),
  } as unknown as ConntrackTable;
  return { table, dumped };
}

const flow = (family: IpFamily, origDst: string, replySrc: string): FlowEntry => ({
  family,
  proto: 'udp',
  origSrc: family === 6 ? 'fd00:9::1' : '10.9.0.1',
  origDst,
  sport: 4000,
  dport: 53,
  replySrc,
});

describe('listFlows', () => {
  test('dumps only the families that have stale addresses (a dump walks the whole conntrack hash)', async () => {
    const { table, dumped } = recordingTable([flow(6, 'fd00:1::1', 'fd00:2::1'), flow(4, '10.0.0.1', '10.0.0.1')]);
    const flows = await listFlows(new Map([['fd00:1::1', 'fd00:2::1']]), table);
    expect(dumped).toEqual([6]);
    expect(flows).toEqual([expect.objectContaining({ dst: 'fd00:1::1', answeredBy: 'fd00:2::1', translated: true })]);
  });

  test('both families when both have stale addresses, prefix mappings included', async () => {
    const { table, dumped } = recordingTable([flow(4, '10.0.0.7', '10.0.0.7'), flow(6, 'fd00:1::5', 'fd00:1::5')]);
    const flows = await listFlows(
      new Map([
        ['10.0.0.0/24', '10.1.0.0/24'],
        ['fd00:1::5', 'fd00:2::5'],
      ]),
      table,
    );
    expect(dumped).toEqual([4, 6]);
    expect(flows.map((f) => [f.dst, f.prefix ?? null, f.translated])).toEqual([
      ['10.0.0.7', '10.0.0.0/24', false],
      ['fd00:1::5', null, false],
    ]);
  });
});
