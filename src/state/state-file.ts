// What the agent keeps in its state directory, for `addrmap status` and
// friends: status.json (flag, agent, last push), applied.json (the mappings
// of the applied generation) and usage.json (hits per mapping, sampled from
// the kernel's counters). World-readable and replaced atomically, so readers
// need no root and never see half a file.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Flag } from '../input/flag.js';
import { ownUid } from '../input/config.js';
import { readTrustedFile } from '../input/trusted-file.js';

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
  /**
   * false: this guest runs no resident agent by design (ADDRMAP_RESIDENT=0:
   * one-shot applies from a path unit and a timer), so none running is no
   * problem. Absent: an agent is expected.
   */
  resident?: boolean;
  /** Set when the agent could not start (unusable nft, a kernel that rejects the table); cleared by a good start. */
  startFailure?: StartFailure;
}

interface StartFailure {
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
  /**
   * Installed in the kernel: chains resolved. Prefix mappings as
   * "network/length". In no particular order: a whole pass writes the file's,
   * a push by difference adds its new mappings at the end.
   */
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

/** Large enough for applied.json at 100k mappings, small enough that a planted file cannot balloon a reader. */
const STATE_MAX_BYTES = 128 * 1024 * 1024;

/**
 * A state file, read like the mapping file: no symlink on the way, owned by
 * root (or the agent's user), not writable by others, opened without
 * blocking (a FIFO planted there must not hang the agent or `status`),
 * size capped. null when it does not exist.
 */
export async function readState<T>(stateDir: string, name: string): Promise<T | null> {
  const text = await readTrustedFile(join(stateDir, name), { maxBytes: STATE_MAX_BYTES, extraOwners: ownUid() });
  return text === null ? null : (JSON.parse(text) as T);
}

/**
 * Replaces a state file atomically. The directory is made root's 0755 when
 * absent, repaired (group and other write taken away) when it is ours but
 * writable by others, and refused when it is a symlink or someone else's:
 * root must not write where another user can plant links. The temp file is
 * created exclusively and without following a link, then renamed.
 */
export async function writeState(stateDir: string, name: string, doc: unknown): Promise<void> {
  await prepareStateDir(stateDir);
  const target = join(stateDir, name);
  const tmp = `${target}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o644);
  try {
    await fh.writeFile(JSON.stringify(doc) + '\n');
  } catch (e) {
    await fh.close();
    await unlink(tmp).catch(() => {}); // best effort: the write's own error is what the caller gets
    throw e;
  }
  await fh.close();
  // fsync is skipped on purpose: the state dir is tmpfs (/run), and stale
  // state after a power loss is harmless because the kernel table is gone too.
  await rename(tmp, target);
}

class UntrustedStateDirError extends Error {}

/** Makes the state directory safe to write in, or says why it is not. */
export async function prepareStateDir(stateDir: string): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o755 });
  const st = await lstat(stateDir);
  if (st.isSymbolicLink() || !st.isDirectory())
    throw new UntrustedStateDirError(
      `state directory ${stateDir} is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'}; refusing to write in it`,
    );
  if (!new Set([0, ...ownUid()]).has(st.uid))
    throw new UntrustedStateDirError(`state directory ${stateDir} is owned by uid ${st.uid}, not root; refusing to write in it`);
  if (st.mode & 0o022) await chmod(stateDir, st.mode & 0o755);
}
