// Small helpers shared by the unit tests. The fakes of the kernel live in
// test/fakes/ (nft, routes, conntrack); the routes and conntrack ones are
// named here too, for the tests that still import them from here.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import type { FakeNft } from '../fakes/nft.js';
import type { TableListing } from '../../src/kernel/nft/index.js';
import type { DesiredMappings } from '../../src/desired/resolve.js';

export { FakeRoutes } from '../fakes/routes.js';
export { FakeConntrack } from '../fakes/conntrack.js';

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
