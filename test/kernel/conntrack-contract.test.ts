// FakeConntrackTable proven against the kernel: the same flows put in both
// (in the kernel with the conntrack tool, inside a lab namespace of its own
// named ctc-*), then the same listings, sweeps and cleanup rounds through
// the fake and through ctnetlink in a worker in that namespace (in-process
// netlink reaches the namespace of whoever opens it), the results compared
// whole after every step. Prefix targets are among them: a prefix covers the
// addresses of its length and no more.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { FlowEntry, StaleTarget } from '../../src/kernel/conntrack.js';
import { Lab, ROOT } from '../support/lab.js';
import { NetnsWorker } from '../support/netns-worker.js';
import { contractStep } from '../support/contract.js';
import { FakeConntrackTable } from '../fakes/conntrack.js';
import { observe } from './workers/conntrack-observe.js';

let lab: Lab;
let worker: NetnsWorker;
const fake = new FakeConntrackTable();
const local = observe(fake);

beforeAll(async () => {
  lab = await Lab.create({ peer: false, prefix: 'ctc-' });
  worker = await NetnsWorker.start(lab, lab.guest, join(ROOT, 'test/kernel/workers/conntrack.ts'));
}, 60_000);

afterAll(async () => {
  await worker?.stop();
  await lab?.destroy();
});

/** One step through both; the results must be equal. */
const both = contractStep(local, () => worker);

/** A tracked flow, made in the kernel with the conntrack tool and put in the fake as the kernel lists it. */
async function track(f: FlowEntry): Promise<void> {
  const icmp = f.proto === 'icmpv6' ? ['--icmpv6-type', '128', '--icmpv6-code', '0', '--icmpv6-id', '7'] : [];
  const ports =
    f.sport === undefined
      ? []
      : ['--sport', `${f.sport}`, '--dport', `${f.dport}`, '--reply-port-src', `${f.dport}`, '--reply-port-dst', `${f.sport}`];
  const args = ['-I', '-p', f.proto, '-s', f.origSrc, '-d', f.origDst, '-r', f.replySrc, '-q', f.origSrc, ...ports, ...icmp, '-t', '600'];
  const r = await lab.exec(lab.guest, 'conntrack', [...args, ...(f.state ? ['--state', f.state] : [])]);
  expect(r.stderr).toMatch(/1 flow entries have been created/);
  fake.flows.push(f);
}

const udp6 = (dst: string, sport: number, replySrc: string): FlowEntry => ({
  family: 6,
  proto: 'udp',
  origSrc: 'fd00:1::1',
  origDst: dst,
  sport,
  dport: 9000,
  replySrc,
});
const udp4 = (dst: string, sport: number, replySrc: string): FlowEntry => ({
  family: 4,
  proto: 'udp',
  origSrc: '192.0.2.1',
  origDst: dst,
  sport,
  dport: 9000,
  replySrc,
});

const TARGETS6: StaleTarget[] = [
  { family: 6, from: 'fdaa::5', to: 'fdbb::5' },
  { family: 6, from: 'fdaa:1::', to: 'fdbb:1::', length: 64 },
];
const TARGETS4: StaleTarget[] = [
  { family: 4, from: '198.51.100.5', to: '203.0.113.5' },
  { family: 4, from: '198.51.100.128', to: '203.0.113.128', length: 25 },
];

describe('FakeConntrackTable and ctnetlink, step by step', () => {
  test('an empty table lists nothing, sweeps nothing', async () => {
    expect(await both('list', 6)).toEqual([]);
    expect(await both('list', 4)).toEqual([]);
    expect(await both('sweep', 6, TARGETS6)).toBe(0);
  });

  test('flows of both families and several protocols list alike, whole and filtered by the targets they are covered by', async () => {
    await track(udp6('fdaa::5', 1000, 'fdaa::5')); // untranslated: stale
    await track(udp6('fdaa::5', 1001, 'fdbb::5')); // already at the target
    await track(udp6('fdaa:1::7', 1002, 'fdaa:1::7')); // inside the prefix, untranslated: stale
    await track(udp6('fdaa:1::8', 1003, 'fdbb:1::8')); // inside the prefix, at its target
    await track(udp6('fdaa:1::9', 1004, 'fdcc::9')); // inside the prefix, sent elsewhere: stale
    await track(udp6('fdaa:1:0:1::9', 1005, 'fdaa:1:0:1::9')); // the next /64: not covered
    await track({
      family: 6,
      proto: 'tcp',
      state: 'ESTABLISHED',
      origSrc: 'fd00:1::1',
      origDst: 'fdaa:1::a',
      sport: 1006,
      dport: 80,
      replySrc: 'fdaa:1::a',
    });
    await track({ family: 6, proto: 'icmpv6', origSrc: 'fd00:1::1', origDst: 'fdaa::5', replySrc: 'fdaa::5' });
    await track(udp4('198.51.100.5', 2000, '198.51.100.5'));
    await track(udp4('198.51.100.200', 2001, '198.51.100.200'));
    await track(udp4('198.51.100.201', 2002, '203.0.113.201'));
    await track(udp4('198.51.100.6', 2003, '198.51.100.6')); // below the /25: not covered
    expect(await both('list', 6)).toHaveLength(8);
    expect(await both('list', 4)).toHaveLength(4);
    expect(await both('list', 6, TARGETS6)).toHaveLength(7);
    expect(await both('list', 4, TARGETS4)).toHaveLength(3);
    expect(await both('list', 4, TARGETS6)).toEqual([]);
  });

  test('a sweep deletes the covered flows that do not go to their target, single and prefix alike, and nothing else', async () => {
    expect(await both('sweep', 6, TARGETS6)).toBe(5);
    const left = (await both('list', 6)) as FlowEntry[];
    expect(left.map((f) => `${f.origDst} ${f.replySrc}`).sort()).toEqual([
      'fdaa:1:0:1::9 fdaa:1:0:1::9',
      'fdaa:1::8 fdbb:1::8',
      'fdaa::5 fdbb::5',
    ]);
    expect(await both('sweep', 6, TARGETS6)).toBe(0); // what is left is where it should be
    expect(await both('list', 4)).toHaveLength(4); // the other family untouched
  });

  test("the agent's cleanup rounds count alike", async () => {
    expect(await both('clean', [...TARGETS4, { family: 6, from: 'fdaa:1::8', to: 'fdbb:2::8' }])).toEqual([{ targets: 3, removed: 3 }]);
    const left = (await both('list', 4)) as FlowEntry[];
    expect(left.map((f) => `${f.origDst} ${f.replySrc}`).sort()).toEqual(['198.51.100.201 203.0.113.201', '198.51.100.6 198.51.100.6']);
    expect(await both('list', 6)).toHaveLength(2);
    expect(await both('clean', TARGETS4)).toEqual([{ targets: 2, removed: 0 }]);
  });
});
