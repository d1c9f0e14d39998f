// In-memory nftables for unit tests. It enforces the semantics of nft 1.0.6
// and the kernel, as measured and held to them by the contract test
// (test/kernel/nft-contract.test.ts): nft evaluates the whole batch first
// (addresses, datatypes, references to tables, maps and sets) and refuses it
// before the kernel sees any of it; the kernel then applies the operations
// in order to a copy, and the first error discards the whole copy. Errors
// carry the kind LibNft reads from libnftables' answer (NftErrorKind). Rule
// statements are checked and listed the way nft lists them back, for the
// vocabulary addrmap uses (match, counter, verdicts, jump/goto, dnat/snat);
// anything else is refused as invalid. Rule handles increase in creation
// order, as the kernel's do, but their values are the fake's own.
import {
  assertOwnTable,
  NftError,
  type Chain,
  type Element,
  type NftErrorKind,
  type NftInfo,
  type NftInterface,
  type Table,
  type TableFamily,
  type TableListing,
  Transaction,
} from '../../src/kernel/nft/types.js';
import { canonical } from './nft-addresses.js';
import { apply } from './nft-apply.js';
import { FAILED, refusedByKernel } from './nft-errors.js';
import { validateTable } from './nft-rules.js';
import { cloneTables, tableKey, type FakeMap, type FakeTable } from './nft-tables.js';

export class FakeNft implements NftInterface {
  private tables = new Map<string, FakeTable>();
  private nextHandle = 1;
  private failures: { message: string; kind: NftErrorKind }[] = [];
  /** Every transaction that was run, committed or not, for assertions. */
  readonly history: { tx: Transaction; committed: boolean }[] = [];

  /** A fake kernel, seen through a client of `table` (addrmap's own by default). */
  constructor(readonly table: Table = { family: 'inet', name: 'addrmap' }) {}

  /** The next run() fails as the kernel would, with this message (and kind). */
  failNextRun(message = 'Operation not permitted', kind: NftErrorKind = 'other'): void {
    this.failures.push({ message, kind });
  }

  async ready(): Promise<NftInfo> {
    return { version: 'fake' };
  }

  async run(tx: Transaction): Promise<void> {
    assertOwnTable(this.table, tx);
    return this.runAnyTable(tx);
  }

  /** Another tool's transaction, on any table (a firewall beside addrmap's, say). */
  async runAnyTable(tx: Transaction): Promise<void> {
    const injected = this.failures.shift();
    if (injected !== undefined) {
      this.history.push({ tx, committed: false });
      throw new NftError(FAILED, injected.message, injected.kind);
    }
    let result: { tables: Map<string, FakeTable>; handle: number };
    try {
      result = this.evaluate(tx);
    } catch (e) {
      this.history.push({ tx, committed: false });
      throw e;
    }
    this.tables = result.tables;
    this.nextHandle = result.handle;
    this.history.push({ tx, committed: true });
  }

  async check(tx: Transaction): Promise<void> {
    assertOwnTable(this.table, tx);
    this.evaluate(tx);
  }

  async list(): Promise<TableListing | null> {
    return this.listTable(this.table.family, this.table.name);
  }

  async listChains(): Promise<Chain[]> {
    return (await this.list())?.chains ?? [];
  }

  /** What the kernel would hold after the transaction; throws what nft and the kernel would refuse. */
  private evaluate(tx: Transaction): { tables: Map<string, FakeTable>; handle: number } {
    let handle = this.nextHandle;
    // nft's pass: what the kernel would refuse is skipped here. None of its
    // checks looks at elements, so the copy leaves them out.
    const evaluated = cloneTables(this.tables, false);
    let h = handle;
    for (const op of tx.operations) {
      try {
        h = apply(evaluated, op, h);
      } catch (e) {
        if (!refusedByKernel(e)) throw e;
      }
    }
    // The kernel's pass, then the checks it makes at commit.
    const work = cloneTables(this.tables, true);
    for (const op of tx.operations) handle = apply(work, op, handle);
    for (const t of work.values()) validateTable(t);
    return { tables: work, handle };
  }

  /** Any table with its contents, as `nft list table` shows it: for assertions on the whole fake kernel. */
  async listTable(family: TableFamily, name: string): Promise<TableListing | null> {
    const t = this.tables.get(tableKey(family, name));
    if (!t) return null;
    const elementsOf = (m: FakeMap) =>
      [...m.elements].map(([k, e]): Element => {
        const el: Element = { family, table: name, name: m.name, key: k };
        if (e.value !== undefined) el.value = e.value;
        if (m.counter) el.counter = { packets: e.packets, bytes: e.bytes };
        return el;
      });
    const maps: TableListing['maps'] = [];
    const sets: NonNullable<TableListing['sets']> = [];
    for (const m of t.maps.values()) {
      const rest = { family: m.family, table: m.table, name: m.name, type: m.type };
      if (m.map === undefined) sets.push({ ...rest, counter: m.counter, elements: elementsOf(m) });
      else maps.push({ ...rest, map: m.map, counter: m.counter, elements: elementsOf(m) });
    }
    // The kernel lists rules chain by chain, each chain's in order.
    const rules = [...t.chains.keys()].flatMap((c) => t.rules.filter((r) => r.chain === c));
    const listing: TableListing = {
      table: { family, name },
      chains: [...t.chains.values()].map((c) => ({ ...c })),
      rules: rules.map((r) => structuredClone(r)),
      maps,
    };
    if (sets.length) listing.sets = sets;
    return listing;
  }

  /** Simulates traffic through a mapped address (a map's or a set's element), for counter assertions. */
  hit(family: TableFamily, table: string, map: string, address: string, packets = 1, bytes = 60): void {
    const m = this.tables.get(tableKey(family, table))?.maps.get(map);
    const k = m && canonical(m.type, address);
    const e = k ? m.elements.get(k) : undefined;
    if (!e) throw new Error(`no element ${address} in ${map}`);
    e.packets += packets;
    e.bytes += bytes;
  }

  /** Another tool's change, bypassing transactions (e.g. `nft delete table`). */
  externalDeleteTable(family: TableFamily, name: string): void {
    this.tables.delete(tableKey(family, name));
  }
}
