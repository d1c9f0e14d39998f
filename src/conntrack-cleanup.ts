// Conntrack cleanup off the path of a push. A pass commits its mappings and
// hands the changed ones here; the cleanup runs behind it, one at a time,
// while the next pushes and drift repairs go ahead. Requests that arrive
// during a cleanup are merged (the newest target for each mapping wins) and
// done in one more round, so the table is read at most once per family per
// round, however many mappings changed and however often.
import type { IpFamily } from './address.js';
import { TargetIndex, staleFlows, type ConntrackTable, type StaleTarget } from './conntrack.js';

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

  constructor(
    private readonly table: () => ConntrackTable,
    private readonly onDone: (o: CleanupOutcome) => void = () => {},
  ) {}

  request(targets: StaleTarget[]): void {
    for (const t of targets) this.pending.set(key(t), t);
    if (this.pending.size && !this.running) {
      this.running = this.drain().finally(() => {
        this.running = null;
      });
    }
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
      const listed = await table.list(family, (dst) => targets.targetOf(family, dst) !== undefined);
      // A push that came in while the table was read may send some of these
      // elsewhere again: its own round decides for them.
      const newer = new TargetIndex([...this.pending.values()].filter((t) => t.family === family));
      const doomed = staleFlows(listed, targets).filter((f) => newer.targetOf(family, f.origDst) === undefined);
      removed += await table.remove(doomed);
    }
    return removed;
  }
}
