// DriftDetector without a kernel: generations and losses are handed to it as
// the notification socket would, and who committed them is decided by the
// test (a thread of ours, another process, a task that is gone).
import { beforeEach, describe, expect, test } from 'vitest';
import { DriftDetector, type DriftOptions, type DriftReport } from '../../../src/agent/drift.js';
import type { EventHandlers } from '../../../src/kernel/netlink/nft-events.js';
import type { Generation } from '../../../src/kernel/netlink/nft-notifications.js';
import { Transaction, type NftInterface } from '../../../src/kernel/nft/index.js';
import { FakeNft } from '../../fakes/nft.js';
import { EMPTY_VIEW, planSync } from '../../../src/kernel/plan.js';
import { desired, memoryLogger } from '../fakes.js';
import { NftThrough } from '../nft-through.js';

/** An nft whose run() waits until the test opens the gate: a transaction of ours in flight. */
class GatedNft extends NftThrough {
  private release!: () => void;
  private readonly gate = new Promise<void>((r) => (this.release = r));
  open(): void {
    this.release();
  }
  override async run(tx: Transaction): Promise<void> {
    await this.gate;
    return this.inner.run(tx);
  }
}

const OURS = 4242;
const GONE = 5151;
const OTHER = 6161;

let reports: DriftReport[];
let handlers: EventHandlers[];
let closed: number;
let logger: ReturnType<typeof memoryLogger>;

beforeEach(() => {
  reports = [];
  handlers = [];
  closed = 0;
  logger = memoryLogger();
});

function detector(over: Partial<DriftOptions> = {}, inner: NftInterface = new FakeNft()): DriftDetector {
  const d = new DriftDetector(inner, {
    log: logger.log,
    subscribe: (_table, on) => {
      handlers.push(on);
      return { receiveBuffer: 8 << 20, close: async () => void closed++ };
    },
    pidsVisible: true,
    isOwnTask: (pid) => pid === OURS,
    taskExists: (pid) => pid !== GONE,
    ...over,
  });
  d.setOnDrift((r) => reports.push(r));
  d.subscribe();
  d.tableExpected = true;
  return d;
}

const on = () => handlers.at(-1)!;
const gen = (pid: number | undefined, comm = 'nft', over: Partial<Generation> = {}): Generation => ({
  id: 7,
  ...(pid === undefined ? {} : { pid, comm }),
  changes: 1,
  sample: [
    { type: 'object', verb: 'delete', object: 'element', family: 'inet', table: 'addrmap', name: 'dnat6', key: 'fdaa::1', generation: 7 },
  ],
  ...over,
});
/** A whole table with one mapping, as the first pass sends it. */
const oneElement = () => planSync(EMPTY_VIEW, desired({ 'fd00::1': 'fdaa::1' }), true).tx;

describe('whose transaction', () => {
  test('one committed by a thread of ours (or an nft we started) is not drift', () => {
    detector();
    on().generation(gen(OURS, 'libuv-worker'));
    expect(reports).toEqual([]);
  });

  test("another process's is drift, once, naming it", () => {
    detector();
    on().generation(gen(OTHER));
    expect(reports).toEqual([{ reason: `delete element fdaa::1 in dnat6 by nft (pid ${OTHER})`, certain: true, pid: OTHER, comm: 'nft' }]);
  });

  test('a deleted table is named as such, however many rules and sets went with it', () => {
    detector();
    const table = { type: 'object', verb: 'delete', object: 'table', family: 'inet', table: 'addrmap', generation: 7 } as const;
    on().generation(gen(OTHER, 'nft', { changes: 32, sample: [table] }));
    expect(reports[0]!.reason).toBe(`delete table inet addrmap (32 changes) by nft (pid ${OTHER})`);
  });

  test('nothing is reported while the table is not expected (feature off, before the first pass)', () => {
    const d = detector();
    d.tableExpected = false;
    on().generation(gen(OTHER));
    expect(reports).toEqual([]);
  });

  test('a task that is gone, while one of ours is in flight, gets a look at the table, not a drift line', async () => {
    const gated = new GatedNft(new FakeNft());
    const d = detector({}, gated);
    const running = d.run(oneElement());
    on().generation(gen(GONE));
    gated.open();
    await running;
    expect(reports).toEqual([{ reason: `delete element fdaa::1 in dnat6 by nft (pid ${GONE}) while addrmap committed`, certain: false }]);
    // Outside our commits, a vanished task's change is drift like any other.
    on().generation(gen(GONE));
    expect(reports[1]).toMatchObject({ certain: true, pid: GONE });
  });

  test('in a pid namespace of its own the kernel names tasks it cannot look up: a look while committing, drift otherwise', async () => {
    const gated = new GatedNft(new FakeNft());
    const d = detector({ pidsVisible: false }, gated);
    const running = d.run(oneElement());
    on().generation(gen(OURS));
    gated.open();
    await running;
    on().generation(gen(OTHER));
    expect(reports.map((r) => r.certain)).toEqual([false, true]);
  });
});

describe('lost notifications', () => {
  test('are logged once and verified, without a drift line', () => {
    detector();
    on().lost('the receive buffer overflowed', false);
    expect(reports).toEqual([{ reason: 'notifications lost (the receive buffer overflowed)', certain: false }]);
    expect(logger.records.find((r) => r.event === 'events_lost')).toMatchObject({ level: 40, ownCommit: false });
  });

  test('heard before the table is expected (between a pass and the watcher saying so): checked once it is', () => {
    const d = detector();
    d.tableExpected = false;
    on().lost('the receive buffer overflowed', false);
    on().generation(gen(OTHER));
    expect(reports).toEqual([]);
    d.tableExpected = true;
    expect(reports).toEqual([{ reason: 'notifications lost (the receive buffer overflowed)', certain: false }]);
    d.tableExpected = true;
    expect(reports).toHaveLength(1);
    // With the feature off nothing is kept for later.
    d.tableExpected = false;
    on().generation(gen(OTHER));
    d.tableExpected = false;
    expect(reports).toHaveLength(1);
  });

  test('during a commit of ours whose generation was not seen, say so (info, not a warning)', async () => {
    const d = detector();
    await d.run(oneElement());
    on().lost('the receive buffer overflowed', false);
    expect(logger.records.find((r) => r.event === 'events_lost')).toMatchObject({ level: 30, ownCommit: true });
    on().generation(gen(OURS));
    on().lost('the receive buffer overflowed', false);
    expect(logger.records.filter((r) => r.event === 'events_lost').map((r) => r.ownCommit)).toEqual([true, false]);
  });

  test('a transaction that commits nothing is not one of ours to wait for', async () => {
    const d = detector();
    await d.run(new Transaction());
    on().lost('the receive buffer overflowed', false);
    expect(logger.records.find((r) => r.event === 'events_lost')).toMatchObject({ ownCommit: false });
  });

  test('a failed socket is replaced by a new subscription', () => {
    detector();
    on().lost('nf_tables notifications stopped: recv: errno 9', true);
    expect(handlers).toHaveLength(2);
    expect(reports).toHaveLength(1);
    on().generation(gen(OTHER));
    expect(reports).toHaveLength(2);
  });
});

describe('subscription', () => {
  test('a failure to subscribe is thrown, saying why', () => {
    const d = new DriftDetector(new FakeNft(), {
      log: logger.log,
      subscribe: () => {
        throw new Error('cannot subscribe to nf_tables notifications: join NFNLGRP_NFTABLES: errno 1');
      },
    });
    expect(() => d.subscribe()).toThrow(/cannot subscribe to nf_tables notifications/);
  });

  test('stop closes it, and what arrives after is ignored', async () => {
    const d = detector();
    const last = on();
    await d.stop();
    expect(closed).toBe(1);
    last.lost('the receive buffer overflowed', true);
    expect(reports).toEqual([]);
    expect(handlers).toHaveLength(1);
  });

  test('the detector passes everything else through to the nft it wraps', async () => {
    const inner = new FakeNft();
    const d = detector({}, inner);
    await d.run(oneElement());
    expect(d.table).toEqual(inner.table);
    expect((await d.list())?.maps.find((m) => m.name === 'dnat6')?.elements.map((e) => e.key)).toEqual(['fd00::1']);
  });
});
