// The kernel's own notifications of nf_tables changes (NETLINK_NETFILTER,
// group NFNLGRP_NFTABLES), read in-process. A transaction arrives as its
// object events (each nfgenmsg's res_id: the new generation's low 16 bits)
// and then one NEWGEN naming the generation and the thread that committed it
// (NFTA_GEN_PROC_PID: the task id in the initial pid namespace, _NAME: its
// comm). So events are grouped up to their NEWGEN and judged per transaction.
//
// libuv cannot watch a netlink socket, so one poll(2) waits on a libuv worker
// thread (the socket and an eventfd that stop() writes), and the socket is
// drained non-blocking on the event loop: no timers, no wake-ups while idle.
import { setImmediate as nextTurn } from 'node:timers/promises';
import { addressFromBytes } from '../../net/address.js';
import { attributes } from './attributes.js';
import { libc, type Libc } from './ffi.js';
import {
  AF_NETLINK,
  EAGAIN,
  EINTR,
  messages,
  MSG_DONTWAIT,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_RAW,
  SOL_NETLINK,
  type NetlinkMessage,
} from './socket.js';

const NETLINK_NETFILTER = 12;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;
const NETLINK_ADD_MEMBERSHIP = 1;
const NFNLGRP_NFTABLES = 7;
const NFNL_SUBSYS_NFTABLES = 10;
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
const POLLIN = 1;
const ENOBUFS = 105;
/**
 * Asked of the kernel, which doubles it: 8 MiB of kernel memory at most,
 * and only while events wait to be read. Measured on 6.18 with the agent
 * not reading at all: 10k map element events held 3.2 MB, 40k 6.7 MB (170
 * to 325 bytes each), so some 25k-45k element changes fit; a larger commit
 * overflows it and is verified once instead.
 */
const RECEIVE_BUFFER = 4 * 1024 * 1024;
/** Kernel notification datagrams are a few KiB; a full buffer means one was cut. */
const DATAGRAM_BUFFER = 64 * 1024;
/** Datagrams read before the event loop gets a turn. */
const DATAGRAMS_PER_TURN = 256;

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

export interface EventHandlers {
  generation(g: Generation): void;
  /**
   * Events were lost: the receive buffer overflowed (once per burst), or the
   * socket failed and is closed (fatal: nothing more will come from it).
   */
  lost(why: string, fatal: boolean): void;
}

export class NftEventSocket {
  private readonly buf = Buffer.alloc(DATAGRAM_BUFFER);
  /** struct pollfd[2]: the socket, the stop eventfd. */
  private readonly fds = Buffer.alloc(16);
  private readonly assembler: TransactionAssembler;
  private stopping = false;
  private readonly done: Promise<void>;

  private constructor(
    private readonly c: Libc,
    private readonly fd: number,
    private readonly wake: number,
    table: { family: string; name: string },
    private readonly on: EventHandlers,
    /** The receive buffer the kernel granted (bytes). */
    readonly receiveBuffer: number,
  ) {
    this.assembler = new TransactionAssembler(table);
    this.fds.writeInt32LE(fd, 0);
    this.fds.writeInt16LE(POLLIN, 4);
    this.fds.writeInt32LE(wake, 8);
    this.fds.writeInt16LE(POLLIN, 12);
    this.done = this.loop();
  }

  /** Subscribes; throws with the reason when the kernel or the FFI refuses. */
  static open(table: { family: string; name: string }, on: EventHandlers): NftEventSocket {
    const c = libc();
    if (c instanceof Error) throw c;
    const fail = (what: string, fds: number[]) => {
      const errno = c.errno();
      for (const fd of fds) c.close(fd);
      return new Error(`cannot subscribe to nf_tables notifications: ${what}: errno ${errno}`);
    };
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (fd < 0) throw fail('netlink socket', []);
    const addr = Buffer.alloc(12);
    addr.writeUInt16LE(AF_NETLINK, 0);
    if (c.bind(fd, addr, addr.length) < 0) throw fail('bind', [fd]);
    const int = (v: number) => Buffer.from(new Int32Array([v]).buffer);
    if (c.setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, int(NFNLGRP_NFTABLES), 4) < 0) throw fail('join NFNLGRP_NFTABLES', [fd]);
    // FORCE passes rmem_max (root); the plain option is capped by it.
    if (c.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, int(RECEIVE_BUFFER), 4) < 0)
      c.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, int(RECEIVE_BUFFER), 4);
    const got = Buffer.alloc(4);
    c.getsockopt(fd, SOL_SOCKET, SO_RCVBUF, got, int(4));
    const wake = c.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake < 0) throw fail('eventfd', [fd]);
    return new NftEventSocket(c, fd, wake, table, on, got.readInt32LE(0));
  }

  /** Stops reading and closes the socket; resolves once the worker thread is back. */
  async close(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      this.c.write(this.wake, Buffer.from(new BigUint64Array([1n]).buffer), 8);
    }
    await this.done;
  }

  private async loop(): Promise<void> {
    try {
      while (!this.stopping) {
        // A signal for the process may land on the worker thread: EINTR.
        const n = await this.c.pollOnWorker(this.fds, 2, -1);
        if (this.stopping) break;
        if (n < 0 && n !== -EINTR) throw new Error(`poll: errno ${-n}`);
        await this.drain();
      }
    } catch (e) {
      // Nothing more will be heard: say so, once, and stop.
      if (!this.stopping) this.on.lost(`nf_tables notifications stopped: ${(e as Error).message}`, true);
    } finally {
      this.c.close(this.fd);
      this.c.close(this.wake);
    }
  }

  /** Reads until the socket is empty. */
  private async drain(): Promise<void> {
    let lostReported = false;
    const lose = (why: string) => {
      this.assembler.reset();
      if (!lostReported) this.on.lost(why, false);
      lostReported = true;
    };
    for (let i = 1; !this.stopping; i++) {
      const n = this.c.recv(this.fd, this.buf, this.buf.length, MSG_DONTWAIT);
      if (n < 0) {
        const errno = this.c.errno();
        if (errno === EAGAIN) return;
        if (errno === ENOBUFS) lose('the receive buffer overflowed');
        else if (errno !== EINTR) throw new Error(`recv: errno ${errno}`);
        continue;
      }
      if (n >= this.buf.length) lose('a notification did not fit the read buffer');
      else if (!this.handle(this.buf.subarray(0, n))) lose('a malformed notification');
      if (i % DATAGRAMS_PER_TURN === 0) await nextTurn();
    }
  }

  /** False when the datagram does not parse (its events are as good as lost). */
  private handle(datagram: Buffer): boolean {
    const done: Generation[] = [];
    try {
      for (const m of messages(datagram)) {
        const ev = parseNftEvent(m);
        const g = ev && this.assembler.add(ev);
        if (g) done.push(g);
      }
    } catch {
      return false;
    }
    for (const g of done) this.on.generation(g);
    return true;
  }
}
