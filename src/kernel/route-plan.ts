// Host routes for stale addresses: a stale address routed another way than
// its target (say, the old host's subnet on another link) needs a route of
// its own towards the target, or DNAT's output-hook reroute would be sent the
// old way. Each stale address is decided once and remembered; only new,
// retargeted and still undecided ones are looked at again.
import type { DesiredMappings } from '../desired/resolve.js';
import { normalizeIp } from '../net/address.js';
import type { Change, Plan } from './plan.js';
import { sameVia, type Via } from './route-table.js';
import { routeKey, type Routes, type RouteSpec } from './routes.js';

/** The stale addresses a sync asks routes for; unwanted: the route keys no longer mapped (null: every key of the route view not wanted). */
export interface WantedRoutes {
  wanted: Change[];
  unwanted: string[] | null;
}

/** What HostRoutes.plan decided; nothing of it is done until HostRoutes.apply. */
export interface RoutePlan {
  /** The route view the plan was made against. */
  view: Map<string, RouteSpec | null>;
  replace: RouteSpec[];
  remove: RouteSpec[];
  /** Keys of stale addresses no longer mapped. */
  unwanted: string[];
  /** Keys decided to need no route of their own. */
  routeless: string[];
  warnings: string[];
  /** Warnings a retry cannot fix. */
  lasting: number;
  /** Asked for and not decided: asked for again by the next plan of changes. */
  undecided: Change[];
}

const changeRouteKey = (c: { from: string; length?: number }) => routeKey({ dst: c.from, length: c.length });

const viaText = (v: { dev?: string; gateway?: string; type?: string }) =>
  v.type && v.type !== 'unicast' ? v.type : `${v.gateway ? `via ${v.gateway} ` : ''}dev ${v.dev ?? '?'}`;

export class HostRoutes {
  /** Every stale address (or prefix) already decided on, with its route or null when it needs none; null: read the kernel again. */
  private routeView: Map<string, RouteSpec | null> | null = null;
  /** Stale addresses the last route plan could not decide, tried again by every pass. */
  private undecided = new Map<string, Change>();

  constructor(private readonly routes: Routes) {}

  /**
   * Whether every stale address's route is known to be decided: false after
   * a route failure (the view is then read again), when only a whole sync
   * puts everything right; a sync of changes asks about its changes alone.
   */
  get decided(): boolean {
    return this.routeView !== null;
  }

  /**
   * The stale addresses a plan of changes asks routes for: its own, and those
   * still undecided (no route to their target yet, someone else's route in
   * the way), which every pass tries again as a whole sync would.
   */
  forChanges(plan: Plan): WantedRoutes {
    const wanted: Change[] = [...plan.added, ...plan.retargeted];
    const decidedNow = new Set([...wanted, ...plan.removed].map(changeRouteKey));
    for (const [key, c] of this.undecided) if (!decidedNow.has(key)) wanted.push(c);
    return { wanted, unwanted: plan.removed.map(changeRouteKey) };
  }

  /**
   * Decides the host routes for a desired state without changing anything:
   * only undecided and retargeted stale addresses are looked at, so a
   * steady-state change costs only its own addresses.
   */
  async plan(asked: WantedRoutes, plan: Plan): Promise<RoutePlan> {
    // routeView: every stale address (or prefix) already decided on, with its
    // route or null when it needs none.
    if (!this.routeView) {
      this.routeView = new Map((await this.routes.list()).map((r) => [routeKey(r), r]));
    }
    const view = this.routeView;
    const { wanted } = asked;
    const keyOf = changeRouteKey;
    const out: RoutePlan = { view, replace: [], remove: [], unwanted: [], routeless: [], warnings: [], lasting: 0, undecided: [] };
    let unwanted = asked.unwanted;
    if (!unwanted) {
      const wantKeys = new Set(wanted.map(keyOf));
      unwanted = [...view.keys()].filter((key) => !wantKeys.has(key));
    }
    for (const key of unwanted) {
      if (!view.has(key)) continue;
      const r = view.get(key);
      if (r) out.remove.push(r);
      out.unwanted.push(key);
    }

    const retargeted = new Set(plan.retargeted.map(keyOf));
    // Decided once; routes read from the kernel at start count as decided.
    const need = wanted.filter((c) => !view.has(keyOf(c)) || retargeted.has(keyOf(c)));
    if (!need.length) return out;
    const table = await this.routes.snapshot();
    let targetVia: (c: Change) => Via | null;
    let staleVia: (c: Change) => Via | null;
    if (table) {
      targetVia = (c) => table.lookup(c.family, c.to);
      staleVia = (c) => table.lookup(c.family, c.from);
    } else {
      // Policy routing: ask the kernel about each target, and route every
      // stale address explicitly rather than guess how it would go.
      const found = await this.routes.lookup(need.map((c) => ({ family: c.family, address: c.to })));
      const byTarget = new Map([...found].map(([k, v]) => [normalizeIp(k), v]));
      targetVia = (c) => byTarget.get(c.to) ?? null;
      staleVia = () => null;
    }
    for (const c of need) {
      const via = targetVia(c);
      const current = view.get(keyOf(c)) ?? null;
      if (!via) {
        out.undecided.push(c);
        out.warnings.push(`no route to target ${c.to} of ${keyOf(c)}: the stale address cannot be reached until the target is`);
        continue;
      }
      if (sameVia(staleVia(c), via)) {
        // Routed like its target already: no route, and none of ours left behind.
        if (current) out.remove.push(current);
        out.routeless.push(keyOf(c));
        continue;
      }
      const spec: RouteSpec = {
        family: c.family,
        dst: c.from,
        ...(c.length === undefined ? {} : { length: c.length }),
        ...via,
      };
      if (current && current.dev === spec.dev && current.gateway === spec.gateway) continue;
      const foreign = current ? null : table?.exact(c.family, c.from, c.length ?? (c.family === 6 ? 128 : 32));
      if (foreign) {
        // Someone else's route for exactly this prefix: never replaced.
        out.undecided.push(c);
        out.lasting++;
        out.warnings.push(
          `route ${keyOf(c)} is not addrmap's and does not lead towards ${c.to} (${viaText(foreign)}); left as it is, so ${keyOf(c)} may not reach its target`,
        );
        continue;
      }
      // A change of our own route is delete + add (add never replaces).
      if (current) out.remove.push(current);
      out.replace.push(spec);
    }
    return out;
  }

  /** Carries out a route plan (after the nft commit) and records the outcome in the route view. */
  async apply(p: RoutePlan, warnings: string[]) {
    // A view dropped meanwhile (invalidate) is re-read next time; the plan still applies to the kernel.
    const view = this.routeView === p.view ? p.view : null;
    warnings.push(...p.warnings);
    const errors = await this.routes.apply(p.replace, p.remove);
    warnings.push(...errors.map((e) => `route: ${e}`));
    if (view) {
      this.undecided = new Map(p.undecided.map((c) => [changeRouteKey(c), c]));
      for (const key of p.unwanted) view.delete(key);
      for (const r of p.remove) if (view.get(routeKey(r)) === r) view.delete(routeKey(r));
      for (const key of p.routeless) view.set(key, null);
      for (const r of p.replace) view.set(routeKey(r), r);
    }
    if (errors.length) this.routeView = null;
    return { added: p.replace.length, removed: p.remove.length };
  }

  /** Forget what we believe about the routes; the next plan reads them again. */
  forget(): void {
    this.routeView = null;
  }

  /** Removes every route of addrmap's; how many there were. */
  async removeAll(): Promise<number> {
    const ours = await this.routes.list();
    const errors = await this.routes.apply([], ours);
    if (errors.length) throw new Error(`could not remove routes: ${errors.join('; ')}`);
    this.routeView = new Map();
    this.undecided = new Map();
    return ours.length;
  }
}

/** Every stale address and prefix of a desired state: each wants a route decision. */
export function wantedRoutes(desired: DesiredMappings): WantedRoutes {
  const wanted: Change[] = [];
  for (const family of [4, 6] as const) for (const [from, to] of desired[family === 4 ? 'v4' : 'v6']) wanted.push({ family, from, to });
  for (const p of desired.prefixes ?? []) wanted.push({ family: p.family, from: p.from, to: p.to, length: p.length });
  return { wanted, unwanted: null };
}
