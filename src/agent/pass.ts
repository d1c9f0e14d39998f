// One pass of the data flow, as a function of its inputs: config and flag ->
// mapping file -> parsed mappings -> desired state -> kernel. It returns one
// outcome and writes nothing but the kernel; the recorder turns the outcome
// into log lines, counters and state files. A refused or failed pass never
// changes the kernel: the last known good state stays.
import { createHash } from 'node:crypto';
import { loadConfig, ownUid, type Config } from '../input/config.js';
import { readTrustedBytes, ResourceError, UntrustedFileError, DEFAULT_MAX_BYTES } from '../input/trusted-file.js';
import { readKernelCmdline, resolveFlag, type Flag } from '../input/flag.js';
import { splitExpired, MappingFileError, type MappingFile } from '../input/mapping-file.js';
import { reparse, type ParsedBytes } from '../input/reparse.js';
import { resolveChains, type DesiredMappings } from '../desired/resolve.js';
import { resolveDelta } from '../desired/resolve-delta.js';
import type { Reconciler, SyncResult } from '../kernel/reconciler.js';
import type { Paths } from '../input/settings.js';

export interface PassInputs {
  paths: Paths;
  env: NodeJS.ProcessEnv;
  reconciler: Reconciler;
  /** The highest generation accepted so far, if any. */
  accepted: number | undefined;
  /** Apply a file below the accepted generation, this once. */
  acceptLower: boolean;
  /** The flag as last seen, kept when the config cannot be read. */
  lastFlag: Flag;
  /** What earlier passes of this process learned, so a push costs what it changes (absent: every pass starts afresh). */
  memory?: PassMemory;
}

/**
 * Kept by the agent from pass to pass; the pass alone reads and changes it.
 * It holds the last applied file's parse and the desired state the kernel
 * holds for it, together or not at all: a push is parsed and resolved by its
 * difference from that file only while the kernel is known to hold it.
 */
export class PassMemory {
  private kept: { parsed: ParsedBytes; desired: DesiredMappings } | null = null;
  /** A read buffer no parse holds any more: the next file is read into it (at 100k mappings, 8.5 MB a push otherwise). */
  private spare: Buffer | null = null;

  /** What the last pass left, which no one else may use from now on: reparse takes its indexes over. */
  take(): { parsed: ParsedBytes; desired: DesiredMappings } | null {
    const k = this.kept;
    this.kept = null;
    return k;
  }

  keep(parsed: ParsedBytes, desired: DesiredMappings): void {
    this.kept = { parsed, desired };
  }

  /** The spare read buffer, which the caller now owns. */
  takeSpare(): Buffer | null {
    const b = this.spare;
    this.spare = null;
    return b;
  }

  keepSpare(b: Buffer | null): void {
    this.spare = b;
  }
}

/** What one pass did. Every kind but `applied` and `unchanged` left the kernel as it was (`disabled` removed addrmap's own). */
export type PassOutcome = { durationMs: number } & (
  | { kind: 'config-refused'; flag: Flag; reason: string }
  | { kind: 'failed'; flag: Flag; config?: Config; generation?: number; reason: string }
  | { kind: 'disabled'; flag: Flag; config: Config; removedTable: boolean; routesRemoved: number }
  | { kind: 'no-file'; flag: Flag; config: Config }
  | {
      kind: 'refused';
      flag: Flag;
      config: Config;
      generation?: number;
      error: MappingFileError;
      /** Tells one bad file from another without keeping its text: the same file read again is the same push. */
      fingerprint: string;
    }
  | {
      kind: 'applied' | 'unchanged';
      flag: Flag;
      config: Config;
      file: MappingFile;
      desired: DesiredMappings;
      sync: SyncResult;
      expired: number;
      /** Set when a lower generation was accepted, as asked: the generation it replaced. */
      lowered?: number;
    }
);

export async function runPass(i: PassInputs): Promise<PassOutcome> {
  const started = performance.now();
  const done = <T extends object>(o: T) => ({ ...o, durationMs: ms(started) });

  let config: Config;
  let flag: Flag;
  try {
    config = await loadConfig(i.paths.config);
    flag = resolveFlag(i.env, await readKernelCmdline(i.env), config.enabled);
  } catch (e) {
    // A broken config must not flip the feature either way: keep the state.
    const reason = (e as Error).message;
    if (e instanceof ResourceError) return done({ kind: 'failed', flag: i.lastFlag, reason });
    return done({ kind: 'config-refused', flag: i.lastFlag, reason });
  }

  if (!flag.enabled) {
    i.memory?.take(); // nothing to compare the next push with: the table goes
    return done({ kind: 'disabled', flag, config, ...(await i.reconciler.disable()) });
  }

  let generation: number | undefined;
  let bytes: Buffer | null = null;
  // Anything but a whole success leaves the memory empty: the next pass starts afresh.
  const base = i.memory?.take() ?? null;
  try {
    bytes = await readMappingFile(i.paths.mappings, i.memory?.takeSpare() ?? null);
    // No file (yet, or deleted): keep whatever is installed. On a first
    // boot there is nothing installed and nothing to do.
    if (bytes === null) return done({ kind: 'no-file', flag, config });
    generation = peekGeneration(bytes.toString('latin1', 0, 4096));
    const parsed = reparse(bytes, base?.parsed ?? null, { allowedTargets: config.allowedTargets }, { remember: i.memory !== undefined });
    const file = parsed.file;
    // Whichever of the two files' buffers the parse no longer holds reads the next one.
    i.memory?.keepSpare(parsed.memory?.bytes === bytes ? (base?.parsed.bytes ?? null) : bytes);
    generation = file.generation;
    const lowered = i.acceptLower && i.accepted !== undefined && file.generation < i.accepted ? i.accepted : undefined;
    if (i.accepted !== undefined && file.generation < i.accepted && lowered === undefined) {
      throw new MappingFileError(
        'generation',
        `generation ${file.generation} is older than the applied generation ${i.accepted} (after a mistaken push: addrmap apply --accept-lower-generation)`,
      );
    }
    // A file without expiries (as its memory counts them) has nothing to look for.
    const { live, expired } =
      parsed.memory?.expiring === 0 ? { live: file.mappings, expired: [] } : splitExpired(file.mappings, Date.now());
    let desired: DesiredMappings | null = null;
    let sync: SyncResult | null = null;
    try {
      // By difference when the kernel holds the file before and the change
      // touches no chain; whole otherwise (and for any expiry: the live set
      // is then not the file).
      const changes =
        parsed.delta && parsed.memory && base && !expired.length
          ? resolveDelta(parsed.delta, parsed.memory, new Set((file.self ?? []).map((s) => s.from)))
          : null;
      if (changes && base) {
        sync = await i.reconciler.syncChanges(base.desired, changes);
        if (sync) desired = { ...base.desired };
      }
      if (!sync || !desired) {
        desired = resolveChains(live, file.self);
        sync = await i.reconciler.sync(desired);
      }
    } catch (e) {
      if (e instanceof MappingFileError) throw e;
      return done({ kind: 'failed', flag, config, generation, reason: (e as Error).message });
    }
    if (parsed.memory && !expired.length) i.memory?.keep(parsed.memory, desired);
    const kind = sync.kind === 'none' && i.accepted === file.generation ? 'unchanged' : 'applied';
    return done({ kind, flag, config, file, desired, sync, expired: expired.length, ...(lowered === undefined ? {} : { lowered }) });
  } catch (e) {
    if (e instanceof ResourceError) return done({ kind: 'failed', flag, config, generation, reason: e.message });
    if (!(e instanceof MappingFileError)) throw e;
    const fingerprint = `${bytes === null ? e.message : createHash('sha256').update(bytes).digest('hex')}\0${generation}`;
    return done({ kind: 'refused', flag, config, generation, error: e, fingerprint });
  }
}

/** The generation of a file that may be refused, so the refusal can name it. */
function peekGeneration(text: string): number | undefined {
  const m = /"generation"\s*:\s*(\d{1,15})\b/.exec(text.slice(0, 4096));
  return m ? Number(m[1]) : undefined;
}

/** Trust and size failures are refusals like any other bad file. */
async function readMappingFile(path: string, into: Buffer | null): Promise<Buffer | null> {
  try {
    return await readTrustedBytes(path, { maxBytes: DEFAULT_MAX_BYTES, extraOwners: ownUid() }, into);
  } catch (e) {
    if (e instanceof UntrustedFileError) throw new MappingFileError(null, e.message);
    throw e;
  }
}

export const ms = (since: number) => Math.round((performance.now() - since) * 10) / 10;
