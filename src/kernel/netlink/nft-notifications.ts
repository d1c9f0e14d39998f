// Reading nf_tables change notifications: one message into an object event
// or a NEWGEN, and a transaction's events grouped up to its NEWGEN (only what
// touched the watched table is kept, as a count and a few samples, so a 100k
// commit costs no memory). The socket that hears them is nft-events.ts.
import { addressFromBytes } from '../../net/address.js';
import { attributes } from './attributes.js';
import type { NetlinkMessage } from './socket.js';

const NFNL_SUBSYS_NFTABLES = 10;

// linux/netfilter/nf_tables.h: message types (DESTROY* are notified as DEL*
// today; read as deletes should a kernel send them) and the attributes read.
const OBJECTS: Record<number, [Verb, ObjectKind, number]> = {
  0: ['new', 'table', 1],
  2: ['delete', 'table', 1],
  3: ['new', 'chain', 3],
  5: ['delete', 'chain', 3],
  6: ['new', 'rule', 2],
  8: ['delete', 'rule', 2],
  9: ['new', 'set', 2],
  11: ['delete', 'set', 2],
  12: ['new', 'element', 2],
  14: ['delete', 'element', 2],
  18: ['new', 'object', 2],
  20: ['delete', 'object', 2],
  22: ['new', 'flowtable', 2],
  24: ['delete', 'flowtable', 2],
  26: ['delete', 'table', 1],
  27: ['delete', 'chain', 3],
  28: ['delete', 'rule', 2],
  29: ['delete', 'set', 2],
  30: ['delete', 'element', 2],
  31: ['delete', 'object', 2],
  32: ['delete', 'flowtable', 2],
};
const NFT_MSG_NEWGEN = 15;
/** Every object's first attribute is its table's name (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, ...). */
const ATTR_TABLE = 1;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_GEN_ID = 1;
const NFTA_GEN_PROC_PID = 2;
const NFTA_GEN_PROC_NAME = 3;
const FAMILIES: Record<number, string> = { 0: 'unspec', 1: 'inet', 2: 'ip', 3: 'arp', 5: 'netdev', 7: 'bridge', 10: 'ip6' };

type Verb = 'new' | 'delete';
type ObjectKind = 'table' | 'chain' | 'rule' | 'set' | 'element' | 'object' | 'flowtable';

export interface ObjectEvent {
  type: 'object';
  verb: Verb;
  object: ObjectKind;
  family: string;
  table: string;
  /** The object's name; a rule's chain, an element's set. */
  name?: string;
  /** An element's key, when it is an address. */
  key?: string;
  /** The generation it belongs to, low 16 bits. */
  generation: number;
}

export interface GenerationEvent {
  type: 'generation';
  id: number;
  pid?: number;
  comm?: string;
}

/** A committed transaction, as far as it touched the watched table. */
export interface Generation {
  id: number;
  pid?: number;
  comm?: string;
  /** How many of its events touched the table. */
  changes: number;
  /** A few of them, to name in a log line: the table's own event first, then the first others. */
  sample: ObjectEvent[];
}

const cString = (b: Buffer | undefined) => (b ? b.toString('utf8', 0, b.includes(0) ? b.indexOf(0) : b.length) : undefined);

/** The first element's key (list -> element -> key -> value), if it is an address. */
function firstKey(list: Buffer | undefined): string | undefined {
  const value = [1, 1, 1].reduce<Buffer | undefined>((b, type) => b && attributes(b).get(type), list);
  return value && (value.length === 4 || value.length === 16) ? addressFromBytes(value) : undefined;
}

/** One notification, or null for what is not an nf_tables change. */
export function parseNftEvent(m: Pick<NetlinkMessage, 'type' | 'payload'>): ObjectEvent | GenerationEvent | null {
  if (m.type >> 8 !== NFNL_SUBSYS_NFTABLES || m.payload.length < 4) return null;
  const msg = m.type & 0xff;
  const attrs = attributes(m.payload.subarray(4));
  if (msg === NFT_MSG_NEWGEN) {
    const id = attrs.get(NFTA_GEN_ID);
    const pid = attrs.get(NFTA_GEN_PROC_PID);
    const comm = cString(attrs.get(NFTA_GEN_PROC_NAME));
    const ev: GenerationEvent = { type: 'generation', id: id?.length === 4 ? id.readUInt32BE(0) : m.payload.readUInt16BE(2) };
    if (pid?.length === 4) ev.pid = pid.readUInt32BE(0);
    if (comm !== undefined) ev.comm = comm;
    return ev;
  }
  const what = OBJECTS[msg];
  const table = cString(attrs.get(ATTR_TABLE));
  if (!what || table === undefined) return null;
  const [verb, object, nameAttr] = what;
  const ev: ObjectEvent = {
    type: 'object',
    verb,
    object,
    family: FAMILIES[m.payload[0]!] ?? String(m.payload[0]),
    table,
    generation: m.payload.readUInt16BE(2),
  };
  const name = cString(attrs.get(nameAttr));
  if (name !== undefined && object !== 'table') ev.name = name;
  const key = object === 'element' ? firstKey(attrs.get(NFTA_SET_ELEM_LIST_ELEMENTS)) : undefined;
  if (key !== undefined) ev.key = key;
  return ev;
}

/**
 * Collects a transaction's events up to its NEWGEN; keeps only a count and a
 * sample of those touching the table, so a 100k-element commit costs no memory.
 */
export class TransactionAssembler {
  private changes = 0;
  private sample: ObjectEvent[] = [];

  constructor(private readonly table: { family: string; name: string }) {}

  /** The transaction that a NEWGEN closes, if it touched the table. */
  add(ev: ObjectEvent | GenerationEvent): Generation | null {
    if (ev.type === 'object') {
      if (ev.table !== this.table.name || ev.family !== this.table.family) return null;
      // The table's own event says the most (a delete table or flush ruleset
      // sends it last, after one per rule, chain and set): it goes first.
      if (ev.object === 'table') this.sample = [ev, ...this.sample.filter((e) => e.object !== 'table')].slice(0, 3);
      else if (this.sample.length < 3) this.sample.push(ev);
      this.changes++;
      return null;
    }
    const { type: _, ...gen } = ev;
    const done = this.changes ? { ...gen, changes: this.changes, sample: this.sample } : null;
    this.reset();
    return done;
  }

  /** After lost events: what was collected may miss its NEWGEN. */
  reset(): void {
    this.changes = 0;
    this.sample = [];
  }
}
