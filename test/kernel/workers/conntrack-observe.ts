// What a contract test compares of a ConntrackTable, as plain JSON: listings
// sorted (the kernel's dump order is its own) and sweep counts. The table's
// predicates are functions, which do not cross to a worker; both sides build
// them from the same stale targets, as the cleanup does (TargetIndex), so
// prefix targets filter and pick the flows as they would in the agent.
import type { IpFamily } from '../../../src/net/address.js';
import { TargetIndex, type ConntrackTable, type FlowEntry, type StaleTarget } from '../../../src/kernel/conntrack.js';
import { ConntrackCleanup, type CleanupOutcome } from '../../../src/kernel/conntrack-cleanup.js';

const sorted = (flows: FlowEntry[]) => flows.map((f) => ({ ...f })).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));

const covered = (family: IpFamily, targets: TargetIndex) => (dst: string) => targets.targetOf(family, dst) !== undefined;

export function observe(table: ConntrackTable) {
  return {
    /** The flows of a family; with targets, only those whose destination they cover. */
    list: async (family: IpFamily, targets?: StaleTarget[]) =>
      sorted(await table.list(family, targets && covered(family, new TargetIndex(targets)))),
    /** Deletes the covered flows that do not go where the targets say; how many went. */
    sweep: async (family: IpFamily, targets: StaleTarget[]) => {
      const index = new TargetIndex(targets);
      return table.sweep(family, (f) => index.targetOf(family, f.origDst) !== f.replySrc, covered(family, index));
    },
    /** The agent's cleanup over the table: its outcomes (one per round) without the time each took. */
    clean: async (targets: StaleTarget[]) => {
      const outcomes: CleanupOutcome[] = [];
      const cleanup = new ConntrackCleanup(
        () => table,
        (o) => outcomes.push(o),
      );
      cleanup.request(targets);
      await cleanup.settled();
      return outcomes.map(({ durationMs: _, ...rest }) => rest);
    },
  };
}
