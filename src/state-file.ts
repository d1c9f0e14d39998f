// What the agent keeps in its state directory, for `addrmap status` and
// friends: status.json (flag, agent, last push), applied.json (the mappings
// of the applied generation) and usage.json (hits per mapping, sampled from
// the kernel's counters). World-readable and replaced atomically, so readers
// need no root and never see half a file.
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
  /** The table's shape on this kernel, and what the shapes it lacks cost. */
  kernel?: { count: 'map' | 'set' | 'none'; selfGuard: 'map' | 'set' | 'none'; missing: string[] };
  /** Set when the agent could not start (unusable nft, a kernel that rejects the table); cleared by a good start. */
  startFailure?: StartFailure;
}

export interface StartFailure {
  at: string;
  command: 'apply' | 'watch';
  reason: string;
  /** Failed starts in a row. */
  attempts: number;
}

/** The mappings in force: the file's entries and what they resolve to. */
export interface AppliedState {
  schema: 1;
  generation: number;
  at: string;
  file: string;
  /** The file's mappings, canonical, in file order; expired ones included. */
  entries: { from: string; to: string; expires?: string }[];
  /** Installed in the kernel: chains resolved. Prefix mappings as "network/length". */
  resolved: { family: 4 | 6; from: string; to: string }[];
  /** This guest's own previous addresses (from) and its addresses now (to). */
  self?: { from: string; to: string }[];
}

export interface MappingUsage {
  packets: number;
  bytes: number;
  /** When the counters were last seen to grow; null if never since sampling began. */
  lastSeen: string | null;
  /** When sampling first saw this mapping: how long "never seen" has lasted. */
  since?: string;
}

export interface UsageState {
  schema: 1;
  sampledAt: string;
  /** Keyed by stale address. */
  mappings: Record<string, MappingUsage>;
}

export const SNAPSHOT_FILE = 'status.json';
export const APPLIED_FILE = 'applied.json';
export const USAGE_FILE = 'usage.json';

export const readSnapshot = (stateDir: string) => readState<Snapshot>(stateDir, SNAPSHOT_FILE);
export const writeSnapshot = (stateDir: string, snap: Snapshot) => writeState(stateDir, SNAPSHOT_FILE, snap);

export async function readState<T>(stateDir: string, name: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(join(stateDir, name), 'utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

export async function writeState(stateDir: string, name: string, doc: unknown): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o755 });
  const target = join(stateDir, name);
  const tmp = `${target}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(doc) + '\n', { mode: 0o644 });
  // fsync is skipped on purpose: the state dir is tmpfs (/run), and stale
  // state after a power loss is harmless because the kernel table is gone too.
  await rename(tmp, target);
}
