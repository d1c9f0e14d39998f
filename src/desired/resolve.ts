// Chain resolution: the kernel applies DNAT once per flow, so A->B plus B->C
// must be installed as A->C and B->C or traffic to A would land on B, which
// has moved away too. Prefix mappings (a host evacuated wholesale) take part:
// an address inside a mapped prefix moves with it, a single-address mapping
// is more specific than any prefix (longest match), and a prefix whose target
// was itself evacuated resolves to the final prefix.
import { addressToBig, bigToAddress, type IpFamily } from '../net/address.js';
import { Prefix } from '../net/prefix.js';
import type { Mapping } from '../input/mapping-file.js';
import { MappingFileError } from '../input/mapping-file.js';

export interface PrefixMapping {
  family: IpFamily;
  /** Network addresses, canonical; both of `length` bits. */
  from: string;
  to: string;
  length: number;
}

/** The desired state of the kernel: single addresses per family, and prefixes (longest first). */
export interface DesiredMappings {
  /**
   * Read-only once resolved: the reconciler keeps them as its view of the
   * kernel, and only Reconciler.syncChanges changes them, once the kernel
   * holds the change.
   */
  v4: ReadonlyMap<string, string>;
  v6: ReadonlyMap<string, string>;
  prefixes?: PrefixMapping[];
  /** This guest's own previous IPv6 addresses: previous -> now. */
  self?: Map<string, string>;
}

interface Net {
  m: Mapping;
  from: Prefix;
  to: Prefix;
  length: number;
}

export function resolveChains(mappings: readonly Mapping[], self: readonly { from: string; to: string }[] = []): DesiredMappings {
  // The guest's own previous addresses are local here: connections to them
  // reach this guest's sockets directly, and must not be sent to the new address.
  const own = new Set(self.map((s) => s.from));
  if (own.size) mappings = mappings.filter((m) => m.prefixLength !== undefined || !own.has(m.from));
  const singles = new Map<string, Mapping>();
  const nets: Net[] = [];
  // Where each mapping stands in the file, for error messages; looked up only
  // when one is needed, so the common pass copies nothing per mapping.
  const position = (m: Mapping) => m.index ?? mappings.indexOf(m);
  for (const m of mappings) {
    if (m.prefixLength === undefined) singles.set(m.from, m);
    else
      nets.push({
        m,
        from: new Prefix(m.family, m.from, m.prefixLength),
        to: new Prefix(m.family, m.to, m.prefixLength),
        length: m.prefixLength,
      });
  }
  // Longest first: the first containing prefix is the longest match.
  nets.sort((a, b) => b.length - a.length);
  const entryOf = (m: Mapping) => `mappings[${position(m)}]`;
  const within = (family: IpFamily, value: bigint, n: Net) => n.m.family === family && n.from.contains(value);

  /** One DNAT step for an address: its own mapping, else the longest prefix holding it. */
  const step = (family: IpFamily, addr: string): string | null => {
    const single = singles.get(addr);
    if (single) return single.to;
    if (!nets.length) return null;
    const v = addressToBig(family, addr);
    const n = nets.find((x) => within(family, v, x));
    return n ? n.from.translate(v, n.to) : null;
  };

  const resolved = new Map<string, string>();
  const finalOf = (family: IpFamily, start: string, owner: Mapping): string => {
    const path: string[] = [];
    const onPath = new Set<string>();
    let cur = start;
    let final: string | undefined;
    for (;;) {
      const known = resolved.get(cur);
      if (known !== undefined) {
        final = known;
        break;
      }
      if (onPath.has(cur)) {
        const cycle = [...path.slice(path.indexOf(cur)), cur];
        throw new MappingFileError(entryOf(singles.get(cur) ?? owner), `mappings form a cycle: ${cycle.join(' -> ')}`);
      }
      const next = step(family, cur);
      if (next === null) {
        final = cur;
        break;
      }
      path.push(cur);
      onPath.add(cur);
      cur = next;
    }
    // Every address on the path resolves the same way: one walk serves all.
    for (const a of path) if (singles.has(a)) resolved.set(a, final);
    return final;
  };

  const v4 = new Map<string, string>();
  const v6 = new Map<string, string>();
  const out: DesiredMappings = { v4, v6, prefixes: [], ...(self.length ? { self: new Map(self.map((s) => [s.from, s.to])) } : {}) };
  const put = (family: IpFamily, from: string, to: string) => (family === 4 ? v4 : v6).set(from, to);
  for (const m of singles.values()) {
    // The usual mapping: its target is not itself stale, nothing to follow.
    if (!nets.length && !singles.has(m.to)) put(m.family, m.from, m.to);
    else put(m.family, m.from, finalOf(m.family, m.from, m));
  }

  for (const n of nets) {
    const { family } = n.m;
    // Follow the target prefix while a prefix at least as wide covers it whole.
    let target = n.to.network;
    const seen = new Set<bigint>([n.from.network]);
    const path = [target];
    for (;;) {
      const cover = nets.find((x) => x.length <= n.length && within(family, target, x));
      if (!cover) break;
      target = cover.from.move(target, cover.to);
      if (seen.has(target)) {
        throw new MappingFileError(
          entryOf(n.m),
          `prefix mappings form a cycle: ${[n.from.network, ...path].map((v) => Prefix.of(family, v, n.length).key).join(' -> ')}`,
        );
      }
      seen.add(target);
      path.push(target);
    }
    // A narrower prefix mapping inside a target would split this one; that is
    // not expressible as one prefix rule, so it is refused with what to do.
    for (const t of path) {
      const at = Prefix.of(family, t, n.length);
      const inner = nets.find((x) => x.length > n.length && x.m.family === family && at.contains(x.from.network));
      if (inner) {
        throw new MappingFileError(
          entryOf(n.m),
          `the target of ${n.from.key} contains ${inner.from.key}, mapped by ${entryOf(inner.m)}; map that part of ${n.from.key} with its own prefix mapping`,
        );
      }
    }
    out.prefixes!.push({ family, from: n.m.from, to: bigToAddress(family, target), length: n.length });

    // Single mappings inside the path take precedence for their addresses:
    // the matching address of this prefix goes where they lead.
    for (const t of path) {
      const at = Prefix.of(family, t, n.length);
      for (const s of singles.values()) {
        if (s.family !== family || !at.contains(s.from)) continue;
        const mine = at.translate(s.from, n.from);
        if (singles.has(mine) || (family === 4 ? out.v4 : out.v6).has(mine)) continue;
        put(family, mine, finalOf(family, s.from, s));
      }
    }
  }
  return out;
}

export function countMappings(d: DesiredMappings): number {
  return d.v4.size + d.v6.size + (d.prefixes?.length ?? 0);
}
