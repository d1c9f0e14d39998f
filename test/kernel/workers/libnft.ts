// The in-process nftables client inside a lab namespace (run by
// test/support/netns-worker.ts): one LibNft per table, and so the process's one
// libnftables context, as in the agent. Transactions arrive as their
// operations; errors go back with their fields (an NftError's kind, detail).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { LibNft, Transaction, type Operation, type Table } from '../../../src/kernel/nft/index.js';

const clients = new Map<string, LibNft>();

function client(table: Table, library?: string): LibNft {
  const key = `${table.family} ${table.name} ${library ?? ''}`;
  let c = clients.get(key);
  if (!c) clients.set(key, (c = new LibNft(table, library === undefined ? {} : { library })));
  return c;
}

const txOf = (operations: Operation[]) => {
  const tx = new Transaction();
  tx.operations.push(...operations);
  return tx;
};

export const ready = (table: Table, library?: string) => client(table, library).ready();
export const run = (table: Table, operations: Operation[]) => client(table).run(txOf(operations));
export const check = (table: Table, operations: Operation[]) => client(table).check(txOf(operations));
export const list = (table: Table) => client(table).list();
export const listChains = (table: Table) => client(table).listChains();

/** Whether a program of this name is on the worker's PATH. */
export const onPath = (program: string) => (process.env.PATH ?? '').split(':').some((d) => d && existsSync(join(d, program)));

const rssMiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;

/**
 * Runs `what` while a 10 ms timer counts its firings until `what` is done, and reports them with
 * the event loop's longest delay, the time taken and RSS before and after:
 * the measurements are for the report, the timer's firings for the test.
 */
async function ticking<T>(what: () => Promise<T>) {
  const delay = monitorEventLoopDelay({ resolution: 1 });
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  const rssBefore = rssMiB();
  delay.enable();
  const t0 = performance.now();
  const result = await what();
  const during = ticks;
  const ms = performance.now() - t0;
  // One more turn of the loop, so a block at the very end is measured too.
  await new Promise((r) => setTimeout(r, 20));
  delay.disable();
  clearInterval(timer);
  return { result, ticks: during, ms, maxDelayMs: delay.max / 1e6, rssBefore, rssAfter: rssMiB() };
}

/** Adds `count` elements to map `name` in one transaction (keys fd00::/96, targets fdaa::/96), timed. */
export async function addElements(table: Table, name: string, count: number, offset = 0) {
  const tx = new Transaction();
  for (let i = offset; i < offset + count; i++) {
    const low = `${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}`;
    tx.add({ element: { family: table.family, table: table.name, name, key: `fd00::${low}`, value: `fdaa::${low}` } });
  }
  const m = await ticking(() => client(table).run(tx));
  return { ...m, result: null };
}

/** Lists the table, timed; the result is the number of elements per map, not the listing. */
export async function timedList(table: Table) {
  const m = await ticking(() => client(table).list());
  return { ...m, result: Object.fromEntries((m.result?.maps ?? []).map((x) => [x.name, x.elements.length])) };
}

/**
 * Lists the table through a client of another context ('listings', as the
 * agent's counter samples and status queries do) and, once the listing is
 * under way, commits one element through the table's own client: the order
 * in which the two finish.
 */
export async function commitDuringListing(table: Table) {
  const lister = new LibNft(table, { context: 'listings' });
  const order: string[] = [];
  // The listing may hold the new element or not, as the kernel dumped it before or after.
  const listing = lister
    .list()
    .then((l) => order.push(`listing (${(l?.maps.find((m) => m.name === 'dnat6')?.elements.length ?? 0) >= 100_000})`));
  // Past the first turn of the loop: the listing has been handed to libnftables.
  await new Promise((r) => setTimeout(r, 5));
  const tx = new Transaction().add({
    element: { family: table.family, table: table.name, name: 'dnat6', key: 'fd01::1', value: 'fdaa::1' },
  });
  await client(table).run(tx);
  order.push('commit');
  await listing;
  return order;
}
