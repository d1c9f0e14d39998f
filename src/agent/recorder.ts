// The one place where what the agent did becomes what others see: log
// lines, the counters metrics render, and the two state files status reads
// (status.json, the snapshot; applied.json, the applied mappings). Passes,
// repairs and expiries hand it their outcome; nothing else writes these.
import { LOG_LEVELS, type Logger } from './logger.js';
import { AgentStats } from './metrics.js';
import { fromKey, type MappingFile } from '../input/mapping-file.js';
import { countMappings, type DesiredMappings } from '../desired/resolve.js';
import type { Flag } from '../input/flag.js';
import type { Paths } from '../input/settings.js';
import type { SyncResult } from '../kernel/reconciler.js';
import { missingCapabilities, type Ruleset } from '../kernel/ruleset.js';
import { movePair, prefixKey } from '../net/prefix.js';
import {
  APPLIED_FILE,
  readSnapshot,
  writeSnapshot,
  writeState,
  type AppliedState,
  type PushOutcome,
  type Snapshot,
} from '../state/state-file.js';
import type { PassOutcome } from './pass.js';
import type { ExpiryOutcome, RepairOutcome } from './upkeep.js';

export interface RecorderOptions {
  paths: Paths;
  env: NodeJS.ProcessEnv;
  log: Logger;
  /** The watching daemon records its pid so status can tell it runs. */
  daemon: boolean;
  /** The table's shape on the running kernel, recorded for status. */
  ruleset?: Ruleset;
}

/** Whatever the agent did: a pass, a repair or an expiry. */
export type AgentOutcome = PassOutcome | RepairOutcome | ExpiryOutcome;

export class Recorder {
  private snapshot: Snapshot | null = null;
  private readonly startedAt = new Date().toISOString();
  private readonly stats = new AgentStats();
  private appliedWritten = false;
  /** The fingerprint of the last refused file: read again, it is the same push. */
  private lastRefusal: string | null = null;

  constructor(private readonly o: RecorderOptions) {}

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

  /** The counters metrics render: the live object (metrics read it as it moves), not to be written outside. */
  get counters(): Readonly<AgentStats> {
    return this.stats;
  }

  /** Per-mapping traffic from the latest usage sample. */
  usage(perMapping: AgentStats['perMapping']): void {
    this.stats.perMapping = perMapping;
  }

  /** The one way in: every outcome becomes its log lines, counters and state files here. */
  record(o: AgentOutcome): Promise<void> {
    switch (o.kind) {
      case 'repair':
        return this.repair(o.drift, o.sync, o.durationMs);
      case 'repair-failed':
        this.o.log.error({ event: 'drift_repair_failed', reason: o.reason, drift: o.drift }, 'could not repair the table');
        return Promise.resolve();
      case 'expiry':
        return this.expired(o);
      default:
        return this.pass(o);
    }
  }

  /** The highest generation ever accepted here, if any. */
  get accepted(): number | undefined {
    return this.snapshot?.acceptedGeneration ?? this.snapshot?.applied?.generation;
  }

  /** The flag the last pass recorded. */
  get flag(): Flag {
    return this.snapshot?.flag ?? { enabled: false, source: 'default' };
  }

  private async pass(o: PassOutcome): Promise<void> {
    const { log, paths } = this.o;
    const c = this.stats;
    if ('config' in o && o.config && !LOG_LEVELS.has(this.o.env.ADDRMAP_LOG_LEVEL ?? '') && log.level !== o.config.logLevel)
      log.level = o.config.logLevel; // the config's level, unless the environment set one for this run
    if ('config' in o && o.config) c.enabled = o.flag.enabled;
    switch (o.kind) {
      case 'config-refused':
        c.refusedPushes++;
        log.error({ event: 'config_refused', reason: o.reason }, 'config refused; kernel state unchanged');
        return this.write({ flag: o.flag, push: { at: now(), outcome: 'refused', reason: o.reason } });
      case 'failed':
        c.syncFailures++;
        log.error(
          { event: 'apply_failed', generation: o.generation, reason: o.reason, durationMs: o.durationMs },
          'apply failed; kernel state unchanged',
        );
        return this.write({ flag: o.flag, push: { at: now(), outcome: 'failed', generation: o.generation, reason: o.reason } });
      case 'disabled':
        c.mappings = 0;
        if (o.removedTable || o.routesRemoved)
          log.info(
            { event: 'disabled', flagSource: o.flag.source, removedTable: o.removedTable, routesRemoved: o.routesRemoved },
            'feature off: table and routes removed',
          );
        return this.write({ flag: o.flag, applied: null });
      case 'no-file':
        log.warn({ event: 'no_mapping_file', file: paths.mappings }, 'mapping file absent; current mappings kept');
        // Before the first push an absent file is the normal state, not a problem.
        return this.write({
          flag: o.flag,
          warnings: this.snapshot?.applied ? [`mapping file ${paths.mappings} is absent; current mappings kept`] : [],
        });
      case 'refused': {
        const e = o.error;
        // The same bad file read again (a second change event, a retry) is one push: counted and logged once.
        if (o.fingerprint !== this.lastRefusal) {
          c.refusedPushes++;
          log.error(
            {
              event: 'refused',
              generation: o.generation,
              entry: e.entry,
              reason: e.reason,
              file: paths.mappings,
              durationMs: o.durationMs,
            },
            `mapping file refused; kernel state unchanged: ${e.message}`,
          );
        }
        this.lastRefusal = o.fingerprint;
        const push: PushOutcome = { at: now(), outcome: 'refused', generation: o.generation, reason: e.reason, entry: e.entry };
        return this.write({ flag: o.flag, push });
      }
      case 'applied':
      case 'unchanged': {
        const { file, desired, sync } = o;
        const mappings = countMappings(desired);
        c.recordSync(o.durationMs / 1000);
        c.generation = file.generation;
        c.mappings = mappings;
        this.lastRefusal = null;
        if (o.lowered !== undefined)
          log.warn(
            { event: 'generation_lowered', generation: file.generation, previous: o.lowered },
            `generation ${file.generation} accepted below ${o.lowered}, as asked`,
          );
        if (o.kind === 'applied' || !this.appliedWritten) await this.writeApplied(file, desired);
        log.info(
          {
            event: o.kind,
            generation: file.generation,
            mappings,
            kind: sync.kind,
            added: sync.added,
            removed: sync.removed,
            retargeted: sync.retargeted,
            routesAdded: sync.routesAdded,
            routesRemoved: sync.routesRemoved,
            conntrackQueued: sync.conntrackQueued,
            ...(o.expired ? { expired: o.expired } : {}),
            durationMs: o.durationMs,
          },
          o.kind === 'applied' ? `generation ${file.generation} applied` : `generation ${file.generation} already in place`,
        );
        for (const w of sync.warnings) log.warn({ event: 'degraded', generation: file.generation, reason: w }, w);
        return this.write({
          flag: o.flag,
          applied: { generation: file.generation, at: this.appliedAt(file.generation), mappings },
          ...(o.lowered === undefined ? {} : { lowered: true }),
          // Re-reading an unchanged file is not news: keep the push that mattered.
          ...(o.kind === 'applied' ? { push: { at: now(), outcome: o.kind, generation: file.generation } } : {}),
          warnings: sync.warnings,
        });
      }
    }
  }

  /** A drift check's result: the kernel was repaired, rebuilt after a failed transaction, or found as it should be. */
  private async repair(drift: string, sync: SyncResult, durationMs: number): Promise<void> {
    const { log } = this.o;
    if (sync.forcedOnly) {
      log.info(
        { event: 'rebuilt', reason: 'the transaction before failed', drift, durationMs },
        'table rebuilt after a failed transaction; no drift',
      );
    } else if (sync.kind !== 'none') {
      this.stats.driftRepairs++;
      log.warn(
        {
          event: 'drift_repaired',
          drift,
          kind: sync.kind,
          added: sync.added,
          removed: sync.removed,
          retargeted: sync.retargeted,
          durationMs,
          repairs: this.stats.driftRepairs,
        },
        `kernel state changed by another tool (${drift}); repaired`,
      );
      if (this.snapshot) await this.write({ flag: this.snapshot.flag });
    } else {
      log.debug({ event: 'drift_checked', drift, durationMs }, 'kernel state matches');
    }
  }

  /**
   * When this generation was first applied: a generation read again (unchanged,
   * or put back in a kernel that lost it) keeps its time, so one generation
   * shows one applied time.
   */
  private appliedAt(generation: number): string {
    const prev = this.snapshot?.applied;
    return prev?.generation === generation ? prev.at : now();
  }

  /** Mappings of the applied file whose time came, removed without a push. */
  private async expired({ file, desired, expired, sync, durationMs }: ExpiryOutcome): Promise<void> {
    const mappings = countMappings(desired);
    this.stats.mappings = mappings;
    if (sync.kind === 'none') return;
    await this.writeApplied(file, desired);
    this.o.log.info(
      { event: 'expired', generation: file.generation, mappings, expired, removed: sync.removed, retargeted: sync.retargeted, durationMs },
      `${sync.removed} mapping(s) expired and removed`,
    );
    if (this.snapshot)
      await this.write({
        flag: this.snapshot.flag,
        applied: { generation: file.generation, at: this.appliedAt(file.generation), mappings },
      });
  }

  /** Marks the agent as stopped in the snapshot. */
  async stopped(): Promise<void> {
    if (this.snapshot) await writeSnapshot(this.o.paths.stateDir, { ...this.snapshot, pid: null, updatedAt: now() });
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
        ...(desired.prefixes ?? []).map((p) => {
          const [from, to] = movePair(p);
          return { family: p.family, from, to };
        }),
      ],
      ...(desired.self?.size ? { self: [...desired.self].map(([from, to]) => ({ from, to })) } : {}),
    };
    this.appliedWritten = await writeState(this.o.paths.stateDir, APPLIED_FILE, state).then(
      () => true,
      (e: Error) => (this.o.log.error({ event: 'state_write_failed', reason: e.message }, 'cannot write applied mappings'), false),
    );
  }

  private async write(u: { flag: Flag; applied?: Snapshot['applied']; push?: PushOutcome; warnings?: string[]; lowered?: boolean }) {
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
      driftRepairs: this.stats.driftRepairs,
    };
    // Said by whoever starts addrmap (the one-shot unit sets it); a watching agent is resident whatever it says.
    if (!this.o.daemon && this.o.env.ADDRMAP_RESIDENT === '0') snap.resident = false;
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

const now = () => new Date().toISOString();
