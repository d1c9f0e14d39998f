// FakeRoutes proven against the kernel: the same operations through the fake
// and through the netlink Routes inside a lab's guest namespace (a worker
// process: in-process netlink reaches the namespace of whoever opens it), and
// after every step the results compared whole: listings, lookups, snapshots
// at probes, and apply's messages, failures included. Routes other tools make
// are made with `ip` in the lab and written into the fake as the kernel holds
// them.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { RouteSpec } from '../../src/kernel/routes.js';
import { ADDR, Lab, ROOT } from '../support/lab.js';
import { NetnsWorker } from '../support/netns-worker.js';
import { contractStep } from '../support/contract.js';
import { FakeRoutes, type FakeRoute } from '../fakes/routes.js';
import { observe, type Probe } from './workers/routes-observe.js';

let lab: Lab;
let worker: NetnsWorker;
const fake = new FakeRoutes();
const local = observe(fake);

/** The lab guest's main table as Lab.create makes it (proto 2: the kernel's, 3: `ip route add`'s). */
const LAB_ROUTES: FakeRoute[] = [
  { family: 6, dst: 'fd00:1::', length: 64, dev: 'gv', proto: 2, metric: 256 },
  { family: 6, dst: 'fe80::', length: 64, dev: 'gv', proto: 2, metric: 256 },
  { family: 6, dst: 'fdaa::', length: 16, dev: 'gv', gateway: ADDR.peer6, proto: 3 },
  { family: 4, dst: '192.0.2.0', length: 24, dev: 'gv', proto: 2 },
  { family: 4, dst: '198.51.100.0', length: 24, dev: 'gv', gateway: ADDR.peer4, proto: 3 },
];

beforeAll(async () => {
  lab = await Lab.create();
  worker = await NetnsWorker.start(lab, lab.guest, join(ROOT, 'test/kernel/workers/routes.ts'));
  fake.table = LAB_ROUTES.map((r) => ({ ...r }));
  fake.fib = []; // the default routing rules
}, 60_000);

afterAll(async () => {
  await worker?.stop();
  await lab?.destroy();
});

/** One step through both; the results must be equal. */
const both = contractStep(local, () => worker);

/** Another tool's route: made in the kernel with `ip`, and put in the fake as the kernel then holds it. */
async function foreign(args: string[], route: FakeRoute): Promise<void> {
  const r = await lab.exec(lab.guest, 'ip', [`-${route.family}`, 'route', 'add', ...args]);
  expect(r.stderr).toBe('');
  fake.table.push(route);
}

const v6 = (dst: string, dev: string, gateway?: string, length?: number): RouteSpec => ({
  family: 6,
  dst,
  dev,
  ...(gateway ? { gateway } : {}),
  ...(length === undefined ? {} : { length }),
});
const v4 = (dst: string, dev: string, gateway?: string): RouteSpec => ({ family: 4, dst, dev, ...(gateway ? { gateway } : {}) });

const TARGETS = [
  { family: 6, address: 'fdbb::1' },
  { family: 6, address: 'fdbb:1::5' },
  { family: 6, address: 'fdbb::2' },
  { family: 6, address: 'fdbb::3' },
  { family: 6, address: 'fdaa:0:1::9' },
  { family: 6, address: ADDR.new6 },
  { family: 6, address: ADDR.peer6 },
  { family: 6, address: 'fdcc::1' },
  { family: 4, address: '203.0.113.5' },
  { family: 4, address: '203.0.113.7' },
  { family: 4, address: '203.0.113.8' },
  { family: 4, address: ADDR.new4 },
  { family: 4, address: '10.9.9.9' },
] as const;
const PROBES: Probe[] = [
  ...TARGETS.map((t) => ({ ...t, length: t.family === 6 ? 128 : 32 })),
  { family: 6, address: 'fdaa::', length: 16 },
  { family: 6, address: 'fdbb:1::', length: 64 },
  { family: 6, address: 'fd00:1::', length: 64 },
  { family: 4, address: '198.51.100.0', length: 24 },
];

describe('FakeRoutes and the netlink Routes, step by step', () => {
  test('an empty start: nothing of addrmap listed; lookups and snapshot of the lab table', async () => {
    expect(await both('list')).toEqual([]);
    await both('lookup', TARGETS);
    expect(await both('snapshot', PROBES)).not.toBeNull();
  });

  test('adds (host routes, a prefix, IPv4), a delete of a route that is not there', async () => {
    const messages = await both(
      'apply',
      [
        v6('fdbb::1', 'gv', ADDR.peer6),
        v6('fdbb:1::', 'gv', undefined, 64),
        v6('fdaa:0:1::', 'gv', ADDR.peer6, 48),
        v4('203.0.113.5', 'gv', ADDR.peer4),
      ],
      [v6('fdbb::9', 'gv')],
    );
    expect(messages).toEqual(['RTNETLINK answers: No such process (route del fdbb::9/128 proto 173)']);
    expect(await both('list')).toHaveLength(4);
    await both('lookup', TARGETS);
    await both('snapshot', PROBES); // addrmap's own routes are left out
  });

  test('adding a route that exists, or on a device that does not, fails for that route alone', async () => {
    const messages = await both('apply', [v6('fdbb::1', 'gv'), v6('fdbb::4', 'nope'), v4('203.0.113.6', 'gv')], []);
    expect(messages).toEqual([
      'RTNETLINK answers: File exists (route add fdbb::1/128 dev gv)',
      'Cannot find device "nope" (route add fdbb::4/128 dev nope)',
    ]);
    await both('list');
  });

  test("others' routes: the same prefix and metric is EEXIST, another metric is a route beside it; deleting removes only addrmap's", async () => {
    await foreign(['fdbb::2/128', 'dev', 'gv', 'metric', '7'], { family: 6, dst: 'fdbb::2', dev: 'gv', proto: 3, metric: 7 });
    await foreign(['fdbb::3/128', 'dev', 'gv'], { family: 6, dst: 'fdbb::3', dev: 'gv', proto: 3 });
    await foreign(['203.0.113.7/32', 'dev', 'gv'], { family: 4, dst: '203.0.113.7', dev: 'gv', proto: 3 });
    await foreign(['203.0.113.8/32', 'dev', 'gv', 'metric', '5'], { family: 4, dst: '203.0.113.8', dev: 'gv', proto: 3, metric: 5 });
    const add = [
      v6('fdbb::2', 'gv', ADDR.peer6),
      v6('fdbb::3', 'gv', ADDR.peer6),
      v4('203.0.113.7', 'gv', ADDR.peer4),
      v4('203.0.113.8', 'gv', ADDR.peer4),
    ];
    expect(await both('apply', add, [])).toEqual([
      `RTNETLINK answers: File exists (route add 203.0.113.7/32 via ${ADDR.peer4} dev gv)`,
      `RTNETLINK answers: File exists (route add fdbb::3/128 via ${ADDR.peer6} dev gv)`,
    ]);
    await both('list');
    await both('lookup', TARGETS);
    await both('snapshot', PROBES);
    // fdbb::2 and 203.0.113.8: addrmap's goes, the other stays; fdbb::3: none of addrmap's to remove.
    const gone = await both('apply', [], [v6('fdbb::2', 'gv', ADDR.peer6), v6('fdbb::3', 'gv'), v4('203.0.113.8', 'gv', ADDR.peer4)]);
    expect(gone).toEqual(['RTNETLINK answers: No such process (route del fdbb::3/128 proto 173)']);
    await both('list');
    await both('lookup', TARGETS);
    await both('snapshot', PROBES);
  });

  test('with a routing rule beyond the defaults, snapshot says lookups are not exact; the kernel lookup still answers', async () => {
    expect((await lab.exec(lab.guest, 'ip', ['-6', 'rule', 'add', 'from', 'fd00:9::/64', 'table', '100', 'pref', '1000'])).stderr).toBe('');
    fake.fib = null;
    expect(await both('snapshot', PROBES)).toBeNull();
    await both('lookup', TARGETS);
    expect((await lab.exec(lab.guest, 'ip', ['-6', 'rule', 'del', 'pref', '1000'])).stderr).toBe('');
    fake.fib = [];
    expect(await both('snapshot', PROBES)).not.toBeNull();
  });

  test('removing all of addrmap’s routes leaves the others', async () => {
    const ours = (await both('list')) as RouteSpec[];
    expect(await both('apply', [], ours)).toEqual([]);
    expect(await both('list')).toEqual([]);
    await both('lookup', TARGETS);
    await both('snapshot', PROBES);
  });
});
