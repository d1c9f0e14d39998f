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
import { execFile } from './exec.js';
import type { IpFamily } from '../net/address.js';
import { RouteTable, type RouteEntry } from './route-table.js';
import { prefixKey } from '../net/prefix.js';

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

interface IpRoute {
  dst: string;
  dev?: string;
  gateway?: string;
  type?: string;
  protocol?: string;
  metric?: number;
  from?: string;
  nexthops?: unknown[];
}

/** The rules every Linux system starts with; anything else is policy routing. */
const DEFAULT_RULES = new Set(['0 local', '32766 main', '32767 default']);

export class IpRoutes implements Routes {
  constructor(private readonly binary = 'ip') {}

  async list(): Promise<RouteSpec[]> {
    const out: RouteSpec[] = [];
    const runs = await Promise.all(
      ([4, 6] as const).map((family) =>
        execFile(this.binary, ['-j', `-${family}`, 'route', 'show', 'table', 'main', 'proto', String(ROUTE_PROTO)]),
      ),
    );
    for (const [i, family] of ([4, 6] as const).entries()) {
      const res = runs[i]!;
      if (res.code !== 0) throw new Error(`ip route show failed: ${res.stderr.trim()}`);
      for (const r of parseJsonLines(res.stdout)) {
        const [dst, len] = r.dst.split('/') as [string, string | undefined];
        const length = len === undefined || Number(len) === (family === 6 ? 128 : 32) ? undefined : Number(len);
        out.push({
          family,
          dst,
          ...(length === undefined ? {} : { length }),
          dev: r.dev ?? '',
          ...(r.gateway ? { gateway: r.gateway } : {}),
        });
      }
    }
    return out;
  }

  async lookup(targets: { family: IpFamily; address: string }[]) {
    const found = new Map<string, { dev: string; gateway?: string }>();
    for (const family of [4, 6] as const) {
      const addrs = targets.filter((t) => t.family === family).map((t) => t.address);
      if (addrs.length === 0) continue;
      // One process for all lookups; -force keeps going past unreachable ones,
      // which simply print nothing.
      const res = await execFile(this.binary, ['-j', `-${family}`, '-force', '-batch', '-'], {
        input: addrs.map((a) => `route get ${a}\n`).join(''),
      });
      for (const r of parseJsonLines(res.stdout)) {
        if (r.type && r.type !== 'unicast') continue; // local, unreachable, blackhole: nothing to follow
        if (!r.dev) continue;
        found.set(r.dst, { dev: r.dev, ...(r.gateway ? { gateway: r.gateway } : {}) });
      }
    }
    return found;
  }

  async snapshot(): Promise<RouteTable | null> {
    const entries: RouteEntry[] = [];
    // The four listings at once (rules and main table, per family): they are independent reads.
    const show = (family: 4 | 6, what: string[]) => execFile(this.binary, ['-j', `-${family}`, ...what]);
    const runs = await Promise.all(
      ([4, 6] as const).flatMap((family) => [show(family, ['rule', 'show']), show(family, ['route', 'show', 'table', 'main'])]),
    );
    for (const [i, family] of ([4, 6] as const).entries()) {
      const rules = runs[2 * i]!;
      if (rules.code !== 0) return null;
      const custom = (JSON.parse(rules.stdout || '[]') as { priority: number; table?: string; src?: string; [k: string]: unknown }[]).some(
        (r) =>
          !DEFAULT_RULES.has(`${r.priority} ${r.table}`) ||
          (r.src !== undefined && r.src !== 'all') ||
          Object.keys(r).some((k) => !['priority', 'src', 'table'].includes(k)),
      );
      if (custom) return null;
      const res = runs[2 * i + 1]!;
      if (res.code !== 0) throw new Error(`ip route show failed: ${res.stderr.trim()}`);
      for (const r of parseJsonLines(res.stdout)) {
        if (r.protocol === String(ROUTE_PROTO)) continue;
        // Source-specific and multipath routes are beyond a prefix lookup.
        if (r.from && r.from !== '::/0') return null;
        if (r.nexthops) return null;
        entries.push({
          family,
          dst: r.dst,
          ...(r.dev ? { dev: r.dev } : {}),
          ...(r.gateway ? { gateway: r.gateway } : {}),
          ...(r.type ? { type: r.type } : {}),
          ...(r.metric !== undefined ? { metric: r.metric } : {}),
        });
      }
    }
    return new RouteTable(entries);
  }

  async apply(add: RouteSpec[], remove: RouteSpec[]): Promise<string[]> {
    const errors: string[] = [];
    for (const family of [4, 6] as const) {
      const lines = [
        ...remove.filter((r) => r.family === family).map((r) => `route del ${hostPrefix(r)} proto ${ROUTE_PROTO}`),
        // add, not replace: a route someone else made for the same prefix
        // stays (the kernel answers "File exists"), it is never taken over.
        ...add
          .filter((r) => r.family === family)
          .map((r) => `route add ${hostPrefix(r)}${r.gateway ? ` via ${r.gateway}` : ''} dev ${r.dev} proto ${ROUTE_PROTO}`),
      ];
      if (lines.length === 0) continue;
      const res = await execFile(this.binary, [`-${family}`, '-force', '-batch', '-'], { input: lines.join('\n') + '\n' });
      if (res.code !== 0) errors.push(...res.stderr.trim().split('\n').filter(Boolean));
    }
    return errors;
  }
}

function hostPrefix(r: RouteSpec): string {
  return prefixKey(r.dst, r.length ?? (r.family === 4 ? 32 : 128));
}

/** The key a route is known by: "fdbb::1" or "fdbb::/64". */
export const routeKey = (r: { dst: string; length?: number }) => (r.length === undefined ? r.dst : prefixKey(r.dst, r.length));

/** `ip -j -batch` prints one JSON array per command. */
function parseJsonLines(text: string): IpRoute[] {
  const out: IpRoute[] = [];
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t) continue;
    out.push(...(JSON.parse(t) as IpRoute[]));
  }
  return out;
}
