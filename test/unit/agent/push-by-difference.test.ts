// A push is parsed, resolved and planned by its difference from the file
// before when it can be; the kernel must end up exactly as after a pass that
// starts afresh (a new agent), for any sequence of pushes: retargets, new and
// removed mappings, chains, own addresses, expiries, refusals, a failed commit.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { Agent } from '../../../src/agent/agent.js';
import { Reconciler } from '../../../src/kernel/reconciler.js';
import type { Paths } from '../../../src/input/settings.js';
import { FakeNft } from '../../fakes/nft.js';
import { elementsOf, FakeConntrack, FakeRoutes, memoryLogger, tempDir } from '../fakes.js';

let dir: string;
let cleanup: () => Promise<void>;

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(async () => {
  await cleanup();
});

/** Counts the passes that took the way by difference. */
class CountingReconciler extends Reconciler {
  byDifference = 0;
  override async syncChanges(...args: Parameters<Reconciler['syncChanges']>) {
    const r = await super.syncChanges(...args);
    if (r) this.byDifference++;
    return r;
  }
}

interface Side {
  paths: Paths;
  nft: FakeNft;
  routes: FakeRoutes;
  agent?: Agent;
  reconciler: CountingReconciler;
}

async function side(name: string): Promise<Side> {
  const base = join(dir, name);
  await mkdir(base);
  const nft = new FakeNft();
  const routes = new FakeRoutes();
  for (let t = 0; t < 8; t++) routes.reachable.set(`fdaa::${t}`, { dev: 'eth0', gateway: 'fe80::1' });
  return {
    paths: { config: join(base, 'config.json'), mappings: join(base, 'mappings.json'), stateDir: join(base, 'state') },
    nft,
    routes,
    reconciler: new CountingReconciler({ nft, routes, conntrack: new FakeConntrack() }),
  };
}

async function agentOf(s: Side, fresh: boolean): Promise<Agent> {
  if (s.agent && !fresh) return s.agent;
  const env = { ADDRMAP_ENABLED: '1', ADDRMAP_CMDLINE_FILE: join(dir, 'cmdline') };
  // A fresh agent each pass knows nothing of the pass before: a whole parse,
  // a whole resolution and a plan against the table it reads.
  const reconciler = fresh ? new CountingReconciler({ nft: s.nft, routes: s.routes, conntrack: new FakeConntrack() }) : s.reconciler;
  s.agent = new Agent({ paths: s.paths, env, reconciler, log: memoryLogger().log, daemon: false, remember: !fresh });
  await s.agent.init();
  return s.agent;
}

type Entry = { from: string; to: string; expires?: string };
const addr = (i: number) => `fd00::${i.toString(16)}`;
const target = (t: number) => `fdaa::${t}`;

const change = fc.oneof(
  fc.record({ op: fc.constant('retarget' as const), at: fc.nat(), t: fc.nat(7) }),
  fc.record({ op: fc.constant('add' as const), id: fc.nat(30), t: fc.nat(7) }),
  fc.record({ op: fc.constant('remove' as const), at: fc.nat() }),
  // A target that is itself a stale address: a chain.
  fc.record({ op: fc.constant('chain' as const), at: fc.nat(), id: fc.nat(30) }),
  fc.record({ op: fc.constant('expired' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('bad' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('self' as const), id: fc.nat(30) }),
  // The push lands while route lookups fail (netlink busy): its routes wait for a later pass.
  fc.record({ op: fc.constant('routes-fail' as const), id: fc.nat(30), t: fc.nat(7) }),
);
type Change = typeof change extends fc.Arbitrary<infer T> ? T : never;

function edit(ms: Entry[], c: Change): Entry[] {
  const out = ms.map((m) => ({ ...m }));
  const at = out.length ? ((c as { at?: number }).at ?? 0) % out.length : -1;
  switch (c.op) {
    case 'retarget':
      if (at >= 0) out[at]!.to = target(c.t);
      break;
    case 'add':
      if (!out.some((m) => m.from === addr(c.id))) out.splice(c.id % (out.length + 1), 0, { from: addr(c.id), to: target(c.t) });
      break;
    case 'remove':
      if (at >= 0) out.splice(at, 1);
      break;
    case 'chain':
      if (at >= 0 && out[at]!.from !== addr(c.id)) out[at]!.to = addr(c.id);
      break;
    case 'expired':
      if (at >= 0) out[at]!.expires = '2020-01-01T00:00:00Z';
      break;
    case 'bad':
      if (at >= 0) out[at]!.to = 'not an address';
      break;
    case 'self':
      break;
    case 'routes-fail':
      if (!out.some((m) => m.from === addr(c.id))) out.push({ from: addr(c.id), to: target(c.t) });
      break;
  }
  return out;
}

describe('pushes by difference', () => {
  test('leave the kernel as a fresh agent leaves it, for any sequence of pushes', async () => {
    await writeFile(join(dir, 'cmdline'), 'root=/dev/vda1\n');
    let run = 0;
    let taken = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 12 }), fc.array(change, { minLength: 1, maxLength: 10 }), async (n, changes) => {
        const kept = await side(`kept${run}`);
        const fresh = await side(`fresh${run++}`);
        let ms: Entry[] = Array.from({ length: n }, (_, i) => ({ from: addr(i), to: target(i % 8) }));
        let self: { from: string; to: string }[] | undefined;
        let generation = 1;
        for (const c of [null, ...changes]) {
          if (c) ms = edit(ms, c);
          if (c?.op === 'self') self = self ? undefined : [{ from: addr(c.id), to: 'fd00::ffff' }];
          const text = JSON.stringify({ version: 1, generation: generation++, mappings: ms, ...(self ? { self } : {}) }, null, 1);
          for (const s of [kept, fresh]) await writeFile(s.paths.mappings, text);
          const failing = c?.op === 'routes-fail' ? new Error('netlink busy') : null;
          for (const s of [kept, fresh]) s.routes.throwOnLookup = failing;
          const a = await (await agentOf(kept, false)).pass();
          const b = await (await agentOf(fresh, true)).pass();
          for (const s of [kept, fresh]) s.routes.throwOnLookup = null;
          expect(a.outcome).toBe(b.outcome);
          const counts = (r: typeof a) =>
            r.sync && {
              added: r.sync.added,
              removed: r.sync.removed,
              retargeted: r.sync.retargeted,
              warnings: [...r.sync.warnings].sort(),
            };
          expect(counts(a)).toEqual(counts(b));
          expect(elementsOf(await kept.nft.listTable('inet', 'addrmap'))).toEqual(elementsOf(await fresh.nft.listTable('inet', 'addrmap')));
          expect(kept.routes.table).toEqual(fresh.routes.table);
          // A bad file is mended by the next push, so one refusal does not end the sequence.
          if (c?.op === 'bad') ms = ms.filter((m) => m.to !== 'not an address');
        }
        taken += kept.reconciler.byDifference;
      }),
      { numRuns: 60 },
    );
    // Most pushes above touch no chain: the property holds for the way by difference.
    expect(taken).toBeGreaterThan(50);
  });

  test('after a route failure the next push takes the whole way, so every stale address gets its route', async () => {
    await writeFile(join(dir, 'cmdline'), 'root=/dev/vda1\n');
    const s = await side('routes');
    const agent = await agentOf(s, false);
    const ms: Entry[] = [{ from: addr(1), to: target(1) }];
    const put = (g: number) => writeFile(s.paths.mappings, JSON.stringify({ version: 1, generation: g, mappings: ms }));
    await put(1);
    await agent.pass();
    s.routes.throwOnLookup = new Error('netlink busy');
    ms.push({ from: addr(2), to: target(2) });
    await put(2);
    expect((await agent.pass()).sync?.warnings.join()).toMatch(/routes not updated: netlink busy/);
    s.routes.throwOnLookup = null;
    ms.push({ from: addr(3), to: target(3) });
    await put(3);
    await agent.pass();
    // fd00::2 too: a push by difference would have asked about fd00::3 alone.
    expect(s.routes.ours().map((r) => r.dst)).toEqual([addr(1), addr(2), addr(3)]);
  });

  test('a commit that fails leaves no memory: the next push is planned against the kernel read again', async () => {
    await writeFile(join(dir, 'cmdline'), 'root=/dev/vda1\n');
    const s = await side('fail');
    const agent = await agentOf(s, false);
    const ms: Entry[] = Array.from({ length: 5 }, (_, i) => ({ from: addr(i), to: target(i) }));
    const put = (g: number) => writeFile(s.paths.mappings, JSON.stringify({ version: 1, generation: g, mappings: ms }));
    await put(1);
    expect((await agent.pass()).outcome).toBe('applied');
    ms[0]!.to = target(7);
    await put(2);
    expect((await agent.pass()).outcome).toBe('applied');
    expect(s.reconciler.byDifference).toBe(1);
    s.nft.failNextRun();
    ms[1]!.to = target(7);
    await put(3);
    expect((await agent.pass()).outcome).toBe('failed');
    ms[2]!.to = target(7);
    await put(4);
    expect((await agent.pass()).outcome).toBe('applied');
    expect(s.reconciler.byDifference).toBe(1);
    expect(elementsOf(await s.nft.listTable('inet', 'addrmap')).dnat6).toEqual([
      'fd00:: -> fdaa::7',
      'fd00::1 -> fdaa::7',
      'fd00::2 -> fdaa::7',
      'fd00::3 -> fdaa::3',
      'fd00::4 -> fdaa::4',
    ]);
  });
});
