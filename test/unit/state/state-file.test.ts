import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { readSnapshot, SNAPSHOT_FILE, writeSnapshot, type Snapshot } from '../../../src/state/state-file.js';
import { tempDir } from '../fakes.js';

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
  lastPush: {
    at: '2026-01-01T00:00:01.000Z',
    outcome: 'refused',
    generation: 13,
    reason: 'mappings form a cycle: fd00::a -> fd00::b -> fd00::a',
    entry: 'mappings[4]',
  },
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
