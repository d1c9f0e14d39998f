// Chain resolution: the kernel applies DNAT once per flow, so A->B plus B->C
// must be installed as A->C and B->C or traffic to A would land on B, which
// has moved away too.
import type { Mapping } from './mapping-file.js';
import { MappingFileError } from './mapping-file.js';

/** Stale address -> final address, per family. The desired state of the maps. */
export interface DesiredMappings {
  v4: Map<string, string>;
  v6: Map<string, string>;
}

export function resolveChains(mappings: readonly Mapping[]): DesiredMappings {
  const next = new Map<string, Mapping>();
  const index = new Map<string, number>();
  mappings.forEach((m, i) => {
    next.set(m.from, m);
    index.set(m.from, i);
  });

  const resolved = new Map<string, string>();
  for (const start of mappings) {
    if (resolved.has(start.from)) continue;
    // Walk the chain, remembering the path so every address on it is resolved
    // in one pass (linear overall, even for long chains).
    const path: string[] = [];
    const onPath = new Set<string>();
    let cur = start.from;
    let final: string | undefined;
    for (;;) {
      if (resolved.has(cur)) {
        final = resolved.get(cur);
        break;
      }
      if (onPath.has(cur)) {
        const cycle = [...path.slice(path.indexOf(cur)), cur];
        throw new MappingFileError(`mappings[${index.get(cur)}]`, `mappings form a cycle: ${cycle.join(' -> ')}`);
      }
      const m = next.get(cur);
      if (!m) {
        final = cur;
        break;
      }
      path.push(cur);
      onPath.add(cur);
      cur = m.to;
    }
    for (const addr of path) resolved.set(addr, final!);
  }

  const out: DesiredMappings = { v4: new Map(), v6: new Map() };
  for (const m of mappings) (m.family === 4 ? out.v4 : out.v6).set(m.from, resolved.get(m.from)!);
  return out;
}

export function countMappings(d: DesiredMappings): number {
  return d.v4.size + d.v6.size;
}
