// The two changes the agent makes without a pass, as outcomes like a pass's:
// a repair (another tool changed the table: the last applied state is put
// back) and an expiry (mappings of the applied file whose time came are
// removed). Each is a function of what the agent holds and returns what
// happened; the recorder alone turns it into log lines, counters and state.
import { splitExpired, type MappingFile } from '../input/mapping-file.js';
import { resolveChains, type DesiredMappings } from '../desired/resolve.js';
import type { Reconciler, SyncResult } from '../kernel/reconciler.js';
import { ms } from './pass.js';

/** One mapping that expired, as the `expired` line names it. */
interface ExpiredMapping {
  from: string;
  to: string;
  expires: string;
}

export type RepairOutcome =
  | { kind: 'repair'; drift: string; sync: SyncResult; durationMs: number }
  | { kind: 'repair-failed'; drift: string; reason: string; error: unknown };

export interface ExpiryOutcome {
  kind: 'expiry';
  file: MappingFile;
  /** What the kernel now holds: the file's live mappings, resolved. */
  desired: DesiredMappings;
  /** The expired mappings that were in effect (not those already out when the file was applied). */
  expired: ExpiredMapping[];
  sync: SyncResult;
  durationMs: number;
}

/**
 * Re-reads the kernel and restores `applied`. The mapping file is not read:
 * a bad file pushed meanwhile must not stop the repair.
 */
export async function runRepair(reconciler: Reconciler, applied: DesiredMappings, drift: string): Promise<RepairOutcome> {
  const started = performance.now();
  reconciler.invalidate();
  try {
    return { kind: 'repair', drift, sync: await reconciler.sync(applied), durationMs: ms(started) };
  } catch (e) {
    return { kind: 'repair-failed', drift, reason: (e as Error).message, error: e };
  }
}

/** Removes the mappings of `file` whose time has come at `nowMs`, whatever the file on disk says meanwhile. */
export async function runExpiry(
  reconciler: Reconciler,
  file: MappingFile,
  before: DesiredMappings | null,
  nowMs: number,
): Promise<ExpiryOutcome> {
  const started = performance.now();
  const { live, expired } = splitExpired(file.mappings, nowMs);
  const desired = resolveChains(live, file.self);
  const sync = await reconciler.sync(desired);
  const wasMapped = (m: { family: number; from: string }) => (m.family === 4 ? before?.v4 : before?.v6)?.has(m.from) ?? false;
  const gone = expired.filter(wasMapped).map((m) => ({ from: m.from, to: m.to, expires: new Date(m.expires!).toISOString() }));
  return { kind: 'expiry', file, desired, expired: gone, sync, durationMs: ms(started) };
}
