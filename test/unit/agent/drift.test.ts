// DriftDetector without processes: `nft -j monitor` lines are fed to
// handleEvent() by hand, shaped like real monitor output, and the periodic
// chain check is called directly. start() is never called (it spawns nft).
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { DriftDetector } from '../../../src/agent/drift.js';
import { FakeNft, NftError, Transaction, type Chain, type NftInterface } from '../../../src/kernel/nft/index.js';
import { EMPTY_VIEW, planSync } from '../../../src/kernel/plan.js';
import { CHAINS, TABLE } from '../../../src/kernel/ruleset.js';
import { desired, memoryLogger } from '../fakes.js';
import { NftThrough } from '../nft-through.js';

interface DriftCall {
  reason: string;
  certain: boolean;
}

/** An nft whose run() waits until the test opens the gate, to deliver events while a transaction is in flight. */
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

/** The chain listing is the test's `chains` (or its error); everything else is the fake's. */
class ScriptedChains extends NftThrough {
  override async listChains(): Promise<Chain[]> {
    listChainsCalls++;
    if (chains instanceof Error) throw chains;
    return chains;
  }
}

let nft: FakeNft;
let calls: DriftCall[];
let chains: Chain[] | Error;
let listChainsCalls: number;

beforeEach(() => {
  vi.useFakeTimers();
  nft = new FakeNft();
  calls = [];
  chains = [];
  listChainsCalls = 0;
});

afterEach(() => {
  vi.useRealTimers();
});

function detectorOver(inner: NftInterface = nft): DriftDetector {
  const d = new DriftDetector(new ScriptedChains(inner), { log: memoryLogger().log });
  d.setOnDrift((reason, certain) => calls.push({ reason, certain }));
  return d;
}

const checkChains = (d: DriftDetector): Promise<void> => (d as unknown as { checkChains(): Promise<void> }).checkChains();

// --- monitor lines, as `nft -j monitor` prints them -------------------------

type Item = unknown;
/** A map element with a counter, as the monitor prints it for addrmap's maps. */
const counted = (key: string, value: string): Item => [{ elem: { val: key, counter: { packets: 0, bytes: 0 } } }, value];
const elementLine = (verb: 'add' | 'delete', map: string, items: Item[], table = 'addrmap', family = 'inet') =>
  JSON.stringify({ [verb]: { element: { family, table, name: map, elem: { set: items } } } });
const tableLine = (verb: 'add' | 'delete', name = 'addrmap', family = 'inet', handle = 1) =>
  JSON.stringify({ [verb]: { table: { family, name, handle } } });
const ruleLine = (verb: 'add' | 'delete', chain: string, table = 'addrmap', family = 'inet') =>
  JSON.stringify({ [verb]: { rule: { family, table, chain, handle: 3, expr: [] } } });
const chainLine = (verb: 'add' | 'delete', name: string, table = 'addrmap', family = 'inet') =>
  JSON.stringify({ [verb]: { chain: { family, table, name, handle: 2, type: 'nat', hook: 'output', prio: -100, policy: 'accept' } } });
const mapLine = (verb: 'add' | 'delete', name: string) =>
  JSON.stringify({
    [verb]: { map: { family: 'inet', name, table: 'addrmap', type: 'ipv6_addr', handle: 5, map: 'ipv6_addr', stmt: [{ counter: null }] } },
  });

const el6 = (key: string, value?: string) => ({
  family: 'inet' as const,
  table: 'addrmap',
  name: 'dnat6',
  key,
  ...(value === undefined ? {} : { value }),
});
const el4 = (key: string, value?: string) => ({
  family: 'inet' as const,
  table: 'addrmap',
  name: 'dnat4',
  key,
  ...(value === undefined ? {} : { value }),
});

/** Puts addrmap's table with these IPv6 mappings into the fake kernel, without the detector seeing it. */
async function installTable(v6: Record<string, string> = {}, v4: Record<string, string> = {}): Promise<void> {
  await nft.run(planSync(EMPTY_VIEW, desired(v6, v4)).tx);
}

const rebuildTx = (v6: Record<string, string> = {}) => planSync(EMPTY_VIEW, desired(v6)).tx;

describe('handleEvent: events that are not about addrmap', () => {
  test.each([
    ['another table', tableLine('add', 'other', 'inet', 4)],
    ['a table called addrmap in another family', tableLine('delete', 'addrmap', 'ip', 5)],
    ['an element of a map in another table', elementLine('add', 'dnat6', [counted('fdaa::7', 'fdaa::8')], 'other')],
    ['an element in another family', elementLine('delete', 'dnat6', ['fdaa::7'], 'addrmap', 'ip6')],
    ['a rule in another table', ruleLine('delete', 'dnat_output', 'filter')],
    ['a rule in another family', ruleLine('delete', 'dnat_output', 'addrmap', 'ip')],
    ['a chain with our name in another table', chainLine('delete', 'dnat_output', 'nat')],
    ['a line that is not JSON', '# new generation 7 by process 1234 (nft)'],
    ['an empty line', ''],
    ['a truncated line', '{"delete": {"table": {"family": "inet", "na'],
  ])('%s is ignored', (_name, line) => {
    const d = detectorOver();
    d.handleEvent(line);
    expect(calls).toEqual([]);
  });

  test('events for other tables during a quiet window do not cause a verification', async () => {
    const d = detectorOver();
    await d.run(rebuildTx({ 'fd00::1': 'fdaa::1' }));
    d.handleEvent(tableLine('add', 'other'));
    d.handleEvent(ruleLine('add', 'input', 'filter'));
    vi.advanceTimersByTime(1000);
    expect(calls).toEqual([]);
  });
});

describe('handleEvent: echoes of the detector’s own element changes', () => {
  test.each([
    ['same spelling', 'fdaa::7', 'fdaa::7'],
    ['transaction upper case and expanded, monitor canonical', 'FDAA:0000:0:0::0007', 'fdaa::7'],
    ['transaction canonical, monitor expanded', 'fdaa::7', 'fdaa:0:0:0:0:0:0:7'],
  ])('an add echo is consumed exactly once (%s); the same event again is drift', async (_name, txKey, monitorKey) => {
    await installTable();
    const d = detectorOver();
    await d.run(new Transaction().add({ element: el6(txKey, 'fdaa::8') }));
    expect(await nft.listTable('inet', 'addrmap')).not.toBeNull();
    d.handleEvent(elementLine('add', 'dnat6', [counted(monitorKey, 'fdaa::8')]));
    expect(calls).toEqual([]);
    d.handleEvent(elementLine('add', 'dnat6', [counted(monitorKey, 'fdaa::8')]));
    expect(calls).toEqual([{ reason: 'add element fdaa::7 in map dnat6 by another tool', certain: true }]);
  });

  test.each([
    ['key and value with counter', [counted('fdaa::7', 'fdaa::8')]],
    ['key and value', [['fdaa::7', 'fdaa::8']]],
    ['key only', ['fdaa::7']],
    ['key object only', [{ elem: { val: 'fdaa::7', counter: { packets: 3, bytes: 180 } } }]],
  ])('a delete echo is consumed in any element shape (%s)', async (_name, items) => {
    await installTable({ 'fdaa::7': 'fdaa::8' });
    const d = detectorOver();
    await d.run(new Transaction().delete({ element: el6('fdaa::7') }));
    d.handleEvent(elementLine('delete', 'dnat6', items));
    expect(calls).toEqual([]);
    d.handleEvent(elementLine('delete', 'dnat6', items));
    expect(calls).toEqual([{ reason: 'delete element fdaa::7 in map dnat6 by another tool', certain: true }]);
  });

  test('a retarget (delete and add of one key) consumes both echoes', async () => {
    await installTable({ 'fdaa::7': 'fdaa::8' });
    const d = detectorOver();
    await d.run(new Transaction().delete({ element: el6('fdaa::7') }).add({ element: el6('fdaa::7', 'fdaa::9') }));
    d.handleEvent(elementLine('delete', 'dnat6', [counted('fdaa::7', 'fdaa::8')]));
    d.handleEvent(elementLine('add', 'dnat6', [counted('fdaa::7', 'fdaa::9')]));
    expect(calls).toEqual([]);
  });

  test('each transaction accounts for its own echo: three adds and removes of one key, three echoes each, a fourth is drift', async () => {
    await installTable();
    const d = detectorOver();
    for (let i = 0; i < 3; i++) {
      await d.run(new Transaction().add({ element: el6('fdaa::7', 'fdaa::8') }));
      await d.run(new Transaction().delete({ element: el6('fdaa::7') }));
    }
    for (let i = 0; i < 3; i++) {
      d.handleEvent(elementLine('add', 'dnat6', [counted('fdaa::7', 'fdaa::8')]));
      d.handleEvent(elementLine('delete', 'dnat6', [counted('fdaa::7', 'fdaa::8')]));
    }
    expect(calls).toEqual([]);
    d.handleEvent(elementLine('delete', 'dnat6', [counted('fdaa::7', 'fdaa::8')]));
    expect(calls).toEqual([{ reason: 'delete element fdaa::7 in map dnat6 by another tool', certain: true }]);
  });

  test('the verb and the map are part of the match', async () => {
    await installTable({}, {});
    const d = detectorOver();
    await d.run(new Transaction().add({ element: el6('fdaa::7', 'fdaa::8') }).add({ element: el4('10.0.0.1', '10.9.0.1') }));
    d.handleEvent(elementLine('delete', 'dnat6', [counted('fdaa::7', 'fdaa::8')]));
    d.handleEvent(elementLine('add', 'dnat6', [counted('10.0.0.1', '10.9.0.1')]));
    expect(calls).toEqual([
      { reason: 'delete element fdaa::7 in map dnat6 by another tool', certain: true },
      { reason: 'add element 10.0.0.1 in map dnat6 by another tool', certain: true },
    ]);
    // The expected echoes themselves are still consumed.
    d.handleEvent(elementLine('add', 'dnat6', [counted('fdaa::7', 'fdaa::8')]));
    d.handleEvent(elementLine('add', 'dnat4', [counted('10.0.0.1', '10.9.0.1')]));
    expect(calls).toHaveLength(2);
  });

  test('in an event with own and foreign elements, only the foreign ones are reported', async () => {
    await installTable();
    const d = detectorOver();
    await d.run(new Transaction().add({ element: el6('fdaa::7', 'fdaa::8') }));
    d.handleEvent(elementLine('add', 'dnat6', [counted('fdaa::7', 'fdaa::8'), counted('FDAA:0:0:0:0:0:0:9', 'fdbb::1')]));
    expect(calls).toEqual([{ reason: 'add element fdaa::9 in map dnat6 by another tool', certain: true }]);
  });

  test('many foreign elements are summarised: the first three and an ellipsis', () => {
    const d = detectorOver();
    d.handleEvent(
      elementLine(
        'add',
        'dnat6',
        ['fdaa::1', 'fdaa::2', 'fdaa::3', 'fdaa::4', 'fdaa::5'].map((k) => counted(k, 'fdbb::1')),
      ),
    );
    expect(calls).toEqual([{ reason: 'add element fdaa::1, fdaa::2, fdaa::3, … in map dnat6 by another tool', certain: true }]);
  });

  test('an echo that has not come within 5 s is no longer expected', async () => {
    await installTable();
    const d = detectorOver();
    await d.run(new Transaction().add({ element: el6('fdaa::7', 'fdaa::8') }));
    vi.advanceTimersByTime(5001);
    d.handleEvent(elementLine('add', 'dnat6', [counted('fdaa::7', 'fdaa::8')]));
    expect(calls).toEqual([{ reason: 'add element fdaa::7 in map dnat6 by another tool', certain: true }]);
  });

  test('run() passes the transaction to the kernel, and list() reads it', async () => {
    const d = detectorOver();
    await d.run(rebuildTx({ 'fd00::1': 'fdaa::1' }));
    expect(nft.history.map((h) => h.committed)).toEqual([true]);
    expect(await d.list()).toEqual(await nft.listTable('inet', 'addrmap'));
    expect((await d.list())!.maps.find((m) => m.name === 'dnat6')!.elements.map((e) => e.key)).toEqual(['fd00::1']);
  });
});

describe('handleEvent: changes by another tool', () => {
  test.each([
    ['the table deleted', tableLine('delete'), 'delete table addrmap by another tool'],
    ['the table added', tableLine('add'), 'add table addrmap by another tool'],
    ['a rule deleted', ruleLine('delete', 'dnat_output'), 'delete rule in chain dnat_output by another tool'],
    ['a rule added', ruleLine('add', 'dnat_prerouting'), 'add rule in chain dnat_prerouting by another tool'],
    ['a chain deleted', chainLine('delete', 'dnat_prerouting'), 'delete chain dnat_prerouting by another tool'],
    ['a chain added', chainLine('add', 'sneaky'), 'add chain sneaky by another tool'],
    ['a map deleted', mapLine('delete', 'dnat4'), 'delete map dnat4 by another tool'],
    ['an element added', elementLine('add', 'dnat6', [counted('fdaa::7', 'fdaa::8')]), 'add element fdaa::7 in map dnat6 by another tool'],
    [
      'an element deleted',
      elementLine('delete', 'dnat6', [counted('fdaa::7', 'fdaa::8')]),
      'delete element fdaa::7 in map dnat6 by another tool',
    ],
    [
      'an IPv4 element added',
      elementLine('add', 'dnat4', [counted('10.0.0.1', '10.9.0.1')]),
      'add element 10.0.0.1 in map dnat4 by another tool',
    ],
  ])('%s is certain drift, named in the reason', (_name, line, reason) => {
    const d = detectorOver();
    d.handleEvent(line);
    expect(calls).toEqual([{ reason, certain: true }]);
  });

  test('a transaction without table operations opens no quiet window', async () => {
    await installTable();
    const d = detectorOver();
    await d.run(new Transaction().add({ element: el6('fdaa::7', 'fdaa::8') }));
    d.handleEvent(ruleLine('delete', 'dnat_output'));
    expect(calls).toEqual([{ reason: 'delete rule in chain dnat_output by another tool', certain: true }]);
  });
});

describe('the quiet window after a transaction with a table operation', () => {
  test('events during the transaction and until 200 ms pass without one are suppressed, then verified exactly once', async () => {
    const gated = new GatedNft(nft);
    const d = detectorOver(gated);
    const running = d.run(rebuildTx({ 'fd00::1': 'fdaa::1' }));
    // In flight: the rebuild's own echoes and a foreign change alike are held back.
    d.handleEvent(tableLine('add'));
    d.handleEvent(elementLine('add', 'dnat6', [counted('fd00::1', 'fdaa::1')]));
    d.handleEvent(ruleLine('delete', 'dnat_output'));
    vi.advanceTimersByTime(10_000);
    expect(calls).toEqual([]);

    gated.open();
    await running;
    vi.advanceTimersByTime(150);
    d.handleEvent(chainLine('add', 'dnat_output'));
    // A late echo keeps the window open for another 200 ms (large rebuilds echo for seconds).
    vi.advanceTimersByTime(199);
    expect(calls).toEqual([]);
    vi.advanceTimersByTime(20);
    expect(calls).toEqual([{ reason: 'verification after a table rebuild', certain: false }]);
    vi.advanceTimersByTime(10_000);
    expect(calls).toHaveLength(1);

    // After the window, changes are reported as they come.
    d.handleEvent(ruleLine('delete', 'dnat_prerouting'));
    expect(calls).toEqual([
      { reason: 'verification after a table rebuild', certain: false },
      { reason: 'delete rule in chain dnat_prerouting by another tool', certain: true },
    ]);
  });

  test('a rebuild’s element echoes that arrive after the window (a busy event loop) are still its own, not drift', async () => {
    const d = detectorOver();
    await d.run(rebuildTx({ 'fd00::1': 'fdaa::1', 'fd00::2': 'fdaa::2' }));
    d.handleEvent(tableLine('add'));
    vi.advanceTimersByTime(1000); // the agent was busy: the window closed before the elements were read
    expect(calls).toEqual([{ reason: 'verification after a table rebuild', certain: false }]);
    d.handleEvent(elementLine('add', 'dnat6', [counted('fd00::1', 'fdaa::1')]));
    d.handleEvent(elementLine('add', 'dnat6', [counted('fd00::2', 'fdaa::2')]));
    expect(calls).toHaveLength(1);
    // Each echo is used up once: the same event again is another tool's.
    d.handleEvent(elementLine('add', 'dnat6', [counted('fd00::2', 'fdaa::2')]));
    expect(calls.at(-1)).toEqual({ reason: 'add element fd00::2 in map dnat6 by another tool', certain: true });
  });

  test('a quiet window in which nothing arrived needs no verification', async () => {
    const d = detectorOver();
    await d.run(rebuildTx({ 'fd00::1': 'fdaa::1' }));
    vi.advanceTimersByTime(10_000);
    expect(calls).toEqual([]);
  });

  test('deleting the table (feature off) opens the window too', async () => {
    await installTable({ 'fd00::1': 'fdaa::1' });
    const d = detectorOver();
    await d.run(new Transaction().delete({ table: TABLE }));
    d.handleEvent(tableLine('delete'));
    expect(calls).toEqual([]);
    vi.advanceTimersByTime(250);
    expect(calls).toEqual([{ reason: 'verification after a table rebuild', certain: false }]);
  });

  test('a failed rebuild still opens the window, and the error reaches the caller', async () => {
    nft.failNextRun('Operation not permitted');
    const d = detectorOver();
    await expect(d.run(rebuildTx({ 'fd00::1': 'fdaa::1' }))).rejects.toBeInstanceOf(NftError);
    d.handleEvent(ruleLine('add', 'dnat_output'));
    expect(calls).toEqual([]);
    vi.advanceTimersByTime(250);
    expect(calls).toEqual([{ reason: 'verification after a table rebuild', certain: false }]);
  });

  test('overlapping rebuilds extend the window and verify once, after the last', async () => {
    const d = detectorOver();
    await d.run(rebuildTx({ 'fd00::1': 'fdaa::1' }));
    vi.advanceTimersByTime(100);
    d.handleEvent(tableLine('add'));
    await d.run(rebuildTx({ 'fd00::2': 'fdaa::2' }));
    vi.advanceTimersByTime(150); // the first rebuild's timer fires inside the second window
    expect(calls).toEqual([]);
    vi.advanceTimersByTime(100);
    expect(calls).toEqual([{ reason: 'verification after a table rebuild', certain: false }]);
    vi.advanceTimersByTime(10_000);
    expect(calls).toHaveLength(1);
  });
});

describe('the chain check', () => {
  async function ourChains(): Promise<Chain[]> {
    await installTable({ 'fd00::1': 'fdaa::1' });
    return (await nft.listTable('inet', 'addrmap'))!.chains;
  }

  test('nothing is checked while the table is not expected', async () => {
    const d = detectorOver();
    d.tableExpected = false;
    chains = [];
    await checkChains(d);
    expect(listChainsCalls).toBe(0);
    expect(calls).toEqual([]);
  });

  test('all of addrmap’s chains present with their hooks and priorities: no drift', async () => {
    const d = detectorOver();
    d.tableExpected = true;
    chains = [...(await ourChains()), { family: 'inet', table: 'filter', name: 'input', type: 'filter', hook: 'input', prio: 0 }];
    await checkChains(d);
    expect(listChainsCalls).toBe(1);
    expect(calls).toEqual([]);
  });

  test('a missing chain is certain drift, named', async () => {
    const d = detectorOver();
    d.tableExpected = true;
    chains = (await ourChains()).filter((c) => c.name !== 'dnat_prerouting');
    await checkChains(d);
    expect(calls).toEqual([{ reason: 'chain dnat_prerouting missing or changed', certain: true }]);
  });

  test('no chains at all (table deleted or ruleset flushed) names every chain', async () => {
    const d = detectorOver();
    d.tableExpected = true;
    chains = [];
    await checkChains(d);
    expect(CHAINS.map((c) => c.name)).toEqual(expect.arrayContaining(['dnat_output', 'dnat_prerouting']));
    expect(calls).toEqual([{ reason: `chain ${CHAINS.map((c) => c.name).join(', ')} missing or changed`, certain: true }]);
  });

  test.each([
    ['another hook', { hook: 'input' as const }],
    ['another priority', { prio: -150 }],
    ['priority 0', { prio: 0 }],
    ['no hook (a regular chain)', { hook: undefined, prio: undefined }],
  ])('dnat_output with %s is drift', async (_name, change) => {
    const d = detectorOver();
    d.tableExpected = true;
    chains = (await ourChains()).map((c) => (c.name === 'dnat_output' ? { ...c, ...change } : c));
    await checkChains(d);
    expect(calls).toEqual([{ reason: 'chain dnat_output missing or changed', certain: true }]);
  });

  test('a failing listing is not drift', async () => {
    const d = detectorOver();
    d.tableExpected = true;
    chains = new NftError('cannot list chains', 'netlink: Error: Could not receive message');
    await expect(checkChains(d)).resolves.toBeUndefined();
    expect(listChainsCalls).toBe(1);
    expect(calls).toEqual([]);
  });
});

// Failing tests documenting bugs in src/drift.ts, reported rather than fixed here.
describe('BUG: expected echoes outlive the transaction they were registered for', () => {
  // BUG: run() registers the element echoes it expects before the transaction
  // runs and never withdraws them when it fails. A failed transaction changes
  // nothing, so no echo will come, and for 5 s a foreign change with the same
  // key is taken for one. Realistic order: another tool maps fdaa::7 to its
  // own address; addrmap's add of fdaa::7 then fails (File exists); the
  // monitor line of the other tool's add, read after run() registered its
  // expectation, is discounted as addrmap's echo, and the foreign mapping is
  // never repaired (the pass failed, and the chain check does not look at
  // elements).
  test('after a failed transaction, a foreign element event with the same key is still drift', async () => {
    await installTable();
    await nft.run(new Transaction().add({ element: el6('fdaa::7', 'fdcc::666') })); // the other tool
    const d = detectorOver();
    await expect(d.run(new Transaction().add({ element: el6('fdaa::7', 'fdaa::8') }))).rejects.toThrow(/File exists/);
    d.handleEvent(elementLine('add', 'dnat6', [counted('fdaa::7', 'fdcc::666')]));
    expect(calls).toEqual([{ reason: 'add element fdaa::7 in map dnat6 by another tool', certain: true }]);
  });

  // BUG: a rebuild registers an expected echo for every element it adds, but
  // its echoes arrive inside the quiet window, where they are suppressed
  // without being consumed. The leftover expectations then swallow a later
  // foreign event with the same key for the rest of the 5 s: here addrmap
  // rebuilds with fdaa::7, later removes it (its echo consumed as it should
  // be), and another tool re-adds fdaa::7 pointing elsewhere: not reported.
  test('a rebuild’s element echoes, suppressed in the quiet window, do not also excuse a later foreign add', async () => {
    const d = detectorOver();
    await d.run(rebuildTx({ 'fdaa::7': 'fdaa::8' }));
    d.handleEvent(tableLine('add'));
    d.handleEvent(elementLine('add', 'dnat6', [counted('fdaa::7', 'fdaa::8')]));
    vi.advanceTimersByTime(250);
    expect(calls).toEqual([{ reason: 'verification after a table rebuild', certain: false }]);

    await d.run(new Transaction().delete({ element: el6('fdaa::7') }));
    d.handleEvent(elementLine('delete', 'dnat6', [counted('fdaa::7', 'fdaa::8')]));
    expect(calls).toHaveLength(1);

    await nft.run(new Transaction().add({ element: el6('fdaa::7', 'fdcc::666') })); // the other tool
    d.handleEvent(elementLine('add', 'dnat6', [counted('fdaa::7', 'fdcc::666')]));
    expect(calls).toEqual([
      { reason: 'verification after a table rebuild', certain: false },
      { reason: 'add element fdaa::7 in map dnat6 by another tool', certain: true },
    ]);
  });
});
