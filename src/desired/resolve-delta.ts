// Chain resolution by difference: when no mapping a push adds or removes
// takes part in a chain (its stale address is nobody's target, its target is
// nobody's stale address) and none is one of the guest's own previous
// addresses, each resolves to its own target and nothing else moves. The
// desired state then changes by exactly those mappings; anything else is
// resolved whole (resolveChains), which also refuses cycles.
import type { IpFamily } from '../net/address.js';
import type { FileDelta, ParsedBytes } from '../input/reparse.js';

/** One stale address's new final target; null: no longer mapped. */
export interface DesiredChange {
  family: IpFamily;
  from: string;
  to: string | null;
}

/**
 * The changes to the desired state a file delta makes, or null when they
 * cannot be told without resolving whole. `parsed` is the new file's memory
 * (its indexes describe the file after the delta).
 */
export function resolveDelta(
  delta: FileDelta,
  parsed: Pick<ParsedBytes, 'byFrom' | 'targets'>,
  own: ReadonlySet<string>,
): DesiredChange[] | null {
  const changes: DesiredChange[] = [];
  const chained = (from: string) => parsed.targets.has(from) || own.has(from);
  for (const m of delta.removed) {
    if (chained(m.from)) return null;
    changes.push({ family: m.family, from: m.from, to: null });
  }
  for (const m of delta.added) {
    if (chained(m.from) || parsed.byFrom.has(m.to)) return null;
    changes.push({ family: m.family, from: m.from, to: m.to });
  }
  return changes;
}
