// The kernel's own notifications of nf_tables changes (NETLINK_NETFILTER,
// group NFNLGRP_NFTABLES), read in-process; how they are read into
// transactions is nft-notifications.ts. The same wait also hears rtnetlink's
// address notifications, so the guest's address changes need no polling.
//
// libuv cannot watch a netlink socket, so one poll(2) waits on a libuv worker
// thread (the sockets and an eventfd that stop() writes), and the sockets are
// drained non-blocking on the event loop: no timers, no wake-ups while idle.
import { setImmediate as nextTurn } from 'node:timers/promises';
import { parseNftEvent, TransactionAssembler, type Generation } from './nft-notifications.js';
import { libc, type Libc } from './ffi.js';
import { AF_NETLINK, EAGAIN, EINTR, messages, MSG_DONTWAIT, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_RAW, SOL_NETLINK } from './socket.js';

const NETLINK_NETFILTER = 12;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;
const NETLINK_ADD_MEMBERSHIP = 1;
const NFNLGRP_NFTABLES = 7;
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

export interface EventHandlers {
  generation(g: Generation): void;
  /**
   * Events were lost: the receive buffer overflowed (once per burst), or the
   * socket failed and is closed (fatal: nothing more will come from it).
   */
  lost(why: string, fatal: boolean): void;
  /**
   * The guest's addresses changed (an address added or removed on any
   * interface): rtnetlink's own notifications, heard by the same wait, so
   * nobody has to poll for them. Absent: not listened to.
   */
  addresses?(): void;
}

const NETLINK_ROUTE = 0;
/** rtnetlink's legacy multicast groups (bind's nl_groups): address changes of both families. */
const RTMGRP_IPV4_IFADDR = 0x10;
const RTMGRP_IPV6_IFADDR = 0x100;

export class NftEventSocket {
  private readonly buf = Buffer.alloc(DATAGRAM_BUFFER);
  /** struct pollfd[3]: the socket, the stop eventfd, the address socket (-1: none, which poll skips). */
  private readonly fds = Buffer.alloc(24);
  private readonly assembler: TransactionAssembler;
  private stopping = false;
  private readonly done: Promise<void>;

  private constructor(
    private readonly c: Libc,
    private readonly fd: number,
    private readonly wake: number,
    private readonly addressFd: number,
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
    this.fds.writeInt32LE(addressFd, 16);
    this.fds.writeInt16LE(POLLIN, 20);
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
    let addressFd = -1;
    if (on.addresses) {
      addressFd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
      if (addressFd < 0) throw fail('rtnetlink socket', [fd, wake]);
      const groups = Buffer.alloc(12);
      groups.writeUInt16LE(AF_NETLINK, 0);
      groups.writeUInt32LE(RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR, 8);
      if (c.bind(addressFd, groups, groups.length) < 0) throw fail('join the address groups', [fd, wake, addressFd]);
    }
    return new NftEventSocket(c, fd, wake, addressFd, table, on, got.readInt32LE(0));
  }

  /** Whether address changes are heard too (EventHandlers.addresses). */
  get hearsAddresses(): boolean {
    return this.addressFd >= 0;
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
        const n = await this.c.pollOnWorker(this.fds, 3, -1);
        if (this.stopping) break;
        if (n < 0 && n !== -EINTR) throw new Error(`poll: errno ${-n}`);
        await this.drain();
        if (this.addressFd >= 0 && this.fds.readInt16LE(22) !== 0) this.drainAddresses();
      }
    } catch (e) {
      // Nothing more will be heard: say so, once, and stop.
      if (!this.stopping) this.on.lost(`nf_tables notifications stopped: ${(e as Error).message}`, true);
    } finally {
      this.c.close(this.fd);
      this.c.close(this.wake);
      if (this.addressFd >= 0) this.c.close(this.addressFd);
    }
  }

  /** Reads until the socket is empty. */
  private async drain(): Promise<void> {
    let lost: string | null = null;
    const lose = (why: string) => {
      this.assembler.reset();
      lost ??= why;
    };
    for (let i = 1; !this.stopping; i++) {
      const n = this.c.recv(this.fd, this.buf, this.buf.length, MSG_DONTWAIT);
      if (n < 0) {
        const errno = this.c.errno();
        if (errno === EAGAIN) break;
        if (errno === ENOBUFS) lose('the receive buffer overflowed');
        else if (errno !== EINTR) throw new Error(`recv: errno ${errno}`);
        continue;
      }
      // Once events are lost, what is still queued is read but not parsed:
      // the one verification, made when the queue is empty, reads the table
      // as all of it left it (parsing a flood first would delay the repair).
      if (lost === null) {
        if (n >= this.buf.length) lose('a notification did not fit the read buffer');
        else if (!this.handle(this.buf.subarray(0, n))) lose('a malformed notification');
      }
      if (i % DATAGRAMS_PER_TURN === 0) await nextTurn();
    }
    if (lost !== null && !this.stopping) this.on.lost(lost, false);
  }

  /** Empties the address socket; what changed is re-read by the pass it triggers, so the messages themselves are not needed. */
  private drainAddresses(): void {
    let any = false;
    for (;;) {
      const n = this.c.recv(this.addressFd, this.buf, this.buf.length, MSG_DONTWAIT);
      if (n < 0 && this.c.errno() === EAGAIN) break;
      if (n < 0 && this.c.errno() !== ENOBUFS && this.c.errno() !== EINTR) break;
      any = true; // a message, or lost ones (ENOBUFS): either way something changed
    }
    if (any) this.on.addresses?.();
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
