// One pass of the data flow: config and flag -> mapping file -> parsed
// mappings -> desired state -> reconcile -> snapshot. Shared by `apply` (one
// pass, then exit) and `watch` (a pass per change). A refused or failed pass
// never changes the kernel: the last known good state stays.
import { createHash } from 'node:crypto';
import { LOG_LEVELS, type Logger } from './logger.js';
import { loadConfig, ownUid, type Config } from '../input/config.js';
import { readTrustedFile, ResourceError, UntrustedFileError, DEFAULT_MAX_BYTES } from '../input/trusted-file.js';
import { readKernelCmdline, resolveFlag, type Flag } from '../input/flag.js';
import { fromKey, parseMappingFile, splitExpired, nextExpiry, MappingFileError, type MappingFile } from '../input/mapping-file.js';
import { resolveChains, countMappings, type DesiredMappings } from '../desired/resolve.js';
import type { Reconciler, SyncResult } from '../kernel/reconciler.js';
import type { Paths } from '../input/settings.js';
import { AgentStats } from './metrics.js';
import { missingCapabilities, type Ruleset } from '../kernel/ruleset.js';
import {
  APPLIED_FILE,
  readSnapshot,
  writeSnapshot,
  writeState,
  type AppliedState,
  type PushOutcome,
  type Snapshot,
} from '../state/state-file.js';
import { prefixKey } from '../net/prefix.js';

export interface PassResult {
  /** What happened to the mapping file (or the flag). */
  outcome: 'applied' | 'unchanged' | 'refused' | 'failed' | 'disabled' | 'no-file';
  flag: Flag;
  message?: string;
  sync?: SyncResult;
}

export interface AgentOptions {
  paths: Paths;
  env: NodeJS.ProcessEnv;
  reconciler: Reconciler;
  log: Logger;
  /** The watching daemon records its pid so status can tell it runs. */
  daemon: boolean;
  /** The table's shape on the running kernel, recorded for status. */
  ruleset?: Ruleset;
}

export class Agent {
  private snapshot: Snapshot | null = null;
  private startedAt = new Date().toISOString();
  /** The last state this process applied: what drift repair restores, whatever the file says now. */
  private lastGood: DesiredMappings | null = null;
  /** The file behind lastGood, to re-resolve when one of its mappings expires. */
  private lastGoodFile: MappingFile | null = null;
  private expiry: number | null = null;
  /** Counters for metrics, drift repairs among them; the daemon renders them. */
  private readonly counters = new AgentStats();
  private appliedWritten = false;
  private lastRefusal: string | null = null;
  private acceptLower = false;
  private lastConfig: Config | null = null;

  constructor(private readonly o: AgentOptions) {}

  /** When the next mapping of the applied file expires (epoch ms), or null. */
  get nextExpiry(): number | null {
    return this.expiry;
  }

  /** The config of the last pass, for the daemon's timers and metrics. */
  get config(): Config | null {
    return this.lastConfig;
  }

  /** The counters metrics render; read-only outside the agent. */
  get stats(): Readonly<AgentStats> {
    return this.counters;
  }

  /** Per-mapping traffic from the latest usage sample, for metrics. */
  recordUsage(perMapping: AgentStats['perMapping']): void {
    this.counters.perMapping = perMapping;
  }

  /** Loads the previous snapshot, so a restarted agent keeps refusing older generations. */
  async init(): Promise<void> {
    try {
      this.snapshot = await readSnapshot(this.o.paths.stateDir);
    } catch (e) {
      this.o.log.warn(
        { event: 'snapshot_unreadable', reason: (e as Error).message },
        'previous status snapshot unreadable; generation check starts afresh',
      );
      this.snapshot = null;
    }
  }

  /** A pass the machine could not make now (out of descriptors, say): nothing changed, retried by the watcher. */
  private async failedFor(flag: Flag, reason: string, generation: number | undefined, started: number): Promise<PassResult> {
    this.counters.syncFailures++;
    this.o.log.error({ event: 'apply_failed', generation, reason, durationMs: ms(started) }, 'apply failed; kernel state unchanged');
    await this.record({ flag, push: { at: now(), outcome: 'failed', generation, reason } });
    return { outcome: 'failed', flag, message: reason };
  }

  /**
   * The next pass applies the file even if its generation is lower than the
   * accepted one, and makes it the accepted one: the way back after the
   * control plane pushed an absurd generation (say 2^53-1), which would
   * otherwise lock out every later push until the state directory goes.
   */
  acceptLowerGenerationOnce(): void {
    this.acceptLower = true;
  }

  async pass(): Promise<PassResult> {
    const started = performance.now();
    const { log, paths } = this.o;

    let config: Config;
    let flag: Flag;
    try {
      config = await loadConfig(paths.config);
      flag = resolveFlag(this.o.env, await readKernelCmdline(this.o.env), config.enabled);
      this.lastConfig = config;
      // The config's level, unless the environment set one for this run.
      if (!LOG_LEVELS.has(this.o.env.ADDRMAP_LOG_LEVEL ?? '') && log.level !== config.logLevel) log.level = config.logLevel;
    } catch (e) {
      // A broken config must not flip the feature either way: keep the state.
      const flagNow = this.snapshot?.flag ?? { enabled: false, source: 'default' as const };
      const message = (e as Error).message;
      if (e instanceof ResourceError) return this.failedFor(flagNow, message, undefined, started);
      this.counters.refusedPushes++;
      log.error({ event: 'config_refused', reason: message }, 'config refused; kernel state unchanged');
      await this.record({ flag: flagNow, push: { at: now(), outcome: 'refused', reason: message } });
      return { outcome: 'refused', flag: flagNow, message };
    }

    this.counters.enabled = flag.enabled;
    if (!flag.enabled) {
      this.lastGood = null;
      this.lastGoodFile = null;
      this.expiry = null;
      this.counters.mappings = 0;
      const r = await this.o.reconciler.disable();
      if (r.removedTable || r.routesRemoved)
        log.info({ event: 'disabled', flagSource: flag.source, ...r }, 'feature off: table and routes removed');
      await this.record({ flag, applied: null });
      return { outcome: 'disabled', flag };
    }

    let generation: number | undefined;
    let read: string | undefined;
    try {
      const text = await readMappingFile(paths.mappings);
      read = text ?? undefined;
      if (text === null) {
        // No file (yet, or deleted): keep whatever is installed. On a first
        // boot there is nothing installed and nothing to do.
        log.warn({ event: 'no_mapping_file', file: paths.mappings }, 'mapping file absent; current mappings kept');
        await this.record({ flag, warnings: [`mapping file ${paths.mappings} is absent; current mappings kept`] });
        return { outcome: 'no-file', flag };
      }
      generation = peekGeneration(text);
      const file = parseMappingFile(text, { allowedTargets: config.allowedTargets });
      generation = file.generation;
      const applied = this.snapshot?.acceptedGeneration ?? this.snapshot?.applied?.generation;
      const lowerAccepted = this.acceptLower && applied !== undefined && file.generation < applied;
      this.acceptLower = false;
      if (applied !== undefined && file.generation < applied && !lowerAccepted) {
        throw new MappingFileError(
          'generation',
          `generation ${file.generation} is older than the applied generation ${applied} (after a mistaken push: addrmap apply --accept-lower-generation)`,
        );
      }
      if (lowerAccepted)
        log.warn(
          { event: 'generation_lowered', generation: file.generation, previous: applied },
          `generation ${file.generation} accepted below ${applied}, as asked`,
        );
      const { live, expired } = splitExpired(file.mappings, Date.now());
      const desired = resolveChains(live, file.self);
      let sync: SyncResult;
      try {
        sync = await this.o.reconciler.sync(desired);
      } catch (e) {
        const reason = (e as Error).message;
        this.counters.syncFailures++;
        log.error({ event: 'apply_failed', generation, reason, durationMs: ms(started) }, 'apply failed; kernel state unchanged');
        await this.record({ flag, push: { at: now(), outcome: 'failed', generation, reason } });
        return { outcome: 'failed', flag, message: reason };
      }
      this.lastGood = desired;
      this.lastGoodFile = file;
      this.expiry = nextExpiry(file.mappings, Date.now());
      const outcome = sync.kind === 'none' && applied === file.generation ? 'unchanged' : 'applied';
      this.counters.recordSync((performance.now() - started) / 1000);
      this.counters.generation = file.generation;
      this.counters.mappings = countMappings(desired);
      if (outcome === 'applied' || !this.appliedWritten) await this.writeApplied(file, desired);
      const mappings = countMappings(desired);
      log.info(
        {
          event: outcome === 'applied' ? 'applied' : 'unchanged',
          generation,
          mappings,
          kind: sync.kind,
          added: sync.added,
          removed: sync.removed,
          retargeted: sync.retargeted,
          routesAdded: sync.routesAdded,
          routesRemoved: sync.routesRemoved,
          conntrackQueued: sync.conntrackQueued,
          ...(expired.length ? { expired: expired.length } : {}),
          durationMs: ms(started),
        },
        outcome === 'applied' ? `generation ${generation} applied` : `generation ${generation} already in place`,
      );
      for (const w of sync.warnings) log.warn({ event: 'degraded', generation, reason: w }, w);
      await this.record({
        flag,
        applied: { generation: file.generation, at: now(), mappings },
        ...(lowerAccepted ? { lowered: true } : {}),
        // Re-reading an unchanged file is not news: keep the push that mattered.
        ...(outcome === 'applied' ? { push: { at: now(), outcome, generation } } : {}),
        warnings: sync.warnings,
      });
      return { outcome, flag, sync };
    } catch (e) {
      if (e instanceof ResourceError) return this.failedFor(flag, e.message, generation, started);
      if (!(e instanceof MappingFileError)) throw e;
      // The same bad file read again (a second change event, a retry) is one
      // push: counted and logged once.
      const key = `${read === undefined ? e.message : createHash('sha256').update(read).digest('hex')}\0${generation}`;
      if (key !== this.lastRefusal) {
        this.counters.refusedPushes++;
        log.error(
          { event: 'refused', generation, entry: e.entry, reason: e.reason, file: paths.mappings, durationMs: ms(started) },
          `mapping file refused; kernel state unchanged: ${e.message}`,
        );
      }
      this.lastRefusal = key;
      await this.record({ flag, push: { at: now(), outcome: 'refused', generation, reason: e.reason, entry: e.entry } });
      return { outcome: 'refused', flag, message: e.message };
    }
  }

  /** Where a mapping of the applied state leads: an address, or for a prefix mapping ("net/len") the target prefix. */
  targetOf(key: string): string | undefined {
    const d = this.lastGood;
    if (!d) return undefined;
    const single = d.v6.get(key) ?? d.v4.get(key);
    if (single !== undefined) return single;
    const p = d.prefixes?.find((x) => prefixKey(x.from, x.length) === key);
    return p && prefixKey(p.to, p.length);
  }

  /** Whether this process has a state the kernel should hold (and drift can be measured against). */
  get holdsState(): boolean {
    return this.lastGood !== null;
  }

  /**
   * Re-reads the kernel and restores the last applied state, after another
   * tool changed addrmap's table. The mapping file is not read: a bad file
   * pushed meanwhile must not stop the repair.
   */
  async repair(reason: string): Promise<SyncResult | null> {
    if (!this.lastGood) return null;
    const started = performance.now();
    this.o.reconciler.invalidate();
    let sync: SyncResult;
    try {
      sync = await this.o.reconciler.sync(this.lastGood);
    } catch (e) {
      this.o.log.error({ event: 'drift_repair_failed', reason: (e as Error).message, drift: reason }, 'could not repair the table');
      throw e;
    }
    if (sync.forcedOnly) {
      // The kernel was as it should be; the rebuild only follows a failed transaction.
      this.o.log.info(
        { event: 'rebuilt', reason: 'the transaction before failed', drift: reason, durationMs: ms(started) },
        'table rebuilt after a failed transaction; no drift',
      );
    } else if (sync.kind !== 'none') {
      this.counters.driftRepairs++;
      this.o.log.warn(
        {
          event: 'drift_repaired',
          drift: reason,
          kind: sync.kind,
          added: sync.added,
          removed: sync.removed,
          retargeted: sync.retargeted,
          durationMs: ms(started),
          repairs: this.counters.driftRepairs,
        },
        `kernel state changed by another tool (${reason}); repaired`,
      );
      if (this.snapshot) await this.record({ flag: this.snapshot.flag });
    } else {
      this.o.log.debug({ event: 'drift_checked', drift: reason, durationMs: ms(started) }, 'kernel state matches');
    }
    return sync;
  }

  /**
   * Removes the mappings of the applied file whose time has come, without
   * waiting for a push (and whatever the file on disk says meanwhile).
   */
  async expire(): Promise<SyncResult | null> {
    const file = this.lastGoodFile;
    if (!file) return null;
    const started = performance.now();
    const nowMs = Date.now();
    const { live, expired } = splitExpired(file.mappings, nowMs);
    this.expiry = nextExpiry(file.mappings, nowMs);
    const desired = resolveChains(live, file.self);
    const before = this.lastGood;
    const sync = await this.o.reconciler.sync(desired);
    this.lastGood = desired;
    this.counters.mappings = countMappings(desired);
    const wasMapped = (m: { family: number; from: string }) => (m.family === 4 ? before?.v4 : before?.v6)?.has(m.from) ?? false;
    if (sync.kind !== 'none') {
      await this.writeApplied(file, desired);
      this.o.log.info(
        {
          event: 'expired',
          generation: file.generation,
          mappings: countMappings(desired),
          expired: expired.filter(wasMapped).map((m) => ({ from: m.from, to: m.to, expires: new Date(m.expires!).toISOString() })),
          removed: sync.removed,
          retargeted: sync.retargeted,
          durationMs: ms(started),
        },
        `${sync.removed} mapping(s) expired and removed`,
      );
      if (this.snapshot)
        await this.record({
          flag: this.snapshot.flag,
          applied: { generation: file.generation, at: this.snapshot.applied?.at ?? now(), mappings: countMappings(desired) },
        });
    }
    return sync;
  }

  private async writeApplied(file: MappingFile, desired: DesiredMappings): Promise<void> {
    const state: AppliedState = {
      schema: 1,
      generation: file.generation,
      at: now(),
      file: this.o.paths.mappings,
      entries: file.mappings.map((m) => ({
        from: fromKey(m),
        to: m.prefixLength === undefined ? m.to : prefixKey(m.to, m.prefixLength),
        ...(m.expires === undefined ? {} : { expires: new Date(m.expires).toISOString() }),
      })),
      resolved: [
        ...[...desired.v4].map(([from, to]) => ({ family: 4 as const, from, to })),
        ...[...desired.v6].map(([from, to]) => ({ family: 6 as const, from, to })),
        ...(desired.prefixes ?? []).map((p) => ({ family: p.family, from: prefixKey(p.from, p.length), to: prefixKey(p.to, p.length) })),
      ],
      ...(desired.self?.size ? { self: [...desired.self].map(([from, to]) => ({ from, to })) } : {}),
    };
    this.appliedWritten = await writeState(this.o.paths.stateDir, APPLIED_FILE, state).then(
      () => true,
      (e: Error) => (this.o.log.error({ event: 'state_write_failed', reason: e.message }, 'cannot write applied mappings'), false),
    );
  }

  /** Marks the agent as stopped in the snapshot. */
  async stopped(): Promise<void> {
    if (this.snapshot) await writeSnapshot(this.o.paths.stateDir, { ...this.snapshot, pid: null, updatedAt: now() });
  }

  private async record(u: { flag: Flag; applied?: Snapshot['applied']; push?: PushOutcome; warnings?: string[]; lowered?: boolean }) {
    const prev = this.snapshot;
    const snap: Snapshot = {
      schema: 1,
      pid: this.o.daemon ? process.pid : (prev?.pid ?? null),
      startedAt: this.o.daemon ? this.startedAt : (prev?.startedAt ?? null),
      updatedAt: now(),
      flag: u.flag,
      mappingsFile: this.o.paths.mappings,
      applied: u.applied === undefined ? (prev?.applied ?? null) : u.applied,
      lastPush: u.push ?? prev?.lastPush ?? null,
      warnings: u.warnings ?? prev?.warnings ?? [],
      driftRepairs: this.counters.driftRepairs,
    };
    const caps = this.o.ruleset?.caps;
    if (caps) snap.kernel = { ...caps, missing: missingCapabilities(caps) };
    else if (prev?.kernel) snap.kernel = prev.kernel;
    const accepted = u.lowered
      ? snap.applied!.generation
      : Math.max(prev?.acceptedGeneration ?? -1, prev?.applied?.generation ?? -1, snap.applied?.generation ?? -1);
    if (accepted >= 0) snap.acceptedGeneration = accepted;
    this.snapshot = snap;
    try {
      await writeSnapshot(this.o.paths.stateDir, snap);
    } catch (e) {
      // Status goes stale, but the data plane must not suffer for it.
      this.o.log.error({ event: 'state_write_failed', reason: (e as Error).message }, 'cannot write status snapshot');
    }
  }
}

/** The generation of a file that may be refused, so the refusal can name it. */
function peekGeneration(text: string): number | undefined {
  const m = /"generation"\s*:\s*(\d{1,15})\b/.exec(text.slice(0, 4096));
  return m ? Number(m[1]) : undefined;
}

/** Trust and size failures are refusals like any other bad file. */
async function readMappingFile(path: string): Promise<string | null> {
  try {
    return await readTrustedFile(path, { maxBytes: DEFAULT_MAX_BYTES, extraOwners: ownUid() });
  } catch (e) {
    if (e instanceof UntrustedFileError) throw new MappingFileError(null, e.message);
    throw e;
  }
}

const now = () => new Date().toISOString();
const ms = (since: number) => Math.round((performance.now() - since) * 10) / 10;
