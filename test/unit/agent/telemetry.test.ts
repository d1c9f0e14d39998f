import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as realSleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import type { Agent } from '../../../src/agent/agent.js';
import { Telemetry } from '../../../src/agent/telemetry.js';
import { UsageTracker } from '../../../src/agent/usage.js';
import { HISTORY_FILE } from '../../../src/agent/usage-history.js';
import { EMPTY_VIEW, planSync } from '../../../src/kernel/plan.js';
import type { Flow } from '../../../src/support/flows.js';
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

/** What Telemetry reads of the agent: a state held, a sample every 30 s. */
const agentStub = () =>
  ({
    holdsState: true,
    config: { usageIntervalSeconds: 30, retireAfterSeconds: 3600 },
    recordUsage: () => {},
    targetOf: () => 'fdaa::2',
    stats: {},
  }) as unknown as Agent;

const flowTo = (dst: string): Flow => ({ proto: 'udp', src: '198.18.0.2', dst, answeredBy: 'fdaa::2', translated: true });

describe('Telemetry: usage samples', () => {
  test('the counters (a listing of the whole map) are read only when something can have moved them; the flows every sample', async () => {
    const nft = new FakeNft();
    await nft.run(planSync(EMPTY_VIEW, desired({ 'fd00::1': 'fdaa::2' })).tx);
    const usage = new UsageTracker(nft);
    const listings = vi.spyOn(usage, 'sample');
    let flows: Flow[] = [];
    const flowReads = vi.fn(async () => flows);
    const agent = agentStub();
    const t = new Telemetry(agent, usage, dir, memoryLogger().log, flowReads);
    await t.start();
    await t.afterPass();
    // The fake clock moves only here; a sample's file writes take real time.
    // Samples every 30 s; each is scheduled once the last one's writes are done.
    const after = async (seconds: number) => {
      for (let s = 0; s < seconds; s += 30) {
        await vi.advanceTimersByTimeAsync(30_000);
        await realSleep(60);
      }
      return { flows: flowReads.mock.calls.length, listings: listings.mock.calls.length };
    };
    expect(await after(30)).toEqual({ flows: 1, listings: 1 }); // after a pass: read
    expect(await after(30)).toEqual({ flows: 2, listings: 1 }); // idle: flows only
    expect(await after(8 * 30)).toEqual({ flows: 10, listings: 1 });
    flows = [flowTo('fd00::1')];
    expect(await after(30)).toEqual({ flows: 11, listings: 2 }); // a flow to a stale address: read
    nft.hit('inet', 'addrmap', 'dnat6', 'fd00::1', 5, 500);
    expect(await after(30)).toEqual({ flows: 12, listings: 3 });
    flows = [];
    expect(await after(30)).toEqual({ flows: 13, listings: 4 }); // the counters moved at the last reading: read again
    expect(await after(30)).toEqual({ flows: 14, listings: 4 });
    expect(await after(600)).toEqual({ flows: 34, listings: 5 }); // at most 10 minutes without a reading
    await t.afterPass();
    expect(await after(30)).toEqual({ flows: 35, listings: 6 });
    await t.stop();
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect({ flows: flowReads.mock.calls.length, listings: listings.mock.calls.length }).toEqual({ flows: 35, listings: 6 });
  });
});

describe('Telemetry: the usage history file', () => {
  test('is written again when only hits inside a prefix mapping changed (a closed socket names no program, but its flow is a use)', async () => {
    const nft = new FakeNft();
    const usage = new UsageTracker(nft);
    let flows: Flow[] = [];
    const agent = agentStub();
    const t = new Telemetry(agent, usage, dir, memoryLogger().log, async () => flows);
    await t.start();
    await t.afterPass();
    const hitsOnFile = () =>
      readFile(join(dir, HISTORY_FILE), 'utf8').then(
        (t) => (JSON.parse(t) as { hits?: Record<string, { flows: number }> }).hits?.['fd00:1::5']?.flows ?? 0,
        () => 0,
      );
    /** The hits the file holds once the next sample's write is done (waited for: writes take real time). */
    const afterSample = async (expected: number) => {
      await vi.advanceTimersByTimeAsync(30_000);
      for (let i = 0; i < 100 && (await hitsOnFile()) !== expected; i++) await realSleep(20);
      return hitsOnFile();
    };
    // A socket of this guest's own (::1), already closed: no program to record, one hit each.
    const closed = (sport: number): Flow => ({ ...flowTo('fd00:1::5'), src: '::1', sport, prefix: 'fd00:1::/64' });
    flows = [closed(40000)];
    expect(await afterSample(1)).toBe(1);
    flows = [closed(40001)];
    expect(await afterSample(2)).toBe(2);
    await t.stop();
  });
});
