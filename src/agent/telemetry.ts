// The daemon's outputs besides the kernel: usage sampling (usage.json, for
// status) and Prometheus metrics (a textfile, and optionally a local port).
import { access } from 'node:fs/promises';
import type { Server } from 'node:http';
import { dirname } from 'node:path';
import type { Agent } from './agent.js';
import type { Logger } from './logger.js';
import { serveMetrics, writeMetricsFile } from './metrics.js';
import { readState, writeState, USAGE_FILE, type UsageState } from '../state/state-file.js';
import type { UsageTracker } from './usage.js';
import { HISTORY_FILE, UsageHistory, type HistoryState } from './usage-history.js';
import type { Flow } from '../support/flows.js';
import { readLocalAddresses } from '../net/local-addresses.js';

/** Where the flows to stale addresses come from, for the usage history (none: no history kept). */
export type FlowSource = () => Promise<Flow[]>;

/** The longest wait between usage samples while no counter moves. */
const IDLE_SAMPLE_MAX_S = 600;

export class Telemetry {
  private timer: NodeJS.Timeout | null = null;
  private server: Server | null = null;
  private intervalSeconds = 0;
  /** The wait before the next sample: the interval while counters move, doubling while they do not. */
  private delaySeconds = 0;
  private stopped = false;
  /** A sample that falls due while the previous one still runs is skipped, never queued. */
  private sampling = false;

  constructor(
    private readonly agent: Agent,
    private readonly usage: UsageTracker,
    private readonly stateDir: string,
    private readonly log: Logger,
    private readonly flows: FlowSource | null = null,
  ) {}

  private readonly history = new UsageHistory();

  async start(): Promise<void> {
    this.usage.restore(await readState<UsageState>(this.stateDir, USAGE_FILE).catch(() => null));
    this.history.restore(await readState<HistoryState>(this.stateDir, HISTORY_FILE).catch(() => null));
  }

  /** After every pass: follow config changes, refresh metrics. */
  async afterPass(): Promise<void> {
    const cfg = this.agent.config;
    const interval = cfg?.usageIntervalSeconds ?? 30;
    // A new interval, or a pass (a push, a repair: traffic may follow): back to sampling at the configured pace.
    if (interval !== this.intervalSeconds || this.delaySeconds > interval) {
      this.intervalSeconds = interval;
      this.delaySeconds = interval;
      this.schedule();
    }
    if (cfg?.metricsListen && !this.server) {
      try {
        this.server = await serveMetrics(cfg.metricsListen, this.agent.stats);
        this.log.info({ event: 'metrics_listening', listen: cfg.metricsListen }, 'serving /metrics');
      } catch (e) {
        this.log.error({ event: 'metrics_listen_failed', reason: (e as Error).message }, 'cannot serve metrics');
      }
    }
    await this.writeMetrics();
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.sample().finally(() => this.schedule()), this.delaySeconds * 1000);
    this.timer.unref();
  }

  /** Reads the kernel's per-mapping counters; records use and metrics. */
  async sample(): Promise<void> {
    if (!this.agent.holdsState || this.sampling) return;
    this.sampling = true;
    try {
      const state = await this.usage.sample();
      // Per-mapping series cost memory and time in proportion to the map
      // (100k mappings: 200k series); built only when someone reads them.
      this.agent.recordUsage(
        (await this.metricsWanted())
          ? Object.entries(state.mappings).map(([from, u]) => ({
              from,
              to: this.agent.targetOf(from) ?? '',
              packets: u.packets,
              bytes: u.bytes,
            }))
          : [],
      );
      await writeState(this.stateDir, USAGE_FILE, state);
      const flows = await this.recordHistory();
      // A sample reads the whole map (0.2 s of CPU at 10k mappings): while
      // nothing moves, samples space out, up to IDLE_SAMPLE_MAX_S apart.
      const moved = flows > 0 || Object.values(state.mappings).some((m) => m.lastSeen === state.sampledAt);
      this.delaySeconds = moved ? this.intervalSeconds : Math.min(this.delaySeconds * 2, Math.max(IDLE_SAMPLE_MAX_S, this.intervalSeconds));
      await this.writeMetrics();
    } catch (e) {
      this.log.warn({ event: 'usage_sample_failed', reason: (e as Error).message }, 'cannot sample counters');
    } finally {
      this.sampling = false;
    }
  }

  /** Who uses the stale addresses now, added to the history (a failure costs this sample's history only); how many flows there were. */
  private async recordHistory(): Promise<number> {
    if (!this.flows) return 0;
    const flows = await this.flows().catch((e: Error) => {
      this.log.debug({ event: 'usage_sample_failed', reason: `flows: ${e.message}` }, 'cannot read flows');
      return null;
    });
    if (!flows) return 0;
    const keep = this.agent.config?.retireAfterSeconds ?? 7 * 24 * 3600;
    const local = await readLocalAddresses();
    await writeState(this.stateDir, HISTORY_FILE, this.history.record(flows, keep, new Date(), new Set([...local.v4, ...local.v6])));
    return flows.length;
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.stopped = true;
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  /** Whether metrics are served, or written into a directory that exists (a collector is installed). */
  private async metricsWanted(): Promise<boolean> {
    if (this.server) return true;
    const path = this.agent.config?.metricsFile;
    return (
      !!path &&
      (await access(dirname(path)).then(
        () => true,
        () => false,
      ))
    );
  }

  private async writeMetrics(): Promise<void> {
    const path = this.agent.config?.metricsFile;
    if (!path) return;
    try {
      await writeMetricsFile(path, this.agent.stats);
    } catch (e) {
      this.log.warn({ event: 'metrics_write_failed', reason: (e as Error).message }, 'cannot write metrics file');
    }
  }
}
