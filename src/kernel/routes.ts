// Host routes for stale addresses. Output-hook DNAT runs after the route
// lookup, so a stale address the guest has no route for fails with
// ENETUNREACH before any rule sees it; and the route the kernel finds for the
// stale address also picks the connection's source address. So a stale
// address whose route differs from its target's (none at all, or another
// device or gateway) gets a /128 (or /32) route that follows the target's.
// The usual case, both routed alike (e.g. by one route for the platform's
// whole range), needs none. The routes carry a protocol number of their own,
// so addrmap finds and removes exactly its own; a route for the same prefix
// that someone else made is left alone.
import type { IpFamily } from '../net/address.js';
import { prefixKey } from '../net/prefix.js';
import { RouteTable, type RouteEntry } from './route-table.js';
import * as rtnl from './netlink/rtnetlink.js';
import { RTM, RT_TABLE_MAIN, RTN_UNICAST, ROUTE_TYPES, routeAddPayload, routeDelPayload } from './netlink/rtnetlink-codec.js';

/** rtnetlink protocol number marking addrmap's routes (unassigned in rt_protos). */
export const ROUTE_PROTO = 173;

export interface RouteSpec {
  family: IpFamily;
  /** The stale address (or a stale prefix's network address). */
  dst: string;
  /** For a stale prefix; absent for a host route. */
  length?: number;
  dev: string;
  gateway?: string;
}

export interface Routes {
  /** addrmap's routes present in the main table. */
  list(): Promise<RouteSpec[]>;
  /** How the kernel would reach each target now; targets it cannot reach are absent. */
  lookup(targets: { family: IpFamily; address: string }[]): Promise<Map<string, { dev: string; gateway?: string }>>;
  /**
   * The main table without addrmap's own routes, for in-process lookups; null
   * when routing rules beyond the defaults make such lookups inexact.
   */
  snapshot(): Promise<RouteTable | null>;
  /**
   * Adds and deletes routes (deletes first). Adding never replaces a route
   * that exists, whoever made it, and deleting removes only addrmap's own;
   * returns one message per route that failed.
   */
  apply(add: RouteSpec[], remove: RouteSpec[]): Promise<string[]>;
}

/** The rules every Linux system starts with (priority and table); anything else is policy routing. */
const DEFAULT_RULES = new Set(['4 0 255', '4 32766 254', '4 32767 253', '6 0 255', '6 32766 254']);
const FAMILIES = [4, 6] as const;

/** The main table over rtnetlink, in-process; where the FFI cannot load, every call fails saying so. */
export class NetlinkRoutes implements Routes {
  async list(): Promise<RouteSpec[]> {
    const [dumped, names] = await Promise.all([rtnl.routes(FAMILIES), rtnl.links()]);
    return dumped
      .filter((r) => r.table === RT_TABLE_MAIN && r.protocol === ROUTE_PROTO)
      .map((r) => ({
        family: r.family,
        dst: r.dst,
        ...(r.dstLen === fullLength(r.family) ? {} : { length: r.dstLen }),
        dev: (r.oif !== undefined && names.name(r.oif)) || '',
        ...(r.gateway ? { gateway: r.gateway } : {}),
      }));
  }

  async lookup(targets: { family: IpFamily; address: string }[]) {
    const found = new Map<string, { dev: string; gateway?: string }>();
    if (!targets.length) return found;
    const [answers, names] = await Promise.all([rtnl.lookups(targets), rtnl.links()]);
    for (const [i, t] of targets.entries()) {
      const r = answers[i];
      // An errno (nothing routes it), or local, unreachable, blackhole: nothing to follow.
      if (typeof r !== 'object' || r.type !== RTN_UNICAST || r.oif === undefined) continue;
      const dev = names.name(r.oif);
      if (dev) found.set(t.address, { dev, ...(r.gateway ? { gateway: r.gateway } : {}) });
    }
    return found;
  }

  async snapshot(): Promise<RouteTable | null> {
    const [rules, dumped, names] = await Promise.all([rtnl.rules(FAMILIES), rtnl.routes(FAMILIES), rtnl.links()]);
    if (rules.some((r) => r.selective || !DEFAULT_RULES.has(`${r.family} ${r.priority} ${r.table}`))) return null;
    const entries: RouteEntry[] = [];
    for (const r of dumped) {
      if (r.table !== RT_TABLE_MAIN || r.protocol === ROUTE_PROTO) continue;
      // Multipath, source-specific and TOS routes are beyond a prefix lookup.
      if (r.complex || r.tos !== 0) return null;
      const dev = r.oif === undefined ? undefined : names.name(r.oif);
      entries.push({
        family: r.family,
        dst: r.dstLen === 0 ? 'default' : r.dstLen === fullLength(r.family) ? r.dst : prefixKey(r.dst, r.dstLen),
        ...(dev ? { dev } : {}),
        ...(r.gateway ? { gateway: r.gateway } : {}),
        ...(r.type === RTN_UNICAST ? {} : { type: ROUTE_TYPES[r.type] ?? String(r.type) }),
        ...(r.priority !== undefined ? { metric: r.priority } : {}),
      });
    }
    return new RouteTable(entries);
  }

  async apply(add: RouteSpec[], remove: RouteSpec[]): Promise<string[]> {
    const names = add.length ? await rtnl.links() : null;
    // In order, deletes first within each family; a failure is reported where it happened.
    const steps: { what: string; change?: rtnl.Change; refused?: string }[] = [];
    for (const family of FAMILIES) {
      for (const r of remove.filter((x) => x.family === family)) {
        const payload = routeDelPayload(family, r.dst, r.length ?? fullLength(family), ROUTE_PROTO);
        steps.push({ what: `route del ${hostPrefix(r)} proto ${ROUTE_PROTO}`, change: { type: RTM.DELROUTE, flags: 0, payload } });
      }
      for (const r of add.filter((x) => x.family === family)) {
        const what = `route add ${hostPrefix(r)}${r.gateway ? ` via ${r.gateway}` : ''} dev ${r.dev}`;
        const oif = names!.index(r.dev);
        if (oif === undefined) {
          steps.push({ what, refused: `Cannot find device "${r.dev}"` });
          continue;
        }
        const dst = { family, dst: r.dst, dstLen: r.length ?? fullLength(family), oif, ...(r.gateway ? { gateway: r.gateway } : {}) };
        // CREATE|EXCL, never REPLACE: a route someone else made for the same
        // prefix and metric stays, and the kernel answers EEXIST.
        steps.push({
          what,
          change: { type: RTM.NEWROUTE, flags: rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL, payload: routeAddPayload(dst, ROUTE_PROTO) },
        });
      }
    }
    const sent = steps.filter((s) => s.change);
    const errnos = await rtnl.change(sent.map((s) => s.change!));
    sent.forEach((s, i) => {
      if (errnos[i]) s.refused = `RTNETLINK answers: ${rtnl.errnoText(errnos[i])}`;
    });
    return steps.filter((s) => s.refused).map((s) => `${s.refused} (${s.what})`);
  }
}

const fullLength = (family: IpFamily) => (family === 6 ? 128 : 32);

function hostPrefix(r: RouteSpec): string {
  return prefixKey(r.dst, r.length ?? fullLength(r.family));
}

/** The key a route is known by: "fdbb::1" or "fdbb::/64". */
export const routeKey = (r: { dst: string; length?: number }) => (r.length === undefined ? r.dst : prefixKey(r.dst, r.length));
