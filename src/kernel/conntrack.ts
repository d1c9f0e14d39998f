// Conntrack hygiene. NAT is decided on a flow's first packet, so a flow to a
// stale address that began before its mapping (a UDP stream, a TCP connect
// being retried) keeps its untranslated conntrack entry and keeps failing.
// After a mapping is added or retargeted, entries whose original destination
// is the stale address and whose reply does not come from the current target
// are removed; the next packet then creates a fresh, translated entry.
//
// The kernel's table is reached through ConntrackTable: ctnetlink in-process
// (netlink/ctnetlink.ts). There is no fallback to the conntrack program: where
// the FFI cannot load, the cleanup reports why, and mappings apply regardless.
import type { IpFamily } from '../net/address.js';
import { PrefixMoves, type PrefixMove } from '../net/prefix.js';

export interface StaleTarget {
  family: IpFamily;
  from: string;
  to: string;
  /** For a prefix mapping: from and to are networks of this length. */
  length?: number;
}

export interface FlowEntry {
  family: IpFamily;
  proto: string;
  /** TCP state (ESTABLISHED, SYN_SENT, ...); absent for other protocols. */
  state?: string;
  origSrc: string;
  origDst: string;
  sport?: number;
  dport?: number;
  /** Who answers: the stale address itself if untranslated, the target if translated. */
  replySrc: string;
}

/** The kernel's connection tracking table, for one network namespace. */
export interface ConntrackTable {
  /** How the table is reached, for messages ("ctnetlink"). */
  readonly via: string;
  /**
   * The tracked flows of one family whose original destination passes
   * `wanted`: read once, filtered while read, so memory follows the matches
   * and not the table.
   */
  list(family: IpFamily, wanted?: (origDst: string) => boolean): Promise<FlowEntry[]>;
  /**
   * Reads the table once and deletes the flows `doomed` picks (among those
   * `wanted` lets through), each exactly as read; says how many went. A flow
   * gone meanwhile is not an error.
   */
  sweep(family: IpFamily, doomed: (f: FlowEntry) => boolean, wanted?: (origDst: string) => boolean): Promise<number>;
}

/** Where the changed mappings now send an address; undefined for addresses they do not cover. */
export class TargetIndex {
  private readonly single = new Map<string, string>();
  private readonly nets: PrefixMoves;

  constructor(targets: Iterable<StaleTarget>) {
    const nets: PrefixMove[] = [];
    for (const t of targets) {
      if (t.length === undefined) this.single.set(t.from, t.to);
      else nets.push({ family: t.family, from: t.from, to: t.to, length: t.length });
    }
    this.nets = new PrefixMoves(nets);
  }

  get size(): number {
    return this.single.size + this.nets.size;
  }

  targetOf(family: IpFamily, dst: string): string | undefined {
    return this.single.get(dst) ?? this.nets.lookup(family, dst)?.to;
  }
}
