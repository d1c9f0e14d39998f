// What a contract test compares of a Routes implementation, as plain JSON:
// listings sorted (the kernel's dump order is its own), lookups as entries,
// and a snapshot by what the reconciler asks of it (lookup and exact) at
// given probes, since a RouteTable's insides are not its contract.
import type { IpFamily } from '../../../src/net/address.js';
import type { RouteSpec, Routes } from '../../../src/kernel/routes.js';

export interface Probe {
  family: IpFamily;
  address: string;
  /** For exact(): the prefix length asked about. */
  length: number;
}

const byKey = (r: RouteSpec) => `${r.family} ${r.dst}/${r.length ?? ''}`;

export function observe(routes: Routes) {
  return {
    list: async () => (await routes.list()).sort((a, b) => byKey(a).localeCompare(byKey(b))),
    lookup: async (targets: { family: IpFamily; address: string }[]) =>
      [...(await routes.lookup(targets))].sort(([a], [b]) => a.localeCompare(b)),
    snapshot: async (probes: Probe[]) => {
      const t = await routes.snapshot();
      if (!t) return null;
      return probes.map((p) => {
        const exact = t.exact(p.family, p.address, p.length);
        return {
          ...p,
          via: t.lookup(p.family, p.address),
          exact: exact && { dev: exact.dev, gateway: exact.gateway, type: exact.type, metric: exact.metric },
        };
      });
    },
    apply: (add: RouteSpec[], remove: RouteSpec[]) => routes.apply(add, remove),
  };
}
