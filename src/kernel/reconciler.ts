// Makes the kernel match a desired set of mappings: nft transaction first
// (atomic, the part traffic depends on), then host routes, then conntrack
// cleanup is queued (it runs behind the pass, never delaying the next one). It remembers what it last committed so a steady-state change costs
// only its delta; after any failure, or when it has no memory (start-up), it
// reads the kernel again, and after a failed transaction the next sync
// rebuilds the table whole.
import { Transaction, type NftInterface } from './nft/index.js';
import { FULL_RULESET, TABLE, type Ruleset } from './ruleset.js';
import { withoutSelfCapture, type Captured, type LocalAddresses } from '../net/local-addresses.js';
import { planChanges, planSync, viewFromListing, viewOf, type KernelView, type Plan } from './plan.js';
import type { DesiredMappings } from '../desired/resolve.js';
import type { DesiredChange } from '../desired/resolve-delta.js';
import type { Routes } from './routes.js';
import { HostRoutes, wantedRoutes, type WantedRoutes } from './route-plan.js';
import type { Cleanup } from './conntrack-cleanup.js';
import type { SelfAddresses } from './self-addresses.js';
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
  private readonly hostRoutes: HostRoutes;
  /** The guest's addresses as the last sync saw them. */
  private localSeen = '';

  private readonly ruleset: Ruleset;

  constructor(private readonly deps: ReconcilerDeps) {
    this.ruleset = deps.ruleset ?? FULL_RULESET;
    this.hostRoutes = new HostRoutes(deps.routes);
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
      routes: () => wantedRoutes(desired),
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
   * guest's addresses changed, a route that failed): then sync() the whole
   * state.
   */
  async syncChanges(base: DesiredMappings, changes: readonly DesiredChange[]): Promise<SyncResult | null> {
    const view = this.view;
    if (!view || this.forceFull || !view.layoutOk || view.v4 !== base.v4 || view.v6 !== base.v6 || view.prefixes?.length) return null;
    // After a route failure only a whole sync looks at every stale address's route again.
    if (!this.hostRoutes.decided) return null;
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
      routes: () => this.hostRoutes.forChanges(plan),
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
      .then(() => this.hostRoutes.plan(o.routes(), plan))
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
      routes = await this.hostRoutes.apply(planned.p, warnings);
      lasting += planned.p.lasting;
    } catch (e) {
      this.hostRoutes.forget();
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
    // The table is gone whatever fails next: no sync may plan against it.
    this.view = null;
    // Also when the table is gone: addresses added just before a crash are recorded.
    if (this.deps.selfAddresses) {
      const errors = await this.deps.selfAddresses.release([]);
      if (errors.length) throw new Error(`could not remove own previous addresses: ${errors.join('; ')}`);
    }
    return { removedTable: exists, routesRemoved: await this.hostRoutes.removeAll() };
  }

  private async addSelf(addresses: string[]): Promise<string[]> {
    if (!addresses.length || !this.deps.selfAddresses) return [];
    const errors = await this.deps.selfAddresses.add(addresses).catch((e: Error) => [e.message]);
    return errors.map((e) => `own previous address not added: ${e}`);
  }

  /** Forget what we believe about the kernel; the next sync reads it again. */
  invalidate(): void {
    this.view = null;
    this.hostRoutes.forget();
  }
}

/** The guest's addresses as one comparable value: a change of them can change which mappings are held back. */
const localKey = (l: LocalAddresses) => `${[...l.v4].sort().join(',')}|${[...l.v6].sort().join(',')}`;

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
