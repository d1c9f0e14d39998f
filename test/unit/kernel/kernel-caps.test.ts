// The table's shape follows what the kernel accepts: the probe picks it, and
// the plan, the view and the counters work the same in every shape. (On real
// kernels: test/vm, the kernel matrix.)
import { describe, expect, test } from 'vitest';
import { probeKernel } from '../../../src/kernel/kernel-caps.js';
import { NftError, type Transaction } from '../../../src/kernel/nft/index.js';
import { FakeNft } from '../../fakes/nft.js';
import { EMPTY_VIEW, planSync, viewFromListing, viewOf } from '../../../src/kernel/plan.js';
import { buildRuleset, missingCapabilities, normalizeExpr, type KernelCaps } from '../../../src/kernel/ruleset.js';
import { countersOf } from '../../../src/agent/usage.js';
import { desired } from '../fakes.js';

/** A kernel like 6.1: a lookup whose set is a map (a match against "@map") is EINVAL. */
function kernelRejecting(rejects: (tx: Transaction) => boolean) {
  const seen: Transaction[] = [];
  const validate = async (tx: Transaction) => {
    seen.push(tx);
    if (rejects(tx)) throw new NftError("the kernel rejects addrmap's table", 'Error: Could not process rule: Invalid argument');
  };
  return { validate, seen };
}

const rulesOf = (tx: Transaction) => tx.operations.flatMap((op) => ('rule' in op.object ? [op.object.rule] : []));
const mapNames = (tx: Transaction) => new Set(tx.operations.flatMap((op) => ('map' in op.object ? [op.object.map.name] : [])));
/** A match whose right side is a map, not a set: what 6.1 rejects. */
const mapAsSet = (tx: Transaction) => {
  const maps = mapNames(tx);
  return rulesOf(tx).some((r) =>
    JSON.stringify(r.expr)
      .match(/"right":"@(\w+)"/g)
      ?.some((m) => maps.has(m.slice(10, -1))),
  );
};

describe('probeKernel', () => {
  test('a kernel that takes everything costs one check and gets the full table', async () => {
    const k = kernelRejecting(() => false);
    const p = await probeKernel(k.validate);
    expect(p.ruleset.caps).toEqual({ count: 'map', selfGuard: 'map' });
    expect(k.seen).toHaveLength(1);
    expect(p.rejected).toEqual([]);
  });

  test('a kernel that rejects a map used as a set gets sets of the same keys for counting and the self guard', async () => {
    const k = kernelRejecting(mapAsSet);
    const p = await probeKernel(k.validate);
    expect(p.ruleset.caps).toEqual({ count: 'set', selfGuard: 'set' });
    expect(p.rejected.map((r) => r.shape)).toEqual(['full', 'count via map', 'self guard via map']);
    expect(missingCapabilities(p.ruleset.caps)).toEqual([]);
    // The last check is the whole chosen table.
    expect(mapAsSet(k.seen.at(-1)!)).toBe(false);
    expect(rulesOf(k.seen.at(-1)!).some((r) => JSON.stringify(r.expr).includes('@count6'))).toBe(true);
  });

  test('a kernel that rejects the count chains and the self guard in any shape still gets DNAT, and status names what is missing', async () => {
    const k = kernelRejecting((tx) => rulesOf(tx).some((r) => r.chain.startsWith('count_') || r.chain === 'self_prerouting'));
    const p = await probeKernel(k.validate);
    expect(p.ruleset.caps).toEqual({ count: 'none', selfGuard: 'none' });
    expect(missingCapabilities(p.ruleset.caps)).toEqual([
      'hit counters cover first packets only: the kernel rejects the count chains',
      "'self' entries are not applied: the kernel rejects the self guard",
    ]);
    expect(p.ruleset.chains.map((c) => c.name)).toEqual(['dnat_output', 'dnat_prerouting', 'prefix_dnat', 'prefix_count']);
  });

  test('a kernel that rejects the essentials: the kernel’s answer is the error', async () => {
    const k = kernelRejecting(() => true);
    await expect(probeKernel(k.validate)).rejects.toThrow(/Invalid argument/);
  });
});

describe.each<[string, KernelCaps]>([
  ['map', { count: 'map', selfGuard: 'map' }],
  ['set', { count: 'set', selfGuard: 'set' }],
  ['none', { count: 'none', selfGuard: 'none' }],
])('the table with counting and self guard via %s', (_name, caps) => {
  const rs = buildRuleset(caps);

  test('a full build, a delta of add/retarget/remove and a self change keep the kernel equal to the desired state, and a fresh read agrees', async () => {
    const nft = new FakeNft();
    const d1 = {
      ...desired({ 'fd00::1': 'fdaa::1', 'fd00::2': 'fdaa::2' }, { '10.0.0.1': '10.9.0.1' }),
      self: new Map([['fdaa::77', 'fdbb::77']]),
    };
    await nft.run(planSync(EMPTY_VIEW, d1, true, rs).tx);
    const d2 = { ...desired({ 'fd00::1': 'fdaa::9', 'fd00::3': 'fdaa::3' }, {}), self: new Map([['fdaa::78', 'fdbb::78']]) };
    const delta = planSync(viewFromListing(await nft.listTable('inet', 'addrmap'), rs), d2, false, rs);
    expect(delta.kind).toBe('delta');
    await nft.run(delta.tx);
    const listing = await nft.listTable('inet', 'addrmap');
    const view = viewFromListing(listing, rs);
    expect(view.layoutOk).toBe(true);
    expect(view.v6).toEqual(d2.v6);
    expect(view.v4).toEqual(d2.v4);
    expect(view.self ?? new Map()).toEqual(rs.self ? d2.self : new Map());
    expect(planSync(view, d2, false, rs).kind).toBe('none');
    expect(planSync(viewOf(d2), d2, false, rs).kind).toBe('none');
    if (caps.count === 'set')
      expect(
        listing!
          .sets!.find((s) => s.name === 'count6')!
          .elements.map((e) => e.key)
          .sort(),
      ).toEqual(['fd00::1', 'fd00::3']);
    if (caps.selfGuard === 'set')
      expect(listing!.sets!.find((s) => s.name === 'self_now6')!.elements.map((e) => e.key)).toEqual(['fdbb::78']);
  });

  test('a table of another shape (another kernel, an older addrmap) is not ours: rebuilt whole', async () => {
    const other = buildRuleset(caps.count === 'set' ? { count: 'map', selfGuard: 'map' } : { count: 'set', selfGuard: 'set' });
    const nft = new FakeNft();
    await nft.run(planSync(EMPTY_VIEW, desired({ 'fd00::1': 'fdaa::1' }), true, other).tx);
    expect(viewFromListing(await nft.listTable('inet', 'addrmap'), rs).layoutOk).toBe(false);
  });
});

describe('counting through a set', () => {
  const rs = buildRuleset({ count: 'set', selfGuard: 'set' });

  test("a mapping's packets are the map element's (first packets) plus the set element's (the rest)", async () => {
    const nft = new FakeNft();
    await nft.run(planSync(EMPTY_VIEW, desired({ 'fd00::1': 'fdaa::1' }), true, rs).tx);
    nft.hit('inet', 'addrmap', 'dnat6', 'fd00::1', 1, 80);
    nft.hit('inet', 'addrmap', 'count6', 'fd00::1', 9, 9000);
    expect(countersOf(await nft.listTable('inet', 'addrmap')).get('fd00::1')).toEqual({ packets: 10, bytes: 9080 });
  });

  test('a set element that another tool deleted makes the layout wrong, so the next sync rebuilds', async () => {
    const nft = new FakeNft();
    const want = desired({ 'fd00::1': 'fdaa::1', 'fd00::2': 'fdaa::2' });
    await nft.run(planSync(EMPTY_VIEW, want, true, rs).tx);
    const { Transaction } = await import('../../../src/kernel/nft/index.js');
    await nft.run(new Transaction().delete({ element: { family: 'inet', table: 'addrmap', name: 'count6', key: 'fd00::2' } }));
    const view = viewFromListing(await nft.listTable('inet', 'addrmap'), rs);
    expect(view.layoutOk).toBe(false);
    expect(planSync(view, want, false, rs).kind).toBe('full');
  });

  test('the fake refuses a value for a set element, as the kernel does', async () => {
    const nft = new FakeNft();
    await nft.run(planSync(EMPTY_VIEW, desired({}), true, rs).tx);
    const { Transaction } = await import('../../../src/kernel/nft/index.js');
    await expect(
      nft.run(new Transaction().add({ element: { family: 'inet', table: 'addrmap', name: 'count6', key: 'fd00::1', value: 'fdaa::1' } })),
    ).rejects.toThrow(/Invalid argument/);
  });
});

describe('listings without /etc/protocols', () => {
  test('protocol names and numbers compare equal', () => {
    const named = [{ match: { op: '==', left: { meta: { key: 'l4proto' } }, right: { set: ['tcp', 'udp'] } } }, { return: null }];
    const numbered = [{ match: { op: '==', left: { meta: { key: 'l4proto' } }, right: { set: [6, 17] } } }, { return: null }];
    expect(normalizeExpr(named)).toEqual(numbered);
    expect(normalizeExpr(numbered)).toEqual(numbered);
    expect(normalizeExpr([{ match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'udp' } }])).toEqual([
      { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 17 } },
    ]);
  });
});
