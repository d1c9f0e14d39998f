// Conntrack cleanup off the path of a push. A pass commits its mappings and
// hands the changed ones here; the cleanup runs behind it, one at a time,
// while the next pushes and drift repairs go ahead. Requests that arrive
// during a cleanup are merged (the newest target for each mapping wins) and
// done in one more round, so the table is read at most once per family per
// round, however many mappings changed and however often.
import type { IpFamily } from '../net/address.js';
import { TargetIndex, type ConntrackTable, type FlowEntry, type StaleTarget } from './conntrack.js';

export interface CleanupOutcome {
  /** Mappings whose stale flows were looked for. */
  targets: number;
  /** Flows deleted. */
  removed: number;
  durationMs: number;
  /** Set when the cleanup could not (fully) run. */
  warning?: string;
}

export interface Cleanup {
  /** Queues the mappings a pass added or retargeted; returns at once. */
  request(targets: StaleTarget[]): void;
}

const key = (t: StaleTarget) => `${t.family} ${t.from}/${t.length ?? ''}`;

export class ConntrackCleanup implements Cleanup {
  private pending = new Map<string, StaleTarget>();
  private running: Promise<void> | null = null;
  /** Counts requests, so a sweep knows when its idea of the newer ones is out of date. */
  private requests = 0;

  constructor(
    private readonly table: () => ConntrackTable,
    private readonly onDone: (o: CleanupOutcome) => void = () => {},
  ) {}

  request(targets: StaleTarget[]): void {
    for (const t of targets) this.pending.set(key(t), t);
    this.requests++;
    this.start();
  }

  private start(): void {
    if (this.running || !this.pending.size) return;
    // A request that lands after the last round looked at the queue but
    // before this promise settles would otherwise wait for the next push.
    this.running = this.drain().finally(() => {
      this.running = null;
      this.start();
    });
  }

  /** Resolves when nothing is queued or running (apply waits for it before it exits). */
  async settled(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    while (this.pending.size) {
      const batch = [...this.pending.values()];
      this.pending = new Map();
      const started = performance.now();
      const outcome: CleanupOutcome = { targets: batch.length, removed: 0, durationMs: 0 };
      try {
        outcome.removed = await this.round(batch);
      } catch (e) {
        outcome.warning = `conntrack cleanup incomplete: ${(e as Error).message}`;
      }
      outcome.durationMs = Math.round(performance.now() - started);
      this.onDone(outcome);
    }
  }

  private async round(batch: StaleTarget[]): Promise<number> {
    const table = this.table();
    let removed = 0;
    for (const family of [4, 6] as IpFamily[]) {
      const targets = new TargetIndex(batch.filter((t) => t.family === family));
      if (targets.size === 0) continue;
      // A push that comes in while the table is read may send some of these
      // flows elsewhere again: its own round decides for them.
      let newer: TargetIndex | null = null;
      let newerOf = -1;
      const doomed = (f: FlowEntry) => {
        const to = targets.targetOf(family, f.origDst);
        if (to === undefined || f.replySrc === to) return false;
        if (this.pending.size === 0) return true;
        if (!newer || newerOf !== this.requests) {
          newer = new TargetIndex([...this.pending.values()].filter((t) => t.family === family));
          newerOf = this.requests;
        }
        return newer.targetOf(family, f.origDst) === undefined;
      };
      removed += await table.sweep(family, doomed, (dst) => targets.targetOf(family, dst) !== undefined);
    }
    return removed;
  }
}
