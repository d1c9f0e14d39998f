// Conntrack hygiene. NAT is decided on a flow's first packet, so a flow to a
// stale address that began before its mapping (a UDP stream, a TCP connect
// being retried) keeps its untranslated conntrack entry and keeps failing.
// After a mapping is added or retargeted, entries whose original destination
// is the stale address and whose reply does not come from the current target
// are removed; the next packet then creates a fresh, translated entry.
import { execFile, CommandNotFoundError } from './exec.js';
import type { IpFamily } from './address.js';
import { addressToBig, bigToAddress, normalizeIp, samePrefix, withPrefix } from './address.js';

export interface StaleTarget {
  family: IpFamily;
  from: string;
  to: string;
  /** For a prefix mapping: from and to are networks of this length. */
  length?: number;
}

export interface ConntrackResult {
  /** Entries removed. */
  removed: number;
  /** Set when cleanup could not run (e.g. the conntrack tool is missing). */
  warning?: string;
}

export interface Conntrack {
  clear(targets: StaleTarget[]): Promise<ConntrackResult>;
}

export interface FlowEntry {
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

/**
 * Parses `conntrack -L` lines: protocol first, then the original tuple
 * (src=, dst=, sport=, dport=) and the reply tuple, whose src= says who
 * answers.
 */
export function parseConntrackList(text: string): FlowEntry[] {
  const out: FlowEntry[] = [];
  for (const line of text.split('\n')) {
    const srcs = [...line.matchAll(/\bsrc=(\S+)/g)].map((m) => m[1]!);
    const dst = /\bdst=(\S+)/.exec(line)?.[1];
    if (!dst || srcs.length < 2) continue;
    const words = line.trim().split(/\s+/);
    const e: FlowEntry = { proto: words[0]!, origSrc: normalizeIp(srcs[0]!), origDst: normalizeIp(dst), replySrc: normalizeIp(srcs[1]!) };
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

export class ConntrackTool implements Conntrack {
  constructor(private readonly binary = 'conntrack') {}

  /** Every tracked flow of one family (read-only). */
  async list(family: IpFamily): Promise<FlowEntry[]> {
    const res = await execFile(this.binary, ['-L', '-f', family === 4 ? 'ipv4' : 'ipv6']);
    if (res.code !== 0) throw new Error(`conntrack -L failed: ${res.stderr.trim()}`);
    return parseConntrackList(res.stdout);
  }

  async clear(targets: StaleTarget[]): Promise<ConntrackResult> {
    if (targets.length === 0) return { removed: 0 };
    let removed = 0;
    try {
      for (const family of [4, 6] as const) {
        const mine = targets.filter((t) => t.family === family);
        if (mine.length === 0) continue;
        const want = new Map(mine.filter((t) => t.length === undefined).map((t) => [t.from, t.to]));
        const nets = mine
          .filter((t) => t.length !== undefined)
          .map((t) => ({ net: addressToBig(family, t.from), to: addressToBig(family, t.to), length: t.length! }))
          .sort((a, b) => b.length - a.length);
        // Where the current mappings send this destination; undefined: not one of the changed ones.
        const targetOf = (dst: string): string | undefined => {
          const single = want.get(dst);
          if (single !== undefined || !nets.length) return single;
          const v = addressToBig(family, dst);
          const n = nets.find((x) => samePrefix(family, x.length, v, x.net));
          return n ? bigToAddress(family, withPrefix(family, n.length, n.to, v)) : undefined;
        };
        const fam = family === 4 ? 'ipv4' : 'ipv6';
        // One dump per family, filtered here: a process per mapping would not
        // scale to a push of 100k mappings.
        const list = await execFile(this.binary, ['-L', '-f', fam]);
        if (list.code !== 0) return { removed, warning: `conntrack -L failed: ${list.stderr.trim()}` };
        const doomed = new Set<string>();
        for (const e of parseConntrackList(list.stdout)) {
          const target = targetOf(e.origDst);
          if (target !== undefined && e.replySrc !== target) doomed.add(`${e.origDst} ${e.replySrc}`);
        }
        for (const pair of doomed) {
          const [dst, replySrc] = pair.split(' ') as [string, string];
          const res = await execFile(this.binary, ['-D', '-f', fam, '--orig-dst', dst, '--reply-src', replySrc]);
          const n = /(\d+) flow entries have been deleted/.exec(res.stderr);
          removed += n ? Number(n[1]) : 0;
        }
      }
    } catch (e) {
      if (e instanceof CommandNotFoundError) {
        return { removed, warning: 'conntrack tool not installed: flows to a stale address started before the push keep failing until they time out' };
      }
      throw e;
    }
    return { removed };
  }
}
