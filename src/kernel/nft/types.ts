// A small typed client for libnftables' JSON API, shaped like
// sigs.k8s.io/knftables: callers build a Transaction of add/delete operations
// on objects, and an Interface runs it as one atomic batch. The object shapes
// are the JSON schema's own (libnftables-json(5)), so what the fake keeps and
// what the real implementation sends are the same data.

export type TableFamily = 'inet' | 'ip' | 'ip6';

interface TableRef {
  family: TableFamily;
  table: string;
}

export interface Table {
  family: TableFamily;
  name: string;
}

export interface Chain extends TableRef {
  name: string;
  /** Base chains only. */
  type?: 'filter' | 'nat' | 'route';
  hook?: 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';
  /** Always numeric: nft 1.0.6 rejects some named priorities. */
  prio?: number;
  policy?: 'accept' | 'drop';
}

export interface Rule extends TableRef {
  chain: string;
  /** libnftables JSON statements, sent and compared verbatim. */
  expr: unknown[];
  comment?: string;
  handle?: number;
}

export type KeyType = 'ipv4_addr' | 'ipv6_addr';

export interface NftMap extends TableRef {
  name: string;
  type: KeyType;
  map: KeyType;
  /** Per-element packet and byte counters. */
  counter?: boolean;
}

/** A set of keys: what a rule looks up when the kernel cannot use a map as a set. */
export interface NftSet extends TableRef {
  name: string;
  type: KeyType;
  /** Per-element packet and byte counters. */
  counter?: boolean;
}

interface Counter {
  packets: number;
  bytes: number;
}

export interface Element extends TableRef {
  /** The map's or set's name. */
  name: string;
  key: string;
  /** Required when adding to a map, absent for a set; ignored when deleting. */
  value?: string;
  /** Only in listings of maps and sets that keep counters. */
  counter?: Counter;
}

export type NftObject = { table: Table } | { chain: Chain } | { rule: Rule } | { map: NftMap } | { set: NftSet } | { element: Element };

export type Verb = 'add' | 'create' | 'delete' | 'flush';

export interface Operation {
  verb: Verb;
  object: NftObject;
}

/** What `list table` returns: everything in one table. */
export interface TableListing {
  table: Table;
  chains: Chain[];
  rules: Rule[];
  maps: (NftMap & { elements: Element[] })[];
  /** Absent when the table holds no set. */
  sets?: (NftSet & { elements: Element[] })[];
}

/** What a client found at start: the nftables it talks to. */
export interface NftInfo {
  /** What the client can truly tell of its version: for libnftables 1.0.6, which has no call for it, the library file's name. */
  version: string;
}

/**
 * addrmap's way into nftables: one client per table, and no way to touch any
 * other. Everything the agent asks of the kernel's ruleset goes through it,
 * start-up checks included, so a fake can stand in for all of it.
 */
export interface NftInterface {
  /** The table every operation must name; run and check refuse any other. */
  readonly table: Table;
  /** Checks that nftables can be used here (present, new enough, speaks JSON); a clear NftError otherwise. */
  ready(): Promise<NftInfo>;
  /** Applies every operation of the transaction, or none of them. */
  run(tx: Transaction): Promise<void>;
  /** Has the kernel validate the transaction without committing it (nft --check). */
  check(tx: Transaction): Promise<void>;
  /** The table with its contents, or null when it does not exist. */
  list(): Promise<TableListing | null>;
  /** The table's chains, without rules or elements: cheap at any map size. Empty when the table does not exist. */
  listChains(): Promise<Chain[]>;
}

/** The table an object belongs to. */
function tableOf(o: NftObject): TableRef {
  if ('table' in o) return { family: o.table.family, table: o.table.name };
  if ('chain' in o) return o.chain;
  if ('rule' in o) return o.rule;
  if ('map' in o) return o.map;
  if ('set' in o) return o.set;
  return o.element;
}

/**
 * Refuses a transaction that names another table than the client's: a bug in
 * the caller, stopped before anything reaches the kernel.
 */
export function assertOwnTable(table: Table, tx: Transaction): void {
  for (const op of tx.operations) {
    const t = tableOf(op.object);
    if (t.family !== table.family || t.table !== table.name)
      throw new NftError(
        'refused',
        `${op.verb} on table ${t.family} ${t.table}: this client works on ${table.family} ${table.name} only`,
        'invalid',
      );
  }
}

/**
 * What went wrong, as nft's errno or complaint tells it: an object that is not
 * there (ENOENT), one that already is (EEXIST), one still in use (EBUSY), a
 * request this nft or kernel refuses whatever the state (a bad address, a
 * datatype mismatch, EINVAL, EOPNOTSUPP), or anything else (EPERM, ENOMEM,
 * libnftables unusable). LibNft decides it from libnftables' answer
 * (nftErrorKind, in one place); the fake from the situation, and the contract
 * test holds the two together.
 */
export type NftErrorKind = 'not-found' | 'exists' | 'busy' | 'invalid' | 'other';

/** Failure of a whole transaction: the kernel state is as it was before. */
export class NftError extends Error {
  constructor(
    message: string,
    readonly detail = '',
    readonly kind: NftErrorKind = 'other',
  ) {
    super(detail ? `${message}: ${detail}` : message);
  }
}

export class Transaction {
  readonly operations: Operation[] = [];

  add(object: NftObject): this {
    return this.push('add', object);
  }
  /** Like add, but fails if the object already exists. */
  create(object: NftObject): this {
    return this.push('create', object);
  }
  /** Fails if the object does not exist. */
  delete(object: NftObject): this {
    return this.push('delete', object);
  }
  /** Empties a table (rules and elements), a map or a set (elements). */
  flush(object: NftObject): this {
    return this.push('flush', object);
  }
  get size(): number {
    return this.operations.length;
  }

  private push(verb: Verb, object: NftObject): this {
    this.operations.push({ verb, object });
    return this;
  }
}
