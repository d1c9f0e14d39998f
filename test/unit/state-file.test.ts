import { readdir, readFile, stat, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { readSnapshot, SNAPSHOT_FILE, writeSnapshot, type Snapshot } from '../../src/state-file.js';
import { collectStatus, formatStatus } from '../../src/status.js';
import { FakeNft } from '../../src/nft/index.js';
import { EMPTY_VIEW, planSync } from '../../src/plan.js';
import { desired, tempDir } from './fakes.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(async () => {
  await cleanup();
});

const snap: Snapshot = {
  schema: 1,
  pid: null,
  startedAt: null,
  updatedAt: '2026-01-01T00:00:00.000Z',
  flag: { enabled: true, source: 'config file' },
  mappingsFile: '/etc/addrmap/mappings.json',
  applied: { generation: 12, at: '2026-01-01T00:00:00.000Z', mappings: 3 },
  lastPush: { at: '2026-01-01T00:00:01.000Z', outcome: 'refused', generation: 13, reason: 'mappings form a cycle: fd00::a -> fd00::b -> fd00::a', entry: 'mappings[4]' },
  warnings: ['no route to target fdcc::9 of fd00::9'],
};

describe('snapshot file', () => {
  test('a missing snapshot reads as null', async () => {
    expect(await readSnapshot(join(dir, 'state'))).toBeNull();
  });

  test('write then read round-trips, creating the directory; the file is world-readable and no temp file is left', async () => {
    const stateDir = join(dir, 'run', 'addrmap');
    await writeSnapshot(stateDir, snap);
    expect(await readSnapshot(stateDir)).toEqual(snap);
    expect(await readdir(stateDir)).toEqual([SNAPSHOT_FILE]);
    expect((await stat(join(stateDir, SNAPSHOT_FILE))).mode & 0o777).toBe(0o644);
    expect(JSON.parse(await readFile(join(stateDir, SNAPSHOT_FILE), 'utf8'))).toEqual(snap);
  });

  test('a second write replaces the first', async () => {
    await writeSnapshot(dir, snap);
    await writeSnapshot(dir, { ...snap, applied: null, lastPush: null });
    expect(await readSnapshot(dir)).toMatchObject({ applied: null, lastPush: null });
  });

  test('a torn snapshot is an error, not null', async () => {
    await writeFile(join(dir, SNAPSHOT_FILE), '{"schema": 1,');
    await expect(readSnapshot(dir)).rejects.toThrow(SyntaxError);
  });
});

describe('status', () => {
  test('with no snapshot and no kernel access', async () => {
    const report = await collectStatus(join(dir, 'none'), null);
    expect(report).toMatchObject({ enabled: false, generation: null, mappings: 0, lastPush: null, kernel: null });
    expect(formatStatus(report)).toContain('kernel:      not read');
  });

  test('reports the snapshot and the kernel table, including a refused push with its entry', async () => {
    await writeSnapshot(dir, snap);
    const nft = new FakeNft();
    await nft.run(planSync(EMPTY_VIEW, desired({ 'fd00::1': 'fdaa::1', 'fd00::2': 'fdaa::2' }, { '10.0.0.1': '10.9.0.1' })).tx);
    const report = await collectStatus(dir, nft);
    expect(report).toMatchObject({
      enabled: true,
      flagSource: 'config file',
      agent: { running: false, pid: null },
      generation: 12,
      mappings: 3,
      kernel: { table: true, layoutOk: true, mappings: 3 },
    });
    const text = formatStatus(report);
    expect(text).toContain('enabled:     yes (from config file)');
    expect(text).toContain('last push:   refused: mappings[4]: mappings form a cycle: fd00::a -> fd00::b -> fd00::a (generation 13,');
    expect(text).toContain('kernel:      table inet addrmap, 3 mappings in dnat4/dnat6');
    expect(text).toContain('warning:     no route to target fdcc::9 of fd00::9');
  });

  test('an enabled feature without its table is flagged as MISSING', async () => {
    await writeSnapshot(dir, snap);
    const report = await collectStatus(dir, new FakeNft());
    expect(report.kernel).toEqual({ table: false, layoutOk: false, mappings: 0 });
    expect(formatStatus(report)).toContain('table MISSING');
  });

  test('a running agent is reported as running', async () => {
    await mkdir(dir, { recursive: true });
    await writeSnapshot(dir, { ...snap, pid: process.pid, startedAt: '2026-01-01T00:00:00.000Z' });
    const report = await collectStatus(dir, null);
    expect(report.agent).toEqual({ running: true, pid: process.pid, since: '2026-01-01T00:00:00.000Z' });
  });
});
