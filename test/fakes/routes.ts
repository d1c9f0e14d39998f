// In-memory routing for unit tests, as addrmap sees the kernel's through
// `Routes`; held to the kernel by test/kernel/routes-contract.test.ts.
import { RouteTable, type RouteEntry } from '../../src/kernel/route-table.js';
import { normalizeIp, type IpFamily } from '../../src/net/address.js';
import { Prefix, prefixKey } from '../../src/net/prefix.js';
import { ROUTE_PROTO, type RouteSpec, type Routes } from '../../src/kernel/routes.js';

/** A route in the fake main table; `proto` tells addrmap's routes from everyone else's. */
export interface FakeRoute extends RouteSpec {
  proto: number;
  /** Lower wins among routes for one prefix; absent: what `ip route add` gives (0 for IPv4, 1024 for IPv6). */
  metric?: number;
}

type Via = { dev: string; gateway?: string };

/** A main-table route, parsed once for lookups and comparisons. */
interface Held {
  family: IpFamily;
  prefix: Prefix | null;
  /** The prefix's key; a placeholder destination that is no address keeps its text. */
  key: string;
  metric: number;
  type: string;
  via: Via | null;
}

const fullLength = (family: IpFamily) => (family === 6 ? 128 : 32);
const defaultMetric = (family: IpFamily) => (family === 6 ? 1024 : 0);

function prefixOf(family: IpFamily, dst: string, length: number): Prefix | null {
  try {
    return new Prefix(family, normalizeIp(dst), length);
  } catch {
    return null; // a test's placeholder destination: matches nothing
  }
}

function held(e: FakeRoute | RouteEntry): Held {
  const [addr, len] =
    'proto' in e
      ? [e.dst, e.length ?? fullLength(e.family)]
      : e.dst === 'default'
        ? [e.family === 6 ? '::' : '0.0.0.0', 0]
        : [e.dst.split('/')[0]!, Number(e.dst.split('/')[1] ?? fullLength(e.family))];
  const prefix = prefixOf(e.family, addr, len);
  return {
    family: e.family,
    prefix,
    key: prefix?.key ?? prefixKey(addr, len),
    metric: e.metric ?? defaultMetric(e.family),
    type: ('type' in e && e.type) || 'unicast',
    via: e.dev ? { dev: e.dev, ...(e.gateway ? { gateway: e.gateway } : {}) } : null,
  };
}

/**
 * The host's routing as the kernel keeps it, as far as addrmap sees it
 * through `Routes` (proven against the kernel by
 * test/kernel/routes-contract.test.ts). The main table is `table` (addrmap's
 * routes and others') plus `fib` (others', spelled as RouteEntry); lookups are
 * longest-prefix, lowest metric first; an add fails with EEXIST where a route
 * for the same prefix and metric exists, whoever made it; a delete removes
 * only a route of addrmap's protocol for exactly that prefix. `fib` null
 * stands for a guest with policy routing: snapshot() says lookups are not
 * exact, and `reachable` is the table its rules consult before main.
 */
export class FakeRoutes implements Routes {
  /** Routes of the main table, addrmap's and others'. */
  table: FakeRoute[] = [];
  /** Under policy routing: host routes in a table the rules consult first. */
  reachable = new Map<string, Via>();
  readonly calls = {
    list: 0,
    lookup: [] as { family: IpFamily; address: string }[][],
    apply: [] as { replace: RouteSpec[]; remove: RouteSpec[] }[],
  };
  /** When set, lookup() throws this (as the netlink Routes do where the FFI cannot load). */
  throwOnLookup: Error | null = null;
  /** More of the main table; null: the guest has routing rules beyond the defaults. */
  fib: RouteEntry[] | null = null;

  async snapshot(): Promise<RouteTable | null> {
    if (!this.fib) return null;
    const ours = (r: FakeRoute) => r.proto === ROUTE_PROTO;
    const entries: RouteEntry[] = this.table
      .filter((r) => !ours(r))
      .map((r) => ({
        family: r.family,
        dst: r.length === undefined || r.length === fullLength(r.family) ? r.dst : r.length === 0 ? 'default' : prefixKey(r.dst, r.length),
        dev: r.dev,
        ...(r.gateway ? { gateway: r.gateway } : {}),
        // As the kernel reports it: always for IPv6, for IPv4 only when not 0.
        ...(r.family === 6 || r.metric ? { metric: r.metric ?? defaultMetric(r.family) } : {}),
      }));
    return new RouteTable([...this.fib, ...entries]);
  }

  async list(): Promise<RouteSpec[]> {
    this.calls.list++;
    return this.table.filter((r) => r.proto === ROUTE_PROTO).map(({ proto: _proto, metric: _metric, ...r }) => ({ ...r }));
  }

  async lookup(targets: { family: IpFamily; address: string }[]): Promise<Map<string, Via>> {
    this.calls.lookup.push(targets.map((t) => ({ ...t })));
    if (this.throwOnLookup) throw this.throwOnLookup;
    const out = new Map<string, Via>();
    const main = this.main();
    for (const t of targets) {
      const first = this.fib ? undefined : this.reachable.get(t.address);
      const best = first ? null : longest(main, t.family, t.address);
      const via = first ?? (best && best.type === 'unicast' ? best.via : null);
      if (via) out.set(t.address, { ...via });
    }
    return out;
  }

  async apply(replace: RouteSpec[], remove: RouteSpec[]): Promise<string[]> {
    this.calls.apply.push({ replace: replace.map((r) => ({ ...r })), remove: remove.map((r) => ({ ...r })) });
    const errors: string[] = [];
    const samePrefix = (a: Held, b: Held) => a.family === b.family && a.key === b.key;
    for (const family of [4, 6] as const) {
      for (const r of remove.filter((x) => x.family === family)) {
        const want = held({ ...r, proto: ROUTE_PROTO });
        const i = this.table.findIndex((x) => x.proto === ROUTE_PROTO && samePrefix(held(x), want));
        if (i < 0) errors.push(`RTNETLINK answers: No such process (route del ${spell(r)} proto ${ROUTE_PROTO})`);
        else this.table.splice(i, 1);
      }
      for (const r of replace.filter((x) => x.family === family)) {
        const what = `route add ${spell(r)}${r.gateway ? ` via ${r.gateway}` : ''} dev ${r.dev}`;
        const want = held({ ...r, proto: ROUTE_PROTO });
        if (!this.devices().has(r.dev)) errors.push(`Cannot find device "${r.dev}" (${what})`);
        else if (this.main().some((x) => samePrefix(x, want) && x.metric === want.metric))
          errors.push(`RTNETLINK answers: File exists (${what})`);
        else this.table.push({ ...r, proto: ROUTE_PROTO });
      }
    }
    return errors;
  }

  /** addrmap's routes, sorted by destination, for assertions. */
  ours(): RouteSpec[] {
    return this.table
      .filter((r) => r.proto === ROUTE_PROTO)
      .map(({ proto: _proto, metric: _metric, ...r }) => r)
      .sort((a, b) => a.dst.localeCompare(b.dst));
  }

  private main(): Held[] {
    return [...this.table, ...(this.fib ?? [])].map(held);
  }

  /** The devices the host has: lo, and every one a route names. */
  private devices(): Set<string> {
    const out = new Set(['lo']);
    for (const r of [...this.table, ...(this.fib ?? []), ...this.reachable.values()]) if (r.dev) out.add(r.dev);
    return out;
  }
}

const spell = (r: RouteSpec) => prefixKey(r.dst, r.length ?? fullLength(r.family));

/** The route the kernel would pick: longest prefix, then lowest metric. */
function longest(routes: Held[], family: IpFamily, address: string): Held | null {
  let best: Held | null = null;
  for (const r of routes) {
    if (r.family !== family || !r.prefix?.contains(normalizeIp(address))) continue;
    if (!best || r.prefix.length > best.prefix!.length || (r.prefix.length === best.prefix!.length && r.metric < best.metric)) best = r;
  }
  return best;
}
