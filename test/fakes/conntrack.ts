// In-memory conntrack for unit tests: the table as ctnetlink shows it (held
// to the kernel by test/kernel/conntrack-contract.test.ts), and a cleanup
// that records what it is asked to do.
import type { IpFamily } from '../../src/net/address.js';
import type { ConntrackTable, FlowEntry, StaleTarget } from '../../src/kernel/conntrack.js';
import type { Cleanup } from '../../src/kernel/conntrack-cleanup.js';

/**
 * The kernel's conntrack table as ctnetlink shows it: flows listed per
 * family, filtered by original destination, and deleted one by one exactly
 * as listed (a flow already gone is not an error). `reads` records each read
 * of the table ("list 6", "sweep 4"); `failWith` makes every read fail.
 */
export class FakeConntrackTable implements ConntrackTable {
  readonly via = 'fake';
  flows: FlowEntry[] = [];
  readonly reads: string[] = [];
  failWith: Error | null = null;

  async list(family: IpFamily, wanted?: (origDst: string) => boolean): Promise<FlowEntry[]> {
    this.reads.push(`list ${family}`);
    return this.read(family, wanted).map((f) => ({ ...f }));
  }

  async sweep(family: IpFamily, doomed: (f: FlowEntry) => boolean, wanted?: (origDst: string) => boolean): Promise<number> {
    this.reads.push(`sweep ${family}`);
    const going = new Set(this.read(family, wanted).filter((f) => doomed({ ...f })));
    this.flows = this.flows.filter((f) => !going.has(f));
    return going.size;
  }

  private read(family: IpFamily, wanted?: (origDst: string) => boolean): FlowEntry[] {
    if (this.failWith) throw this.failWith;
    return this.flows.filter((f) => f.family === family && (!wanted || wanted(f.origDst)));
  }
}

/** Records what each pass hands to the conntrack cleanup (which runs on its own, after the pass). */
export class FakeConntrack implements Cleanup {
  readonly calls: StaleTarget[][] = [];

  request(targets: StaleTarget[]): void {
    this.calls.push(targets.map((t) => ({ ...t })));
  }
}
