import { beforeEach, describe, expect, test } from 'vitest';
import type { FlowEntry, StaleTarget } from '../../../src/kernel/conntrack.js';
import { ConntrackCleanup, type CleanupOutcome } from '../../../src/kernel/conntrack-cleanup.js';
import { unavailableConntrack } from '../../../src/kernel/netlink/ctnetlink.js';
import { FakeConntrackTable } from '../../fakes/conntrack.js';

const flow = (origDst: string, replySrc: string, sport: number, proto = 'udp'): FlowEntry => ({
  family: origDst.includes(':') ? 6 : 4,
  proto,
  origSrc: origDst.includes(':') ? 'fd00:1::1' : '10.0.0.5',
  origDst,
  sport,
  dport: 7000,
  replySrc,
});

describe('ConntrackCleanup over a conntrack table', () => {
  let table: FakeConntrackTable;
  beforeEach(() => {
    table = new FakeConntrackTable();
  });

  const clean = async (
    targets: StaleTarget[],
    t: () => ConstructorParameters<typeof ConntrackCleanup>[0] extends () => infer T ? T : never = () => table,
  ) => {
    const outcomes: CleanupOutcome[] = [];
    const c = new ConntrackCleanup(t, (o) => outcomes.push(o));
    c.request(targets);
    await c.settled();
    return outcomes;
  };

  test('no targets: the table is not read', async () => {
    expect(await clean([])).toEqual([]);
    expect(table.reads).toEqual([]);
  });

  test('deletes flows to the stale address whose reply does not come from the target, and only those', async () => {
    const untranslated = flow('fdbb::1', 'fdbb::1', 40000);
    const toOldTarget = flow('fdbb::1', 'fdaa:0:18:a7b:c2::2', 41000, 'tcp');
    const toNewTarget = flow('fdbb::1', 'fdcc::2', 42000, 'tcp');
    const unmapped = flow('fd00:9::9', 'fd00:9::9', 1);
    table.flows = [untranslated, toOldTarget, toNewTarget, unmapped];
    expect(await clean([{ family: 6, from: 'fdbb::1', to: 'fdcc::2' }])).toMatchObject([{ targets: 1, removed: 2 }]);
    expect(table.flows).toEqual([toNewTarget, unmapped]);
  });

  test('a prefix mapping: flows into the stale network not answered from the same host bits of the target network', async () => {
    const stale = flow('fdbb::7', 'fdbb::7', 1);
    const moved = flow('fdbb::8', 'fdcc::8', 2);
    table.flows = [stale, moved];
    expect(await clean([{ family: 6, from: 'fdbb::', to: 'fdcc::', length: 64 }])).toMatchObject([{ removed: 1 }]);
    expect(table.flows).toEqual([moved]);
  });

  test('reads each family once and only for families with targets', async () => {
    table.flows = [flow('10.1.0.9', '10.1.0.9', 1)];
    const r = await clean([
      { family: 4, from: '10.1.0.9', to: '10.2.0.9' },
      { family: 4, from: '10.1.0.10', to: '10.2.0.10' },
    ]);
    expect(r).toMatchObject([{ targets: 2, removed: 1 }]);
    expect(table.reads).toEqual(['sweep 4']);
  });

  test('requests during a cleanup are merged into one more round, the newest target winning', async () => {
    const outcomes: CleanupOutcome[] = [];
    const c = new ConntrackCleanup(
      () => table,
      (o) => outcomes.push(o),
    );
    c.request([{ family: 6, from: 'fdbb::1', to: 'fdcc::2' }]);
    c.request([{ family: 6, from: 'fdbb::2', to: 'fdcc::3' }]);
    c.request([{ family: 6, from: 'fdbb::2', to: 'fdcc::4' }]);
    await c.settled();
    expect(outcomes.map((o) => o.targets)).toEqual([1, 1]);
    expect(table.reads).toEqual(['sweep 6', 'sweep 6']);
  });

  test('where the FFI cannot load: a warning naming why, not an error', async () => {
    const why = new Error(
      'in-process kernel access unavailable: the koffi addon (koffi.node) is neither installed nor shipped beside addrmap',
    );
    expect(await clean([{ family: 6, from: 'fdbb::1', to: 'fdcc::2' }], () => unavailableConntrack(why))).toEqual([
      {
        targets: 1,
        removed: 0,
        durationMs: expect.any(Number),
        warning: `conntrack cleanup incomplete: ctnetlink unavailable (${why.message})`,
      },
    ]);
  });

  test('a failing read is a warning', async () => {
    table.failWith = new Error('netlink dump: errno 1');
    expect(await clean([{ family: 6, from: 'fdbb::1', to: 'fdcc::2' }])).toMatchObject([
      { removed: 0, warning: 'conntrack cleanup incomplete: netlink dump: errno 1' },
    ]);
  });
});

describe('ConntrackCleanup rounds', () => {
  /** A table with nothing to delete that records each sweep's family. */
  const table = (sweeps: number[]) => ({
    via: 'test',
    list: async () => [],
    sweep: async (family: 4 | 6) => {
      sweeps.push(family);
      return 0;
    },
  });

  test('a request arriving as the last round ends (before the queue is seen empty twice) still gets its round', async () => {
    const sweeps: number[] = [];
    const outcomes: CleanupOutcome[] = [];
    let asked = false;
    const c: ConntrackCleanup = new ConntrackCleanup(
      () => table(sweeps),
      (o) => {
        outcomes.push(o);
        // Queued now, run after the round's loop has found the queue empty.
        if (!asked) queueMicrotask(() => c.request([{ family: 4, from: '10.0.0.1', to: '10.0.0.2' }]));
        asked = true;
      },
    );
    c.request([{ family: 6, from: 'fdbb::1', to: 'fdcc::2' }]);
    await c.settled();
    await new Promise((r) => setTimeout(r, 10));
    await c.settled();
    expect(sweeps).toEqual([6, 4]);
    expect(outcomes).toHaveLength(2);
  });
});
