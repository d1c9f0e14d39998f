// Who used each stale address, over the retirement period: the rewrite
// phase's to-do list. Every usage sample looks at the flows to stale
// addresses and records, per address, each program seen (its command, and
// the systemd unit or container its cgroup names) or, for traffic the guest
// forwards, the source address; with when it was first and last seen.
// Records older than retireAfterSeconds are dropped; the whole history is
// bounded, oldest first out, so it stays a small file whatever happens.
//
// Addresses inside prefix mappings have no counter of their own in the kernel
// (one rule counts the whole prefix), so their hits are the flows the samples
// saw to each: a conntrack entry lives from the first packet until well after
// the last (TIME_WAIT: 120 s), longer than the 30 s between samples, so a
// flow is seen by one sample at least, and counted once by its tuple however
// many samples see it.
import type { Flow } from '../support/flows.js';

export const HISTORY_FILE = 'history.json';

/** Programs (or sources) kept per stale address, and in all. */
const PER_ADDRESS = 16;
const TOTAL = 4000;

export interface UseRecord {
  /** The program's command line; absent for forwarded traffic. */
  command?: string;
  /** The pid it last had (a restarted program keeps its record, with its new pid); absent for forwarded traffic. */
  pid?: number;
  /**
   * The socket's owner, for local programs: the user name when /etc/passwd
   * has one, and the uid. A record with these and no command is a program the
   * agent may not see (another user's, under the systemd unit's sandbox).
   */
  user?: string;
  uid?: number;
  /** Its systemd unit ("postgresql.service") when its cgroup names one. */
  unit?: string;
  /** Its container's id (first 12 hex digits) when its cgroup names one. */
  container?: string;
  /** For traffic the guest forwards (no local socket): where it came from. */
  src?: string;
  firstSeen: string;
  lastSeen: string;
}

/** The flows seen to one address inside a prefix mapping, over the retirement period. */
export interface AddressHits {
  /** Distinct flows (each counted once, however many samples saw it). */
  flows: number;
  firstSeen: string;
  lastSeen: string;
}

export interface HistoryState {
  schema: 1;
  updatedAt: string;
  /** Keyed by stale address (addresses inside prefix mappings have their own). */
  addresses: Record<string, UseRecord[]>;
  /** Keyed by address inside a prefix mapping; absent in files written before hits were kept. */
  hits?: Record<string, AddressHits>;
}

export class UsageHistory {
  private addresses = new Map<string, UseRecord[]>();
  private hits = new Map<string, AddressHits>();
  /**
   * The tuples of the prefix flows the last sample saw: a flow still there
   * is not counted again. Not kept across restarts (it would cost the file
   * a line per open flow): a flow open while the agent restarts counts twice.
   */
  private open = new Set<string>();

  restore(state: HistoryState | null): void {
    if (state?.schema !== 1) return;
    this.addresses = new Map(Object.entries(state.addresses));
    this.hits = new Map(Object.entries(state.hits ?? {}));
  }

  /**
   * Adds what the flows of one sample show; drops what is older than
   * keepSeconds. `local`: the guest's own addresses. A flow from one of them
   * without an owning process is a socket already closed (its entry lingers
   * in TIME_WAIT), not forwarded traffic: its program was recorded while it
   * lived, or is gone unnamed. One with an owner uid but no process is a
   * live socket of a program the agent may not see: recorded by its user.
   */
  record(flows: readonly Flow[], keepSeconds: number, now = new Date(), local: ReadonlySet<string> = new Set()): HistoryState {
    const at = now.toISOString();
    const open = new Set<string>();
    for (const f of flows) {
      if (f.prefix !== undefined) this.countHit(f, at, open);
      if (f.command === undefined && f.uid === undefined && local.has(f.src)) continue;
      const who = userOf(f);
      const list = this.addresses.get(f.dst) ?? [];
      const same = list.find((r) => sameUser(r, who));
      if (same) {
        same.lastSeen = at;
        if (f.pid !== undefined) same.pid = f.pid;
      } else list.push({ ...who, ...(f.pid !== undefined ? { pid: f.pid } : {}), firstSeen: at, lastSeen: at });
      this.addresses.set(f.dst, list);
    }
    const cutoff = now.getTime() - keepSeconds * 1000;
    const all: [string, UseRecord][] = [];
    for (const [address, list] of this.addresses) {
      const kept = list
        .filter((r) => Date.parse(r.lastSeen) >= cutoff)
        .sort((a, b) => b.lastSeen.localeCompare(a.lastSeen))
        .slice(0, PER_ADDRESS);
      for (const r of kept) all.push([address, r]);
    }
    all.sort((a, b) => b[1].lastSeen.localeCompare(a[1].lastSeen));
    this.addresses = new Map();
    for (const [address, r] of all.slice(0, TOTAL)) this.addresses.set(address, [...(this.addresses.get(address) ?? []), r]);
    this.open = open;
    this.hits = new Map(
      [...this.hits]
        .filter(([, h]) => Date.parse(h.lastSeen) >= cutoff)
        .sort((a, b) => b[1].lastSeen.localeCompare(a[1].lastSeen))
        .slice(0, TOTAL),
    );
    return { schema: 1, updatedAt: at, addresses: Object.fromEntries(this.addresses), hits: Object.fromEntries(this.hits) };
  }

  /** A flow to an address inside a prefix mapping: a hit unless the previous sample saw it already. */
  private countHit(f: Flow, at: string, open: Set<string>): void {
    // Conntrack's own key: two flows differ in one of these, one flow keeps them all its life.
    const tuple = `${f.proto} ${f.src} ${f.sport ?? ''} ${f.dst} ${f.dport ?? ''}`;
    if (open.has(tuple)) return;
    open.add(tuple);
    const h = this.hits.get(f.dst) ?? { flows: 0, firstSeen: at, lastSeen: at };
    if (!this.open.has(tuple)) h.flows++;
    h.lastSeen = at;
    this.hits.set(f.dst, h);
  }
}

/** Who a flow's user is: a record stands for one program (not one pid) or one forwarding source. */
function userOf(f: Flow): Omit<UseRecord, 'firstSeen' | 'lastSeen' | 'pid'> {
  const owner = f.uid === undefined ? {} : { ...(f.user !== undefined ? { user: f.user } : {}), uid: f.uid };
  if (f.command === undefined) return f.uid === undefined ? { src: f.src } : owner;
  return { command: f.command, ...owner, ...(f.cgroup ? describeCgroup(f.cgroup) : {}) };
}

const sameUser = (r: UseRecord, u: Omit<UseRecord, 'firstSeen' | 'lastSeen' | 'pid'>) =>
  r.command === u.command && r.unit === u.unit && r.container === u.container && r.src === u.src && r.uid === u.uid;

/** The systemd unit and the container a cgroup v2 path names, when it names them. */
export function describeCgroup(path: string): { unit?: string; container?: string } {
  const container = /(?:docker|libpod|cri-containerd|crio)-([0-9a-f]{12})[0-9a-f]*\.scope|\/docker\/([0-9a-f]{12})/.exec(path);
  if (container) return { container: container[1] ?? container[2]! };
  const unit = path
    .split('/')
    .reverse()
    .find((p) => /\.(service|scope)$/.test(p));
  return unit ? { unit } : {};
}
