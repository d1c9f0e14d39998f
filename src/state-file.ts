// The snapshot the agent keeps in its state directory: what it last applied
// and what went wrong. World-readable, replaced atomically, so `addrmap
// status` can read it without root and never sees half a file.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Flag } from './flag.js';

export interface PushOutcome {
  at: string;
  outcome: 'applied' | 'unchanged' | 'refused' | 'failed';
  generation?: number;
  /** Why it was refused or failed. */
  reason?: string;
  /** The offending entry of a refused file, e.g. "mappings[3]". */
  entry?: string | null;
}

export interface Snapshot {
  schema: 1;
  /** The watching agent's pid, or null when no agent is running. */
  pid: number | null;
  startedAt: string | null;
  updatedAt: string;
  flag: Flag;
  mappingsFile: string;
  applied: { generation: number; at: string; mappings: number } | null;
  /** The highest generation ever applied, kept while the feature is off: older files stay refused. */
  acceptedGeneration?: number;
  lastPush: PushOutcome | null;
  warnings: string[];
  /** Repairs of the table after another tool changed it, since the agent started. */
  driftRepairs?: number;
}

export const SNAPSHOT_FILE = 'status.json';

export async function readSnapshot(stateDir: string): Promise<Snapshot | null> {
  try {
    return JSON.parse(await readFile(join(stateDir, SNAPSHOT_FILE), 'utf8')) as Snapshot;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

export async function writeSnapshot(stateDir: string, snap: Snapshot): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o755 });
  const target = join(stateDir, SNAPSHOT_FILE);
  const tmp = `${target}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(snap, null, 2) + '\n', { mode: 0o644 });
  // fsync is skipped on purpose: the state dir is tmpfs (/run), and a stale
  // snapshot after a power loss is harmless because the kernel table is gone too.
  await rename(tmp, target);
}

