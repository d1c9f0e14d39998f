// Makes the kernel match a desired set of mappings: nft transaction first
// (atomic, the part traffic depends on), then host routes, then conntrack
// cleanup is queued (it runs behind the pass, never delaying the next one). It remembers what it last committed so a steady-state change costs
// only its delta; after any failure, or when it has no memory (start-up), it
// reads the kernel again, and after a failed transaction the next sync
// rebuilds the table whole.
import { Transaction, type NftInterface } from './nft/index.js';
import { FULL_RULESET, TABLE, type Ruleset } from './ruleset.js';
import { withoutSelfCapture, type Captured, type LocalAddresses } from '../net/local-addresses.js';
import { planChanges, planSync, viewFromListing, viewOf, type KernelView, type Change, type Plan } from './plan.js';
import type { DesiredMappings } from '../desired/resolve.js';
import type { DesiredChange } from '../desired/resolve-delta.js';
import { routeKey, type Routes, type RouteSpec } from './routes.js';
import { sameVia, type Via } from './route-table.js';
import type { Cleanup } from './conntrack-cleanup.js';
import type { SelfAddresses } from './self-addresses.js';
import { normalizeIp } from '../net/address.js';
import { Prefix } from '../net/prefix.js';

export interface SyncResult {
  kind: Plan['kind'];
  added: number;
  removed: number;
  retargeted: number;
  routesAdded: number;
  routesRemoved: number;
  /** Mappings handed to the conntrack cleanup, which runs after the pass. */
  conntrackQueued: number;
  /** Problems that did not stop the sync but leave some mapping degraded. */
  warnings: string[];
  /**
   * A full rebuild made only because the transaction before failed: the
   * kernel already held the desired state. Not drift.
   */
  forcedOnly?: boolean;
  /** How many of the warnings no retry can fix (a mapping of the guest's own address, someone else's route). */
  lasting?: number;
}

export interface ReconcilerDeps {
  nft: NftInterface;
  routes: Routes;
  conntrack: Cleanup;
  /** For the guest's own previous addresses; without it they are not made bindable. */
  selfAddresses?: SelfAddresses;
  /** The table's shape on the running kernel (default: a kernel that accepts everything). */
  ruleset?: Ruleset;
  /** The guest's own addresses (readLocalAddresses); without it none are known. */
  localAddresses?: () => Promise<LocalAddresses>;
}

export class Reconciler {
  private view: KernelView | null = null;
  private forceFull = false;
  private routeView: Map<string, RouteSpec | null> | null = null;
  /** Stale addresses the last route plan could not decide, tried again by every pass. */
  private undecided = new Map<string, Change>();
  /** The guest's addresses as the last sync saw them. */
  private localSeen = '';

  private readonly ruleset: Ruleset;

  constructor(private readonly deps: ReconcilerDeps) {
    this.ruleset = deps.ruleset ?? FULL_RULESET;
  }

  async sync(asked: DesiredMappings): Promise<SyncResult> {
    const rs = this.ruleset;
    // Without the self guard, translating the guest's own traffic would take
    // it from services bound to the address now: such entries wait.
    const selfRefused = !rs.self && !!asked.self?.size;
    const selfOk: DesiredMappings = selfRefused ? { ...asked, self: new Map() } : asked;
    // Never the guest itself: a mapping from one of its own addresses waits
    // (degraded) until the address goes. Its own previous addresses on lo are
    // addrmap's and do not count.
    const local = this.deps.localAddresses ? await this.deps.localAddresses() : { v4: [], v6: [] };
    const { desired, captured } = withoutSelfCapture(selfOk, local, new Set(selfOk.self?.keys() ?? []));
    const current = this.view ?? viewFromListing(await this.deps.nft.list(), rs);
    const plan = planSync(current, desired, this.forceFull, rs);
    const forcedOnly = this.forceFull && planSync(current, desired, false, rs).kind === 'none';
    this.localSeen = localKey(local);
    return this.carryOut(plan, desired, {
      captured,
      selfRefused: selfRefused ? asked.self!.size : 0,
      forcedOnly,
      routes: () => this.wantedRoutes(desired),
      committed: () => {
        this.view = viewOf(desired);
      },
    });
  }

  /**
   * Applies a few changes to the desired state the kernel already holds
   * (`base`, as the last sync left it), at the cost of the changes: no
   * comparison of the whole table. The changes are made to base's maps once
   * the kernel has them, so base is then the new desired state. Null when the
   * kernel's state is not known to be base (a failure, drift, expiry or
   * another sync since, a mapping of the guest's own address held back, the
   * guest's addresses changed): then sync() the whole state.
   */
  async syncChanges(base: DesiredMappings, changes: readonly DesiredChange[]): Promise<SyncResult | null> {
    const view = this.view;
    if (!view || this.forceFull || !view.layoutOk || view.v4 !== base.v4 || view.v6 !== base.v6 || view.prefixes?.length) return null;
    if ((base.self?.size ?? 0) !== (view.self?.size ?? 0)) return null;
    const local = this.deps.localAddresses ? await this.deps.localAddresses() : { v4: [], v6: [] };
    if (localKey(local) !== this.localSeen) return null;
    const added: DesiredMappings = { v4: new Map(), v6: new Map() };
    for (const c of changes) if (c.to !== null) (added[c.family === 4 ? 'v4' : 'v6'] as Map<string, string>).set(c.from, c.to);
    if (withoutSelfCapture(added, local, new Set(base.self?.keys() ?? [])).captured.length) return null;
    const plan = planChanges(view, changes, this.ruleset);
    return this.carryOut(plan, base, {
      captured: [],
      selfRefused: 0,
      forcedOnly: false,
      routes: () => this.changedRoutes(plan),
      committed: () => {
        // The view and the desired state are the same maps: both move now.
        const v4 = base.v4 as Map<string, string>;
        const v6 = base.v6 as Map<string, string>;
        for (const c of plan.removed) (c.family === 4 ? v4 : v6).delete(c.from);
        for (const c of [...plan.retargeted, ...plan.added]) (c.family === 4 ? v4 : v6).set(c.from, c.to);
      },
    });
  }

  /** Everything a sync does once its plan is made: own addresses, the commit, routes, the conntrack cleanup. */
  private async carryOut(plan: Plan, desired: DesiredMappings, o: CarryOut): Promise<SyncResult> {
    const { captured } = o;
    // Own previous addresses exist before traffic is sent to them, and go
    // only after the rules sending traffic there are gone.
    const wantSelf = [...(desired.self?.keys() ?? [])];
    const selfWarnings = await this.addSelf(wantSelf);
    const committing = this.deps.nft.run(plan.tx);
    // Which host routes the new state needs is decided while nft commits (at
    // 100k mappings both take a noticeable time), starting once nft has been
    // started so the commit is never delayed; routes change only after the
    // commit, and not at all if it fails.
    const routePlanning = new Promise((resolve) => setImmediate(resolve))
      .then(() => this.planRoutes(o.routes(), plan))
      .then(
        (p) => ({ p }),
        (e: Error) => ({ e }),
      );
    try {
      await committing;
    } catch (e) {
      await routePlanning;
      // The kernel is unchanged, but our idea of it may be wrong: re-read and
      // rebuild next time.
      this.view = null;
      this.forceFull = true;
      throw e;
    }
    o.committed();
    this.forceFull = false;

    // The mappings are live from here on. What follows only helps them work
    // (routes, conntrack); its failures are warnings, never "failed", since
    // "failed" promises that nothing changed.
    const warnings: string[] = [...selfWarnings];
    let lasting = captured.length + (o.selfRefused ? 1 : 0);
    for (const c of captured)
      warnings.push(
        `mapping ${c.from} -> ${c.to} not installed: ${c.from === c.local ? `${c.local} is an address of this guest` : `it holds ${c.local}, an address of this guest`}`,
      );
    if (o.selfRefused) warnings.push(`'self' entries not applied (${o.selfRefused}): the kernel rejects the self guard rule`);
    if (this.deps.selfAddresses) {
      const errors = await this.deps.selfAddresses.release([...(desired.self?.keys() ?? [])]).catch((e: Error) => [e.message]);
      warnings.push(...errors.map((e) => `own previous address not removed: ${e}`));
    }
    let routes = { added: 0, removed: 0 };
    const planned = await routePlanning;
    try {
      if ('e' in planned) throw planned.e;
      routes = await this.applyRoutes(planned.p, warnings);
      lasting += planned.p.lasting;
    } catch (e) {
      this.routeView = null;
      warnings.push(`routes not updated: ${(e as Error).message}`);
    }
    const changed = [...plan.added, ...plan.retargeted];
    // Flows to an address with its own mapping inside a changed prefix follow
    // that mapping, not the prefix: tell the cleanup where they go.
    const changedPrefixes = changed.filter((c) => c.length !== undefined);
    if (changedPrefixes.length) {
      for (const family of [4, 6] as const) {
        const nets = changedPrefixes.filter((c) => c.family === family).map((c) => new Prefix(family, c.from, c.length!));
        if (!nets.length) continue;
        for (const [from, to] of desired[family === 4 ? 'v4' : 'v6']) {
          if (nets.some((n) => n.contains(from))) changed.push({ family, from, to });
        }
      }
    }
    this.deps.conntrack.request(
      changed.map(({ family, from, to, length }) => ({ family, from, to, ...(length === undefined ? {} : { length }) })),
    );
    return {
      kind: plan.kind,
      added: plan.added.length,
      removed: plan.removed.length,
      retargeted: plan.retargeted.length,
      routesAdded: routes.added,
      routesRemoved: routes.removed,
      conntrackQueued: changed.length,
      warnings,
      ...(o.forcedOnly ? { forcedOnly: true } : {}),
      ...(lasting ? { lasting } : {}),
    };
  }

  /** Removes addrmap's table, routes and own-address entries; everything else stays as it is. */
  async disable(): Promise<{ removedTable: boolean; routesRemoved: number }> {
    const listing = await this.deps.nft.list();
    const exists = listing !== null;
    if (exists) {
      await this.deps.nft.run(new Transaction().delete({ table: TABLE }));
    }
    // Also when the table is gone: addresses added just before a crash are recorded.
    if (this.deps.selfAddresses) {
      const errors = await this.deps.selfAddresses.release([]);
      if (errors.length) throw new Error(`could not remove own previous addresses: ${errors.join('; ')}`);
    }
    this.view = null;
    const ours = await this.deps.routes.list();
    const errors = await this.deps.routes.apply([], ours);
    if (errors.length) throw new Error(`could not remove routes: ${errors.join('; ')}`);
    this.routeView = new Map();
    return { removedTable: exists, routesRemoved: ours.length };
  }

  private async addSelf(addresses: string[]): Promise<string[]> {
    if (!addresses.length || !this.deps.selfAddresses) return [];
    const errors = await this.deps.selfAddresses.add(addresses).catch((e: Error) => [e.message]);
    return errors.map((e) => `own previous address not added: ${e}`);
  }

  /**
   * The stale addresses a plan of changes asks routes for: its own, and those
   * still undecided (no route to their target yet, someone else's route in
   * the way), which every pass tries again as a whole sync would.
   */
  private changedRoutes(plan: Plan): WantedRoutes {
    const wanted: Change[] = [...plan.added, ...plan.retargeted];
    const decidedNow = new Set([...wanted, ...plan.removed].map(changeRouteKey));
    for (const [key, c] of this.undecided) if (!decidedNow.has(key)) wanted.push(c);
    return { wanted, unwanted: plan.removed.map(changeRouteKey) };
  }

  /** Every stale address and prefix of a desired state: each wants a route decision. */
  private wantedRoutes(desired: DesiredMappings): WantedRoutes {
    const wanted: Change[] = [];
    for (const family of [4, 6] as const) for (const [from, to] of desired[family === 4 ? 'v4' : 'v6']) wanted.push({ family, from, to });
    for (const p of desired.prefixes ?? []) wanted.push({ family: p.family, from: p.from, to: p.to, length: p.length });
    return { wanted, unwanted: null };
  }

  /** Forget what we believe about the kernel; the next sync reads it again. */
  invalidate(): void {
    this.view = null;
    this.routeView = null;
  }

  /**
   * Decides the host routes for a desired state without changing anything:
   * only undecided and retargeted stale addresses are looked at, so a
   * steady-state change costs only its own addresses.
   */
  private async planRoutes(asked: WantedRoutes, plan: Plan): Promise<RoutePlan> {
    // routeView: every stale address (or prefix) already decided on, with its
    // route or null when it needs none.
    if (!this.routeView) {
      this.routeView = new Map((await this.deps.routes.list()).map((r) => [routeKey(r), r]));
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
  private async applyRoutes(p: RoutePlan, warnings: string[]) {
    // A view dropped meanwhile (invalidate) is re-read next time; the plan still applies to the kernel.
    const view = this.routeView === p.view ? p.view : null;
    warnings.push(...p.warnings);
    const errors = await this.deps.routes.apply(p.replace, p.remove);
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
}

const viaText = (v: { dev?: string; gateway?: string; type?: string }) =>
  v.type && v.type !== 'unicast' ? v.type : `${v.gateway ? `via ${v.gateway} ` : ''}dev ${v.dev ?? '?'}`;

const changeRouteKey = (c: { from: string; length?: number }) => routeKey({ dst: c.from, length: c.length });

/** The guest's addresses as one comparable value: a change of them can change which mappings are held back. */
const localKey = (l: LocalAddresses) => `${l.v4.join(',')}|${l.v6.join(',')}`;

/** The stale addresses a sync asks routes for; unwanted: the route keys no longer mapped (null: every key of the route view not wanted). */
interface WantedRoutes {
  wanted: Change[];
  unwanted: string[] | null;
}

/** What differs between a whole sync and a sync of changes, for carryOut. */
interface CarryOut {
  /** Mappings held back because they would capture the guest itself. */
  captured: Captured[];
  /** How many 'self' entries the kernel cannot take (no self guard). */
  selfRefused: number;
  forcedOnly: boolean;
  routes: () => WantedRoutes;
  /** Makes the view what the kernel now holds. */
  committed: () => void;
}

/** What planRoutes decided; nothing of it is done until applyRoutes. */
interface RoutePlan {
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
