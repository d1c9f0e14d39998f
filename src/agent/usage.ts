// Which stale addresses are still used. The kernel counts packets and bytes
// per map element; sampling those counters over time tells when each mapping
// was last used, which is how the platform learns which configs still hold
// stale literals and when the bridge can be retired.
import { normalizeIp } from '../net/address.js';
import type { NftInterface, TableListing } from '../kernel/nft/index.js';
import { COUNT_SET_NAMES } from '../kernel/ruleset.js';
import { PREFIX_COUNT_CHAIN, PREFIX_DNAT_CHAIN, decodePrefixCount, decodePrefixRule } from '../kernel/prefix-rules.js';
import type { MappingUsage, UsageState } from '../state/state-file.js';
import { prefixKey } from '../net/prefix.js';

export class UsageTracker {
  private last = new Map<string, MappingUsage>();

  constructor(private readonly nft: NftInterface) {}

  /** Continues from a previous sample (e.g. the one a previous agent process wrote). */
  restore(state: UsageState | null): void {
    if (state) this.last = new Map(Object.entries(state.mappings));
  }

  async sample(now = new Date()): Promise<UsageState> {
    const listing = await this.nft.list();
    const next = new Map<string, MappingUsage>();
    for (const [key, { packets, bytes }] of countersOf(listing)) {
      const prev = this.last.get(key);
      // Counters restart at zero when the element or table is recreated;
      // any traffic since then counts as use.
      const grew = prev ? packets > prev.packets || (packets < prev.packets && packets > 0) : packets > 0;
      next.set(key, {
        packets,
        bytes,
        lastSeen: grew ? now.toISOString() : (prev?.lastSeen ?? null),
        since: prev?.since ?? now.toISOString(),
      });
    }
    this.last = next;
    return { schema: 1, sampledAt: now.toISOString(), mappings: Object.fromEntries(next) };
  }
}

/**
 * Packets and bytes per mapping: map elements for single addresses (keyed by
 * address) plus, on kernels that count through a set, that set's element; the
 * two rules of a prefix mapping summed (keyed by "net/len").
 */
export function countersOf(listing: TableListing | null): Map<string, { packets: number; bytes: number }> {
  const out = new Map<string, { packets: number; bytes: number }>();
  for (const map of listing?.maps ?? []) {
    for (const el of map.elements) out.set(normalizeIp(el.key), { packets: el.counter?.packets ?? 0, bytes: el.counter?.bytes ?? 0 });
  }
  for (const set of listing?.sets ?? []) {
    if (set.name !== COUNT_SET_NAMES[4] && set.name !== COUNT_SET_NAMES[6]) continue;
    for (const el of set.elements) {
      const key = normalizeIp(el.key);
      const prev = out.get(key) ?? { packets: 0, bytes: 0 };
      out.set(key, { packets: prev.packets + (el.counter?.packets ?? 0), bytes: prev.bytes + (el.counter?.bytes ?? 0) });
    }
  }
  for (const rule of listing?.rules ?? []) {
    const d = rule.chain === PREFIX_DNAT_CHAIN ? decodePrefixRule(rule) : null;
    const c = rule.chain === PREFIX_COUNT_CHAIN ? decodePrefixCount(rule) : null;
    const key = d ? prefixKey(d.mapping.from, d.mapping.length) : c?.key;
    if (!key) continue;
    const prev = out.get(key) ?? { packets: 0, bytes: 0 };
    out.set(key, { packets: prev.packets + (d?.packets ?? c!.packets), bytes: prev.bytes + (d?.bytes ?? c!.bytes) });
  }
  return out;
}
