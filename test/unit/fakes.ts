// In-memory stand-ins for the host-side dependencies of the reconciler and the
// agent, plus small helpers shared by the unit tests. The nft side uses the
// project's own FakeNft (src/nft/fake.ts).
import { RouteTable, type RouteEntry } from '../../src/kernel/route-table.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import type { IpFamily } from '../../src/net/address.js';
import type { StaleTarget } from '../../src/kernel/conntrack.js';
import type { Cleanup } from '../../src/kernel/conntrack-cleanup.js';
import type { FakeNft } from '../../src/kernel/nft/fake.js';
import type { TableListing } from '../../src/kernel/nft/index.js';
import type { DesiredMappings } from '../../src/desired/resolve.js';
import { ROUTE_PROTO, type RouteSpec, type Routes } from '../../src/kernel/routes.js';

/** A route in the fake main table; `proto` tells addrmap's routes from everyone else's. */
export interface FakeRoute extends RouteSpec {
  proto: number;
}

type Via = { dev: string; gateway?: string };

/**
 * The host routing table, as far as addrmap sees it through `Routes`:
 * list() shows only routes with addrmap's protocol number, lookup() answers
 * from `reachable`, apply() edits the table and reports per-route errors the
 * way `ip -batch -force` does.
 */
export class FakeRoutes implements Routes {
  /** Every route in the main table, addrmap's and others'. */
  table: FakeRoute[] = [];
  /** How each target address is reached; absent means unreachable. */
  reachable = new Map<string, Via>();
  readonly calls = {
    list: 0,
    lookup: [] as { family: IpFamily; address: string }[][],
    apply: [] as { replace: RouteSpec[]; remove: RouteSpec[] }[],
  };
  /** When set, lookup() throws this (as IpRoutes does when `ip` is missing). */
  throwOnLookup: Error | null = null;
  /**
   * The main table for in-process lookups (snapshot()); null stands for a
   * guest with policy routing, where addrmap asks lookup() and routes every
   * stale address explicitly.
   */
  fib: RouteEntry[] | null = null;

  async snapshot(): Promise<RouteTable | null> {
    return this.fib ? new RouteTable(this.fib) : null;
  }

  async list(): Promise<RouteSpec[]> {
    this.calls.list++;
    return this.table.filter((r) => r.proto === ROUTE_PROTO).map(({ proto: _proto, ...r }) => ({ ...r }));
  }

  async lookup(targets: { family: IpFamily; address: string }[]): Promise<Map<string, Via>> {
    this.calls.lookup.push(targets.map((t) => ({ ...t })));
    if (this.throwOnLookup) throw this.throwOnLookup;
    const out = new Map<string, Via>();
    for (const t of targets) {
      const via = this.reachable.get(t.address);
      if (via) out.set(t.address, { ...via });
    }
    return out;
  }

  async apply(replace: RouteSpec[], remove: RouteSpec[]): Promise<string[]> {
    this.calls.apply.push({ replace: replace.map((r) => ({ ...r })), remove: remove.map((r) => ({ ...r })) });
    const errors: string[] = [];
    for (const r of remove) {
      const i = this.table.findIndex((x) => x.dst === r.dst && x.family === r.family && x.proto === ROUTE_PROTO);
      if (i < 0) errors.push(`RTNETLINK answers: No such process (route del ${r.dst})`);
      else this.table.splice(i, 1);
    }
    for (const r of replace) {
      // "route add" fails on a route for the same prefix, whoever made it.
      if (this.table.some((x) => x.dst === r.dst && x.family === r.family && x.length === r.length))
        errors.push(`RTNETLINK answers: File exists (route add ${r.dst})`);
      else this.table.push({ ...r, proto: ROUTE_PROTO });
    }
    return errors;
  }

  /** addrmap's routes, sorted by destination, for assertions. */
  ours(): RouteSpec[] {
    return this.table
      .filter((r) => r.proto === ROUTE_PROTO)
      .map(({ proto: _proto, ...r }) => r)
      .sort((a, b) => a.dst.localeCompare(b.dst));
  }
}

/** Records every clear() call; removes `perTarget` entries for each target. */
/** Records what each pass hands to the conntrack cleanup (which runs on its own, after the pass). */
export class FakeConntrack implements Cleanup {
  readonly calls: StaleTarget[][] = [];

  request(targets: StaleTarget[]): void {
    this.calls.push(targets.map((t) => ({ ...t })));
  }
}

/** Builds a DesiredMappings from plain objects. */
export function desired(v6: Record<string, string> = {}, v4: Record<string, string> = {}): DesiredMappings {
  return { v4: new Map(Object.entries(v4)), v6: new Map(Object.entries(v6)) };
}

/** Text of a version-1 mapping file. */
export function mappingFileText(generation: number, mappings: [string, string][]): string {
  return JSON.stringify({ version: 1, generation, mappings: mappings.map(([from, to]) => ({ from, to })) });
}

/** A pino logger writing JSON lines into memory; `events` lists the `event` fields in order. */
export function memoryLogger(): { log: Logger; records: Record<string, unknown>[]; events: () => string[] } {
  const records: Record<string, unknown>[] = [];
  const log = pino({ level: 'trace' }, { write: (line: string) => void records.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, records, events: () => records.map((r) => String(r.event)) };
}

/** The mappings of a listing as "key -> value" per map, sorted: a compact view of the kernel state. */
export function elementsOf(listing: TableListing | null): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  // The own-address maps are listed only when they hold something.
  for (const m of listing?.maps ?? [])
    if (m.name.startsWith('dnat') || m.elements.length) out[m.name] = m.elements.map((e) => `${e.key} -> ${e.value}`).sort();
  return out;
}

/** Operation count of every transaction the fake was asked to run. */
export function opCounts(nft: FakeNft): number[] {
  return nft.history.map((h) => h.tx.size);
}

export async function tempDir(prefix = 'addrmap-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
