// Makes the kernel match a desired set of mappings: nft transaction first
// (atomic, the part traffic depends on), then host routes, then conntrack
// cleanup. It remembers what it last committed so a steady-state change costs
// only its delta; after any failure, or when it has no memory (start-up), it
// reads the kernel again, and after a failed transaction the next sync
// rebuilds the table whole.
import { Transaction, type NftInterface } from './nft/index.js';
import { TABLE } from './ruleset.js';
import { planSync, viewFromListing, viewOf, type KernelView, type Change, type Plan } from './plan.js';
import type { DesiredMappings } from './resolve.js';
import type { Routes, RouteSpec } from './routes.js';
import { sameVia, type Via } from './route-table.js';
import type { Conntrack } from './conntrack.js';
import { normalizeIp, type IpFamily } from './address.js';

export interface SyncResult {
  kind: Plan['kind'];
  added: number;
  removed: number;
  retargeted: number;
  routesAdded: number;
  routesRemoved: number;
  conntrackRemoved: number;
  /** Problems that did not stop the sync but leave some mapping degraded. */
  warnings: string[];
}

export interface ReconcilerDeps {
  nft: NftInterface;
  routes: Routes;
  conntrack: Conntrack;
}

export class Reconciler {
  private view: KernelView | null = null;
  private forceFull = false;
  private routeView: Map<string, RouteSpec | null> | null = null;

  constructor(private readonly deps: ReconcilerDeps) {}

  async sync(desired: DesiredMappings): Promise<SyncResult> {
    const current = this.view ?? viewFromListing(await this.deps.nft.listTable(TABLE.family, TABLE.name));
    const plan = planSync(current, desired, this.forceFull);
    try {
      await this.deps.nft.run(plan.tx);
    } catch (e) {
      // The kernel is unchanged, but our idea of it may be wrong: re-read and
      // rebuild next time.
      this.view = null;
      this.forceFull = true;
      throw e;
    }
    this.view = viewOf(desired);
    this.forceFull = false;

    // The mappings are live from here on. What follows only helps them work
    // (routes, conntrack); its failures are warnings, never "failed", since
    // "failed" promises that nothing changed.
    const warnings: string[] = [];
    let routes = { added: 0, removed: 0 };
    try {
      routes = await this.syncRoutes(desired, plan, warnings);
    } catch (e) {
      this.routeView = null;
      warnings.push(`routes not updated: ${(e as Error).message}`);
    }
    const changed = [...plan.added, ...plan.retargeted];
    let ct: { removed: number; warning?: string } = { removed: 0 };
    try {
      ct = await this.deps.conntrack.clear(changed.map(({ family, from, to }) => ({ family, from, to })));
    } catch (e) {
      ct = { removed: 0, warning: `conntrack cleanup failed: ${(e as Error).message}` };
    }
    if (ct.warning) warnings.push(ct.warning);
    return {
      kind: plan.kind,
      added: plan.added.length,
      removed: plan.removed.length,
      retargeted: plan.retargeted.length,
      routesAdded: routes.added,
      routesRemoved: routes.removed,
      conntrackRemoved: ct.removed,
      warnings,
    };
  }

  /** Removes addrmap's table and routes; everything else stays as it is. */
  async disable(): Promise<{ removedTable: boolean; routesRemoved: number }> {
    const exists = (await this.deps.nft.listTable(TABLE.family, TABLE.name)) !== null;
    if (exists) {
      await this.deps.nft.run(new Transaction().delete({ table: TABLE }));
    }
    this.view = null;
    const ours = await this.deps.routes.list();
    const errors = await this.deps.routes.apply([], ours);
    if (errors.length) throw new Error(`could not remove routes: ${errors.join('; ')}`);
    this.routeView = new Map();
    return { removedTable: exists, routesRemoved: ours.length };
  }

  /** Forget what we believe about the kernel; the next sync reads it again. */
  invalidate(): void {
    this.view = null;
    this.routeView = null;
  }

  private async syncRoutes(desired: DesiredMappings, plan: Plan, warnings: string[]) {
    // routeView: every stale address already decided on, with its host route
    // or null when it needs none. Only undecided and retargeted ones are
    // looked at, so a steady-state change costs only its own addresses.
    if (!this.routeView) {
      this.routeView = new Map((await this.deps.routes.list()).map((r) => [r.dst, r]));
    }
    const view = this.routeView;
    const wantDst = new Set([...desired.v4.keys(), ...desired.v6.keys()]);
    const remove: RouteSpec[] = [];
    for (const [dst, r] of view) {
      if (wantDst.has(dst)) continue;
      if (r) remove.push(r);
      view.delete(dst);
    }

    const retargeted = new Set(plan.retargeted.map((c) => c.from));
    const need: Change[] = [];
    for (const family of [4, 6] as const) {
      for (const [from, to] of desired[family === 4 ? 'v4' : 'v6']) {
        // Decided once; routes read from the kernel at start count as decided.
        if (!view.has(from) || retargeted.has(from)) need.push({ family, from, to });
      }
    }
    const replace: RouteSpec[] = [];
    if (need.length) {
      const table = await this.deps.routes.snapshot();
      let targetVia: (c: Change) => Via | null;
      let staleVia: (c: Change) => Via | null;
      if (table) {
        targetVia = (c) => table.lookup(c.family, c.to);
        staleVia = (c) => table.lookup(c.family, c.from);
      } else {
        // Policy routing: ask the kernel about each target, and route every
        // stale address explicitly rather than guess how it would go.
        const found = await this.deps.routes.lookup(need.map((c) => ({ family: c.family, address: c.to })));
        const byTarget = new Map([...found].map(([k, v]) => [normalizeIp(k), v]));
        targetVia = (c) => byTarget.get(c.to) ?? null;
        staleVia = () => null;
      }
      for (const c of need) {
        const via = targetVia(c);
        const current = view.get(c.from) ?? null;
        if (!via) {
          warnings.push(`no route to target ${c.to} of ${c.from}: the stale address cannot be reached until the target is`);
          continue;
        }
        if (sameVia(staleVia(c), via)) {
          // Routed like its target already: no host route, and none of ours left behind.
          if (current) remove.push(current);
          view.set(c.from, null);
          continue;
        }
        const spec: RouteSpec = { family: c.family as IpFamily, dst: c.from, ...via };
        if (current && current.dev === spec.dev && current.gateway === spec.gateway) continue;
        replace.push(spec);
      }
    }
    const errors = await this.deps.routes.apply(replace, remove);
    warnings.push(...errors.map((e) => `route: ${e}`));
    for (const r of remove) if (view.get(r.dst) === r) view.delete(r.dst);
    for (const r of replace) view.set(r.dst, r);
    if (errors.length) this.routeView = null;
    return { added: replace.length, removed: remove.length };
  }
}
