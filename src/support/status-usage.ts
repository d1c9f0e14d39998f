// Who still uses each mapping, for status: the agent's usage history (the
// programs seen over the retirement period) joined to the applied mappings;
// a prefix mapping gets a row per address used inside it, with its own
// target, flows now and history.
import { prefixKey, prefixMovesOf } from '../net/prefix.js';
import type { HistoryState, UseRecord } from '../agent/usage-history.js';
import type { Flow } from './flows.js';

export type UsedBy = Omit<UseRecord, 'firstSeen'>;

export interface InsideUse {
  address: string;
  to: string;
  /**
   * Flows to it the agent's samples saw over the retirement period, each
   * counted once (the kernel counts the prefix as a whole, not its
   * addresses); null when the agent keeps no such count (an older history).
   */
  hits: number | null;
  /** Flows to it now; null when flows were not read. */
  flows: number | null;
  lastSeen: string | null;
  usedBy: UsedBy[];
}

const brief = (r: UseRecord): UsedBy => {
  const { firstSeen: _first, ...rest } = r;
  return rest;
};

/** The history of one stale address, most recent first. */
export function usedByOf(history: HistoryState | null, address: string): UsedBy[] {
  return (history?.addresses[address] ?? []).map(brief);
}

/** Addresses used inside each prefix mapping (keyed "net/len"), from the history and the flows now. */
export function insidePrefixes(
  resolved: readonly { from: string; to: string }[],
  history: HistoryState | null,
  flows: readonly Flow[] | null,
): Map<string, InsideUse[]> {
  const prefixed = resolved.filter((m) => m.from.includes('/'));
  const out = new Map<string, InsideUse[]>();
  if (!prefixed.length) return out;
  const moves = prefixMovesOf(prefixed.map((m) => [m.from, m.to] as const));
  const singles = new Set(resolved.filter((m) => !m.from.includes('/')).map((m) => m.from));
  const seen = new Set([...Object.keys(history?.addresses ?? {}), ...Object.keys(history?.hits ?? {}), ...(flows ?? []).map((f) => f.dst)]);
  for (const address of [...seen].sort()) {
    if (singles.has(address)) continue; // its own mapping's row tells its story
    const hit = moves.lookup(address.includes(':') ? 6 : 4, address);
    if (!hit) continue;
    const key = prefixKey(hit.move.from, hit.move.length);
    const usedBy = usedByOf(history, address);
    const hits = history?.hits?.[address];
    const lastSeen =
      [usedBy[0]?.lastSeen, hits?.lastSeen]
        .filter((t) => t !== undefined)
        .sort()
        .at(-1) ?? null;
    out.set(key, [
      ...(out.get(key) ?? []),
      {
        address,
        to: hit.to,
        hits: history?.hits ? (hits?.flows ?? 0) : null,
        flows: flows ? flows.filter((f) => f.dst === address).length : null,
        lastSeen,
        usedBy,
      },
    ]);
  }
  return out;
}
