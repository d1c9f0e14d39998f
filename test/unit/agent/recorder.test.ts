// The recorder alone turns outcomes into log lines, counters and state
// files: each kind of outcome handed to it directly, and what it wrote.
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { Recorder } from '../../../src/agent/recorder.js';
import type { PassOutcome } from '../../../src/agent/pass.js';
import { DEFAULT_CONFIG } from '../../../src/input/config.js';
import type { Paths } from '../../../src/input/settings.js';
import type { SyncResult } from '../../../src/kernel/reconciler.js';
import { APPLIED_FILE, readSnapshot, readState, type AppliedState } from '../../../src/state/state-file.js';
import { desired, memoryLogger, tempDir } from '../fakes.js';

let cleanup: () => Promise<void>;
let paths: Paths;
let logger: ReturnType<typeof memoryLogger>;
let recorder: Recorder;

beforeEach(async () => {
  let dir: string;
  ({ dir, cleanup } = await tempDir());
  paths = { config: join(dir, 'config.json'), mappings: join(dir, 'mappings.json'), stateDir: join(dir, 'state') };
  logger = memoryLogger();
  // The environment's level wins over the config's, so debug lines are kept.
  recorder = new Recorder({ paths, env: { ADDRMAP_LOG_LEVEL: 'trace' }, log: logger.log, daemon: false });
  await recorder.init();
});

afterEach(async () => {
  vi.useRealTimers();
  await cleanup();
});

const sync = (over: Partial<SyncResult> = {}): SyncResult => ({
  kind: 'delta',
  added: 1,
  removed: 0,
  retargeted: 0,
  routesAdded: 0,
  routesRemoved: 0,
  conntrackQueued: 0,
  warnings: [],
  ...over,
});

const FLAG = { enabled: true, source: 'environment' } as const;
const FILE = { generation: 7, mappings: [{ family: 6 as const, from: 'fd00::1', to: 'fdaa::1' }] };

const pass = (kind: 'applied' | 'unchanged', s: SyncResult = sync()): PassOutcome => ({
  kind,
  flag: FLAG,
  config: DEFAULT_CONFIG,
  file: FILE,
  desired: desired({ 'fd00::1': 'fdaa::1' }),
  sync: s,
  expired: 0,
  durationMs: 3,
});

describe('Recorder', () => {
  test('a generation read again keeps the time it was first applied', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-01-01T00:00:00Z'));
    await recorder.record(pass('applied'));
    vi.setSystemTime(new Date('2026-01-01T00:05:00Z'));
    await recorder.record(pass('unchanged', sync({ kind: 'none', added: 0 })));
    await recorder.record(pass('applied')); // the same generation put back in a kernel that lost it
    expect((await readSnapshot(paths.stateDir))?.applied).toMatchObject({ generation: 7, at: '2026-01-01T00:00:00.000Z' });
    await recorder.record({ ...pass('applied'), file: { ...FILE, generation: 8 } } as PassOutcome);
    expect((await readSnapshot(paths.stateDir))?.applied).toMatchObject({ generation: 8, at: '2026-01-01T00:05:00.000Z' });
    expect(recorder.counters).toMatchObject({ syncs: 4, generation: 8, mappings: 1 });
  });

  test('a repair counts once, is logged and reaches the snapshot; a check that found nothing is only a debug line', async () => {
    await recorder.record(pass('applied'));
    await recorder.record({ kind: 'repair', drift: 'map dnat6 changed', sync: sync({ added: 2 }), durationMs: 4 });
    await recorder.record({ kind: 'repair', drift: 'none', sync: sync({ kind: 'none', added: 0 }), durationMs: 1 });
    await recorder.record({ kind: 'repair', drift: 'after a failure', sync: sync({ kind: 'full', forcedOnly: true }), durationMs: 1 });
    expect(recorder.counters.driftRepairs).toBe(1);
    expect(logger.records.find((r) => r.event === 'drift_repaired')).toMatchObject({ drift: 'map dnat6 changed', added: 2, repairs: 1 });
    expect(logger.events()).toEqual(['applied', 'drift_repaired', 'drift_checked', 'rebuilt']);
    expect((await readSnapshot(paths.stateDir))?.driftRepairs).toBe(1);
  });

  test('a failed repair is logged and counts nothing', async () => {
    await recorder.record({ kind: 'repair-failed', drift: 'table gone', reason: 'EBUSY', error: new Error('EBUSY') });
    expect(logger.records).toEqual([expect.objectContaining({ event: 'drift_repair_failed', drift: 'table gone', reason: 'EBUSY' })]);
    expect(recorder.counters.driftRepairs).toBe(0);
  });

  test('an expiry rewrites the applied mappings and keeps the applied time', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-01-01T00:00:00Z'));
    await recorder.record(pass('applied'));
    vi.setSystemTime(new Date('2026-01-01T01:00:00Z'));
    const expired = [{ from: 'fd00::1', to: 'fdaa::1', expires: '2026-01-01T00:59:00.000Z' }];
    await recorder.record({ kind: 'expiry', file: FILE, desired: desired(), expired, sync: sync({ added: 0, removed: 1 }), durationMs: 2 });
    expect(logger.records.find((r) => r.event === 'expired')).toMatchObject({ generation: 7, mappings: 0, removed: 1, expired });
    expect(recorder.counters.mappings).toBe(0);
    expect((await readState<AppliedState>(paths.stateDir, APPLIED_FILE))?.resolved).toEqual([]);
    expect((await readSnapshot(paths.stateDir))?.applied).toMatchObject({ generation: 7, mappings: 0, at: '2026-01-01T00:00:00.000Z' });
  });

  test('usage samples reach the counters metrics read, which are one live object', () => {
    const counters = recorder.counters;
    recorder.usage([{ from: 'fd00::1', to: 'fdaa::1', packets: 3, bytes: 300 }]);
    expect(counters.perMapping).toEqual([{ from: 'fd00::1', to: 'fdaa::1', packets: 3, bytes: 300 }]);
    expect(recorder.counters).toBe(counters);
  });
});
