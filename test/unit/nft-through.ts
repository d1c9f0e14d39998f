// A client that hands every call to another one: tests extend it to hold a
// transaction back or to script one answer, and leave the rest to the fake.
import type { Chain, NftInfo, NftInterface, Table, TableListing, Transaction } from '../../src/kernel/nft/index.js';

export class NftThrough implements NftInterface {
  constructor(protected readonly inner: NftInterface) {}
  get table(): Table {
    return this.inner.table;
  }
  ready(): Promise<NftInfo> {
    return this.inner.ready();
  }
  run(tx: Transaction): Promise<void> {
    return this.inner.run(tx);
  }
  check(tx: Transaction): Promise<void> {
    return this.inner.check(tx);
  }
  list(): Promise<TableListing | null> {
    return this.inner.list();
  }
  listChains(): Promise<Chain[]> {
    return this.inner.listChains();
  }
}
