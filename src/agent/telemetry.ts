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

/** The longest time without reading the counters, whatever the flows say. */
const IDLE_SAMPLE_MAX_S = 600;

export class Telemetry {
  private timer: NodeJS.Timeout | null = null;
  private server: Server | null = null;
  private intervalSeconds = 0;
  private stopped = false;
  /** When the counters were last read (epoch ms); whether the next sample must read them again. */
  private listedAt = 0;
  private listAgain = true;
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
  /** What history.json holds now (its addresses, as JSON); null before the first write. */
  private historyWritten: string | null = null;

  async start(): Promise<void> {
    this.usage.restore(await readState<UsageState>(this.stateDir, USAGE_FILE).catch(() => null));
    this.history.restore(await readState<HistoryState>(this.stateDir, HISTORY_FILE).catch(() => null));
  }

  /** After every pass: follow config changes, refresh metrics. */
  async afterPass(): Promise<void> {
    const cfg = this.agent.config;
    const interval = cfg?.usageIntervalSeconds ?? 30;
    // A pass (a push, a repair): traffic may follow, so the next sample reads the counters.
    this.listAgain = true;
    if (interval !== this.intervalSeconds) {
      this.intervalSeconds = interval;
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
    this.timer = setTimeout(() => void this.sample().finally(() => this.schedule()), this.intervalSeconds * 1000);
    this.timer.unref();
  }

  /**
   * One usage sample: the flows to stale addresses (the history), and the
   * per-mapping counters. Reading the counters lists the whole map (0.2 s of
   * CPU at 10k mappings, 2 s at 100k), so it is done only when something can
   * have moved them: flows to stale addresses now, counters that moved at the
   * last reading, a pass since, or IDLE_SAMPLE_MAX_S without a reading. A
   * packet to a stale address makes a conntrack entry (NAT needs one), which
   * outlives the gap between samples (30 s or more), so an idle guest costs
   * one conntrack dump per sample.
   */
  async sample(): Promise<void> {
    if (!this.agent.holdsState || this.sampling) return;
    this.sampling = true;
    try {
      const flows = await this.recordHistory();
      const due = flows === null || flows > 0 || this.listAgain || Date.now() - this.listedAt >= IDLE_SAMPLE_MAX_S * 1000;
      if (!due) return;
      const state = await this.usage.sample();
      this.listedAt = Date.now();
      this.listAgain = Object.values(state.mappings).some((m) => m.lastSeen === state.sampledAt);
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
      await this.writeMetrics();
    } catch (e) {
      this.log.warn({ event: 'usage_sample_failed', reason: (e as Error).message }, 'cannot sample counters');
    } finally {
      this.sampling = false;
    }
  }

  /** Who uses the stale addresses now, added to the history (a failure costs this sample's history only); how many flows there were, null when unknown. */
  private async recordHistory(): Promise<number | null> {
    if (!this.flows) return null;
    const flows = await this.flows().catch((e: Error) => {
      this.log.debug({ event: 'usage_sample_failed', reason: `flows: ${e.message}` }, 'cannot read flows');
      return null;
    });
    if (!flows) return null;
    const keep = this.agent.config?.retireAfterSeconds ?? 7 * 24 * 3600;
    // The guest's own addresses only tell flows apart: with none, not read.
    const local = flows.length ? await readLocalAddresses() : { v4: [], v6: [] };
    const state = this.history.record(flows, keep, new Date(), new Set([...local.v4, ...local.v6]));
    // Written when what it holds changed (a use seen, a hit counted, a record
    // aged out), not every 30 s of an idle guest.
    const content = JSON.stringify([state.addresses, state.hits ?? null]);
    if (content !== this.historyWritten) {
      await writeState(this.stateDir, HISTORY_FILE, state);
      this.historyWritten = content;
    }
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
