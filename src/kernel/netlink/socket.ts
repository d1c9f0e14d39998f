// A netlink socket read without ever blocking the event loop: the socket is
// non-blocking, a dump is read chunk by chunk with a turn of the event loop
// between chunks, so a 100k-entry dump shares the process with pushes and
// drift repair instead of stalling them.
import { setImmediate as nextTurn } from 'node:timers/promises';
import { libc, type Libc } from './ffi.js';

// Linux's numbers for netlink sockets, shared with the subscription (nft-events.ts).
export const AF_NETLINK = 16;
export const SOCK_RAW = 3;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
export const MSG_DONTWAIT = 0x40;
export const EAGAIN = 11;
export const EINTR = 4;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const HEADER = 16;
/** A kernel dump chunk is at most 32 KiB; twice that never truncates one. */
const RECV_BUFFER = 64 * 1024;
const ACK_GROUP = 100;
/** How long the kernel may be silent in the middle of an answer. */
const SILENCE_MS = 5000;

class NetlinkError extends Error {
  constructor(
    message: string,
    readonly errno: number,
  ) {
    super(message);
  }
}

export interface NetlinkMessage {
  type: number;
  flags: number;
  seq: number;
  /** The message after its header; valid only during the callback. */
  payload: Buffer;
}

/** A message: header (length, type, flags, sequence, port 0) and payload. */
export function encodeMessage(type: number, flags: number, seq: number, payload: Buffer): Buffer {
  const m = Buffer.alloc(HEADER + payload.length);
  m.writeUInt32LE(m.length, 0);
  m.writeUInt16LE(type, 4);
  m.writeUInt16LE(flags, 6);
  m.writeUInt32LE(seq >>> 0, 8);
  payload.copy(m, HEADER);
  return m;
}

/** Walks the messages in one datagram. */
export function* messages(buf: Buffer): Generator<NetlinkMessage> {
  let off = 0;
  while (off + HEADER <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < HEADER || off + len > buf.length) throw new NetlinkError(`malformed netlink message (length ${len})`, 0);
    yield {
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      payload: buf.subarray(off + HEADER, off + len),
    };
    off += (len + 3) & ~3;
  }
}

export class NetlinkSocket {
  private seq = Math.floor(Date.now() / 1000) & 0x7fffffff;
  private readonly buf = Buffer.alloc(RECV_BUFFER);
  private closed = false;

  private constructor(
    private readonly c: Libc,
    private readonly fd: number,
  ) {}

  /** A socket for one netlink protocol (NETLINK_NETFILTER, NETLINK_ROUTE...), bound to a port the kernel picks. */
  static open(protocol: number): NetlinkSocket {
    const c = libc();
    if (c instanceof Error) throw c;
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (fd < 0) throw new NetlinkError(`netlink socket: errno ${c.errno()}`, c.errno());
    const addr = Buffer.alloc(12);
    addr.writeUInt16LE(AF_NETLINK, 0);
    if (c.bind(fd, addr, addr.length) < 0) {
      const errno = c.errno();
      c.close(fd);
      throw new NetlinkError(`netlink bind: errno ${errno}`, errno);
    }
    // Acknowledgements without a copy of the request: a burst of them fits
    // the receive buffer.
    const one = Buffer.alloc(4);
    one.writeInt32LE(1);
    c.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, one, 4);
    return new NetlinkSocket(c, fd);
  }

  nextSeq(): number {
    this.seq = (this.seq + 1) & 0x7fffffff;
    return this.seq;
  }

  /**
   * Sends one dump request and yields the answers datagram by datagram until
   * the kernel says done. The kernel waits while the caller works on one (it
   * may send other requests on another socket meanwhile); a message's payload
   * is valid only until the next one is asked for.
   */
  async *dump(request: Buffer): AsyncGenerator<NetlinkMessage[]> {
    const seq = request.readUInt32LE(8);
    this.sendAll(request);
    for (;;) {
      const batch: NetlinkMessage[] = [];
      for (const m of messages(await this.receive())) {
        if (m.seq !== seq) continue; // a late answer to an earlier, abandoned request
        if (m.type === NLMSG_DONE || m.type === NLMSG_ERROR) {
          const err = m.type === NLMSG_ERROR ? -m.payload.readInt32LE(0) : 0;
          if (err !== 0) throw new NetlinkError(`netlink dump: errno ${err}`, err);
          if (batch.length) yield batch;
          return;
        }
        batch.push(m);
      }
      if (batch.length) yield batch;
    }
  }

  /**
   * Sends requests that each ask for an acknowledgement (NLM_F_ACK) and
   * returns each one's errno (0: done), in order. Sent in groups small enough
   * that their acknowledgements always fit the receive buffer (each costs far
   * more buffer than its 36 bytes).
   */
  async acknowledged(requests: Buffer[]): Promise<number[]> {
    const result: number[] = [];
    for (let i = 0; i < requests.length; i += ACK_GROUP) {
      const group = requests.slice(i, i + ACK_GROUP);
      const bySeq = new Map(group.map((r, j) => [r.readUInt32LE(8), j]));
      const errnos = new Array<number>(group.length).fill(-1);
      let pending = group.length;
      this.sendAll(Buffer.concat(group));
      while (pending > 0) {
        for (const m of messages(await this.receive())) {
          const j = bySeq.get(m.seq);
          if (m.type !== NLMSG_ERROR || j === undefined || errnos[j] !== -1) continue;
          errnos[j] = -m.payload.readInt32LE(0);
          pending--;
        }
      }
      result.push(...errnos);
    }
    return result;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.c.close(this.fd);
  }

  private sendAll(buf: Buffer): void {
    const n = this.c.send(this.fd, buf, buf.length, 0);
    if (n !== buf.length) {
      const errno = n < 0 ? this.c.errno() : 0;
      throw new NetlinkError(`netlink send: ${n < 0 ? `errno ${errno}` : `${n} of ${buf.length} bytes`}`, errno);
    }
  }

  /** The next datagram, after a turn of the event loop. */
  private async receive(): Promise<Buffer> {
    const deadline = Date.now() + SILENCE_MS;
    for (;;) {
      await nextTurn();
      const n = this.c.recv(this.fd, this.buf, this.buf.length, MSG_DONTWAIT);
      if (n > 0) return this.buf.subarray(0, n);
      const errno = n < 0 ? this.c.errno() : 0;
      if (n < 0 && errno !== EAGAIN && errno !== EINTR) throw new NetlinkError(`netlink receive: errno ${errno}`, errno);
      if (Date.now() > deadline) throw new NetlinkError(`netlink: no answer from the kernel in ${SILENCE_MS / 1000} s`, 0);
      if (n < 0 && errno === EAGAIN) await new Promise((r) => setTimeout(r, 1));
    }
  }
}
