import { setTimeout as realSleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import type { Agent } from '../../../src/agent/agent.js';
import { Telemetry } from '../../../src/agent/telemetry.js';
import { UsageTracker } from '../../../src/agent/usage.js';
import { EMPTY_VIEW, planSync } from '../../../src/kernel/plan.js';
import { FakeNft } from '../../fakes/nft.js';
import { desired, memoryLogger, tempDir } from '../fakes.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
});
afterEach(async () => {
  vi.useRealTimers();
  await cleanup();
});

describe('Telemetry: usage samples', () => {
  test('while no counter moves, samples space out (doubling, at most 10 minutes apart); traffic or a pass brings back the interval', async () => {
    const nft = new FakeNft();
    await nft.run(planSync(EMPTY_VIEW, desired({ 'fd00::1': 'fdaa::2' })).tx);
    const usage = new UsageTracker(nft);
    const sample = vi.spyOn(usage, 'sample');
    const agent = {
      holdsState: true,
      config: { usageIntervalSeconds: 30, retireAfterSeconds: 3600 },
      recordUsage: () => {},
      targetOf: () => 'fdaa::2',
      stats: {},
    } as unknown as Agent;
    const t = new Telemetry(agent, usage, dir, memoryLogger().log);
    await t.start();
    await t.afterPass();
    // The fake clock moves only here; a sample's file writes take real time,
    // and the next sample is scheduled once they are done.
    const samplesAfter = async (seconds: number) => {
      await vi.advanceTimersByTimeAsync(seconds * 1000);
      await realSleep(150);
      return sample.mock.calls.length;
    };
    expect(await samplesAfter(30)).toBe(1);
    expect(await samplesAfter(59)).toBe(1); // idle: the next one 60 s later
    expect(await samplesAfter(1)).toBe(2);
    expect(await samplesAfter(120)).toBe(3);
    expect(await samplesAfter(240)).toBe(4);
    expect(await samplesAfter(480)).toBe(5);
    expect(await samplesAfter(600)).toBe(6); // capped at 600
    expect(await samplesAfter(600)).toBe(7);
    nft.hit('inet', 'addrmap', 'dnat6', 'fd00::1', 5, 500);
    expect(await samplesAfter(600)).toBe(8); // sees the traffic: back to every 30 s
    expect(await samplesAfter(30)).toBe(9);
    expect(await samplesAfter(60)).toBe(10); // idle again
    await t.afterPass(); // a push: counters are looked at again at the interval
    expect(await samplesAfter(30)).toBe(11);
    await t.stop();
    expect(await samplesAfter(3600)).toBe(11);
  });
});
