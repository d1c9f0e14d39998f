// Which stale addresses are still used. The kernel counts packets and bytes
// per map element; sampling those counters over time tells when each mapping
// was last used, which is how the platform learns which configs still hold
// stale literals and when the bridge can be retired.
import { normalizeIp } from './address.js';
import type { NftInterface } from './nft/index.js';
import { TABLE } from './ruleset.js';
import type { MappingUsage, UsageState } from './state-file.js';

export class UsageTracker {
  private last = new Map<string, MappingUsage>();

  constructor(private readonly nft: NftInterface) {}

  /** Continues from a previous sample (e.g. the one a previous agent process wrote). */
  restore(state: UsageState | null): void {
    if (state) this.last = new Map(Object.entries(state.mappings));
  }

  async sample(now = new Date()): Promise<UsageState> {
    const listing = await this.nft.listTable(TABLE.family, TABLE.name);
    const next = new Map<string, MappingUsage>();
    for (const map of listing?.maps ?? []) {
      for (const el of map.elements) {
        const key = normalizeIp(el.key);
        const packets = el.counter?.packets ?? 0;
        const bytes = el.counter?.bytes ?? 0;
        const prev = this.last.get(key);
        // Counters restart at zero when the element or table is recreated;
        // any traffic since then counts as use.
        const grew = prev ? packets > prev.packets || (packets < prev.packets && packets > 0) : packets > 0;
        next.set(key, { packets, bytes, lastSeen: grew ? now.toISOString() : (prev?.lastSeen ?? null), since: prev?.since ?? now.toISOString() });
      }
    }
    this.last = next;
    return { schema: 1, sampledAt: now.toISOString(), mappings: Object.fromEntries(next) };
  }
}
