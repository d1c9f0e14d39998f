// Conntrack hygiene. NAT is decided on a flow's first packet, so a flow to a
// stale address that began before its mapping (a UDP stream, a TCP connect
// being retried) keeps its untranslated conntrack entry and keeps failing.
// After a mapping is added or retargeted, entries whose original destination
// is the stale address and whose reply does not come from the current target
// are removed; the next packet then creates a fresh, translated entry.
//
// The kernel's table is reached through ConntrackTable: ctnetlink in-process
// where the FFI loads, the conntrack program otherwise.
import { execFile, CommandNotFoundError } from './exec.js';
import type { IpFamily } from '../net/address.js';
import { normalizeIp } from '../net/address.js';
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
  /** How the table is reached, for messages ("ctnetlink", "conntrack tool"). */
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

/**
 * Parses `conntrack -L` lines: protocol first, then the original tuple
 * (src=, dst=, sport=, dport=) and the reply tuple, whose src= says who
 * answers.
 */
export function parseConntrackList(text: string, family: IpFamily): FlowEntry[] {
  const out: FlowEntry[] = [];
  for (const line of text.split('\n')) {
    const srcs = [...line.matchAll(/\bsrc=(\S+)/g)].map((m) => m[1]!);
    const dst = /\bdst=(\S+)/.exec(line)?.[1];
    if (!dst || srcs.length < 2) continue;
    const words = line.trim().split(/\s+/);
    const e: FlowEntry = {
      family,
      proto: words[0]!,
      origSrc: normalizeIp(srcs[0]!),
      origDst: normalizeIp(dst),
      replySrc: normalizeIp(srcs[1]!),
    };
    const state = words.find((w, i) => i > 0 && /^[A-Z_]+$/.test(w));
    if (state) e.state = state;
    const sport = /\bsport=(\d+)/.exec(line)?.[1];
    const dport = /\bdport=(\d+)/.exec(line)?.[1];
    if (sport) e.sport = Number(sport);
    if (dport) e.dport = Number(dport);
    out.push(e);
  }
  return out;
}

/**
 * The conntrack program, for images where the FFI cannot load. Each delete
 * is a process that walks the whole table, so this is the slow way: one
 * process per (stale destination, wrong answerer) pair.
 */
export class ConntrackTool implements ConntrackTable {
  readonly via = 'conntrack tool';

  constructor(private readonly binary = 'conntrack') {}

  async list(family: IpFamily, wanted?: (origDst: string) => boolean): Promise<FlowEntry[]> {
    const res = await this.run(['-L', '-f', family === 4 ? 'ipv4' : 'ipv6']);
    if (res.code !== 0) throw new Error(`conntrack -L failed: ${res.stderr.trim()}`);
    const all = parseConntrackList(res.stdout, family);
    return wanted ? all.filter((f) => wanted(f.origDst)) : all;
  }

  async sweep(family: IpFamily, doomed: (f: FlowEntry) => boolean, wanted?: (origDst: string) => boolean): Promise<number> {
    const pairs = new Map<string, FlowEntry>();
    for (const f of (await this.list(family, wanted)).filter(doomed)) pairs.set(`${f.family} ${f.origDst} ${f.replySrc}`, f);
    let removed = 0;
    for (const f of pairs.values()) {
      const res = await this.run(['-D', '-f', f.family === 4 ? 'ipv4' : 'ipv6', '--orig-dst', f.origDst, '--reply-src', f.replySrc]);
      const n = /(\d+) flow entries have been deleted/.exec(res.stderr);
      removed += n ? Number(n[1]) : 0;
    }
    return removed;
  }

  private async run(args: string[]) {
    try {
      return await execFile(this.binary, args);
    } catch (e) {
      if (e instanceof CommandNotFoundError) throw new Error('neither ctnetlink nor the conntrack tool is available', { cause: e });
      throw e;
    }
  }
}
