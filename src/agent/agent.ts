// The agent: what the kernel should hold now, and the three ways it changes.
// A pass (the mapping file read again), a repair (another tool changed the
// table) and an expiry (a mapping's time came). Each computes its outcome
// (pass.ts, upkeep.ts) and hands it to the recorder, which alone writes logs,
// counters and state files. Shared by `apply` (one pass, then exit) and `watch`.
import type { Logger } from './logger.js';
import type { Config } from '../input/config.js';
import type { Flag } from '../input/flag.js';
import { nextExpiry, type MappingFile } from '../input/mapping-file.js';
import type { DesiredMappings } from '../desired/resolve.js';
import type { Reconciler, SyncResult } from '../kernel/reconciler.js';
import type { Paths } from '../input/settings.js';
import type { AgentStats } from './metrics.js';
import type { Ruleset } from '../kernel/ruleset.js';
import { movePair, targetIn } from '../net/prefix.js';
import { runPass, PassMemory, type PassOutcome } from './pass.js';
import { Recorder } from './recorder.js';
import { runExpiry, runRepair } from './upkeep.js';

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
  /** Keep what a pass learns for the next (default: when a daemon); a one-shot apply has no next pass. */
  remember?: boolean;
  /** The table's shape on the running kernel, recorded for status. */
  ruleset?: Ruleset;
}

export class Agent {
  /** The last state this process applied: what drift repair restores, whatever the file says now. */
  private lastGood: DesiredMappings | null = null;
  /** The file behind lastGood, to re-resolve when one of its mappings expires. */
  private lastGoodFile: MappingFile | null = null;
  private expiry: number | null = null;
  private acceptLower = false;
  private lastConfig: Config | null = null;
  private readonly recorder: Recorder;
  private readonly memory: PassMemory | undefined;

  constructor(private readonly o: AgentOptions) {
    this.memory = (o.remember ?? o.daemon) ? new PassMemory() : undefined;
    this.recorder = new Recorder(o);
  }

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
    return this.recorder.counters;
  }

  /** Per-mapping traffic from the latest usage sample, for metrics. */
  recordUsage(perMapping: AgentStats['perMapping']): void {
    this.recorder.usage(perMapping);
  }

  /** Loads the previous snapshot, so a restarted agent keeps refusing older generations. */
  init(): Promise<void> {
    return this.recorder.init();
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
    const { paths, env, reconciler } = this.o;
    const acceptLower = this.acceptLower;
    this.acceptLower = false;
    const o = await runPass({
      paths,
      env,
      reconciler,
      accepted: this.recorder.accepted,
      acceptLower,
      lastFlag: this.recorder.flag,
      memory: this.memory,
    });
    if ('config' in o && o.config) this.lastConfig = o.config;
    if (o.kind === 'disabled') {
      this.lastGood = null;
      this.lastGoodFile = null;
      this.expiry = null;
    } else if (o.kind === 'applied' || o.kind === 'unchanged') {
      this.lastGood = o.desired;
      this.lastGoodFile = o.file;
      this.expiry = nextExpiry(o.file.mappings, Date.now());
    }
    await this.recorder.record(o);
    return resultOf(o);
  }

  /** Where a mapping of the applied state leads: an address, or for a prefix mapping ("net/len") the target prefix. */
  targetOf(key: string): string | undefined {
    return this.lastGood ? targetIn(this.lastGood, key) : undefined;
  }

  /**
   * The applied mappings as "from -> to" pairs (prefix mappings as "net/len"
   * both sides), for flows and history: a view over the applied state, not a
   * copy (100k pairs would stay in memory twice), and the same object for as
   * long as the same state is applied, so what is derived from it (its
   * prefix moves) is derived once.
   */
  appliedPairs(): ReadonlyMap<string, string> {
    const d = this.lastGood;
    if (!d) return new Map();
    if (this.pairs?.of !== d) {
      const prefixes = new Map((d.prefixes ?? []).map(movePair));
      this.pairs = { of: d, pairs: new JoinedMap([d.v4, d.v6, prefixes]) };
    }
    return this.pairs.pairs;
  }

  private pairs: { of: DesiredMappings; pairs: ReadonlyMap<string, string> } | null = null;

  /** Whether this process has a state the kernel should hold (and drift can be measured against). */
  get holdsState(): boolean {
    return this.lastGood !== null;
  }

  /**
   * Re-reads the kernel and restores the last applied state, after another
   * tool changed addrmap's table (runRepair); a failure is recorded, then thrown.
   */
  async repair(reason: string): Promise<SyncResult | null> {
    if (!this.lastGood) return null;
    const o = await runRepair(this.o.reconciler, this.lastGood, reason);
    await this.recorder.record(o);
    if (o.kind === 'repair-failed') throw o.error;
    return o.sync;
  }

  /**
   * Removes the mappings of the applied file whose time has come, without
   * waiting for a push (and whatever the file on disk says meanwhile).
   */
  async expire(): Promise<SyncResult | null> {
    const file = this.lastGoodFile;
    if (!file) return null;
    const nowMs = Date.now();
    this.expiry = nextExpiry(file.mappings, nowMs);
    const o = await runExpiry(this.o.reconciler, file, this.lastGood, nowMs);
    this.lastGood = o.desired;
    await this.recorder.record(o);
    return o.sync;
  }

  /** Marks the agent as stopped in the snapshot. */
  stopped(): Promise<void> {
    return this.recorder.stopped();
  }
}

function resultOf(o: PassOutcome): PassResult {
  switch (o.kind) {
    case 'config-refused':
      return { outcome: 'refused', flag: o.flag, message: o.reason };
    case 'failed':
      return { outcome: 'failed', flag: o.flag, message: o.reason };
    case 'refused':
      return { outcome: 'refused', flag: o.flag, message: o.error.message };
    case 'disabled':
    case 'no-file':
      return { outcome: o.kind, flag: o.flag };
    case 'applied':
    case 'unchanged':
      return { outcome: o.kind, flag: o.flag, sync: o.sync };
  }
}

/** Maps with disjoint keys read as one, without copying them. */
class JoinedMap<K, V> implements ReadonlyMap<K, V> {
  constructor(private readonly parts: readonly ReadonlyMap<K, V>[]) {}

  get size(): number {
    return this.parts.reduce((n, p) => n + p.size, 0);
  }

  has(key: K): boolean {
    return this.parts.some((p) => p.has(key));
  }

  get(key: K): V | undefined {
    for (const p of this.parts) if (p.has(key)) return p.get(key);
    return undefined;
  }

  *entries(): MapIterator<[K, V]> {
    for (const p of this.parts) yield* p.entries();
  }

  *keys(): MapIterator<K> {
    for (const p of this.parts) yield* p.keys();
  }

  *values(): MapIterator<V> {
    for (const p of this.parts) yield* p.values();
  }

  forEach(fn: (value: V, key: K, map: ReadonlyMap<K, V>) => void): void {
    for (const [k, v] of this.entries()) fn(v, k, this);
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }
}
