// The conntrack table over ctnetlink, in-process: one dump per family, read
// in chunks and filtered as it arrives, and deletes by the exact tuple and id
// of each listed flow, so a flow that began since the listing (with the same
// tuple, already translated) is never the one deleted.
import { addressFromBytes, type IpFamily } from '../../net/address.js';
import type { ConntrackTable, FlowEntry } from '../conntrack.js';
import { attributeList, attributes } from './attributes.js';
import { libc } from './ffi.js';
import { NetlinkSocket, encodeMessage, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST } from './socket.js';

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_GET = 1;
const IPCTNL_MSG_CT_DELETE = 2;
const AF = { 4: 2, 6: 10 } as const;
const ENOENT = 2;

// Attribute numbers from linux/netfilter/nfnetlink_conntrack.h.
const CTA_TUPLE_ORIG = 1;
const CTA_TUPLE_REPLY = 2;
const CTA_PROTOINFO = 4;
const CTA_ID = 12;
const CTA_ZONE = 18;
const CTA_TUPLE_IP = 1;
const CTA_TUPLE_PROTO = 2;
const CTA_IP_V4_SRC = 1;
const CTA_IP_V4_DST = 2;
const CTA_IP_V6_SRC = 3;
const CTA_IP_V6_DST = 4;
const CTA_PROTO_NUM = 1;
const CTA_PROTO_SRC_PORT = 2;
const CTA_PROTO_DST_PORT = 3;
const CTA_PROTOINFO_TCP = 1;
const CTA_PROTOINFO_TCP_STATE = 1;

const PROTO_NAMES: Record<number, string> = {
  1: 'icmp',
  6: 'tcp',
  17: 'udp',
  33: 'dccp',
  47: 'gre',
  58: 'icmpv6',
  132: 'sctp',
  136: 'udplite',
};
const TCP_STATES = ['NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2'];

/** The bytes that identify a listed flow to the kernel: its original tuple, id and zone attributes as dumped. */
const identities = new WeakMap<FlowEntry, Buffer>();

/** The nfgenmsg header every ctnetlink message starts with. */
function nfgen(family: IpFamily): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt8(AF[family], 0);
  return b;
}

const ctType = (msg: number) => (NFNL_SUBSYS_CTNETLINK << 8) | msg;

interface Tuple {
  src: string;
  dst: string;
  proto: number;
  sport?: number;
  dport?: number;
}

function parseTuple(buf: Buffer, family: IpFamily): Tuple | null {
  const t = attributes(buf);
  const ip = t.get(CTA_TUPLE_IP);
  const proto = t.get(CTA_TUPLE_PROTO);
  if (!ip || !proto) return null;
  const a = attributes(ip);
  const src = a.get(family === 4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC);
  const dst = a.get(family === 4 ? CTA_IP_V4_DST : CTA_IP_V6_DST);
  if (!src || !dst) return null;
  const p = attributes(proto);
  const num = p.get(CTA_PROTO_NUM);
  const out: Tuple = { src: addressFromBytes(src), dst: addressFromBytes(dst), proto: num ? num.readUInt8(0) : 0 };
  const sport = p.get(CTA_PROTO_SRC_PORT);
  const dport = p.get(CTA_PROTO_DST_PORT);
  if (sport) out.sport = sport.readUInt16BE(0);
  if (dport) out.dport = dport.readUInt16BE(0);
  return out;
}

/** The destination of a dumped flow's original tuple, read before anything else is decoded. */
function origDst(attrs: Map<number, Buffer>, family: IpFamily): string | null {
  const orig = attrs.get(CTA_TUPLE_ORIG);
  const ip = orig && attributes(orig).get(CTA_TUPLE_IP);
  const dst = ip && attributes(ip).get(family === 4 ? CTA_IP_V4_DST : CTA_IP_V6_DST);
  return dst ? addressFromBytes(dst) : null;
}

/** A dumped flow, or null when it lacks what addrmap reads. */
export function decodeFlow(payload: Buffer, family: IpFamily, wanted?: (origDst: string) => boolean): FlowEntry | null {
  const attrs = attributes(payload.subarray(4));
  const dst = origDst(attrs, family);
  if (dst === null || (wanted && !wanted(dst))) return null;
  const orig = parseTuple(attrs.get(CTA_TUPLE_ORIG)!, family);
  const replyAttr = attrs.get(CTA_TUPLE_REPLY);
  const reply = replyAttr && parseTuple(replyAttr, family);
  if (!orig || !reply) return null;
  const flow: FlowEntry = {
    family,
    proto: PROTO_NAMES[orig.proto] ?? String(orig.proto),
    origSrc: orig.src,
    origDst: orig.dst,
    replySrc: reply.src,
  };
  if (orig.sport !== undefined) flow.sport = orig.sport;
  if (orig.dport !== undefined) flow.dport = orig.dport;
  const info = attrs.get(CTA_PROTOINFO);
  const tcp = info && attributes(info).get(CTA_PROTOINFO_TCP);
  const state = tcp && attributes(tcp).get(CTA_PROTOINFO_TCP_STATE);
  if (state) flow.state = TCP_STATES[state.readUInt8(0)] ?? String(state.readUInt8(0));
  // Kept as the kernel sent them: a delete names exactly this flow.
  const identity: Buffer[] = [];
  for (const [type, , whole] of attributeList(payload.subarray(4))) {
    if (type === CTA_TUPLE_ORIG || type === CTA_ID || type === CTA_ZONE) identity.push(whole);
  }
  identities.set(flow, Buffer.concat(identity));
  return flow;
}

/**
 * A delete for one listed flow. Never without its tuple: a ctnetlink delete
 * that names no tuple flushes the whole table.
 */
export function encodeDelete(flow: FlowEntry, seq: number): Buffer {
  const identity = identities.get(flow);
  if (!identity || !attributes(identity).has(CTA_TUPLE_ORIG))
    throw new Error(`flow ${flow.origSrc} -> ${flow.origDst} was not listed over ctnetlink`);
  return encodeMessage(ctType(IPCTNL_MSG_CT_DELETE), NLM_F_REQUEST | NLM_F_ACK, seq, Buffer.concat([nfgen(flow.family), identity]));
}

class NetlinkConntrack implements ConntrackTable {
  readonly via = 'ctnetlink';

  async list(family: IpFamily, wanted?: (origDst: string) => boolean): Promise<FlowEntry[]> {
    const flows: FlowEntry[] = [];
    await this.read(family, wanted, async (batch) => {
      flows.push(...batch);
    });
    return flows;
  }

  /**
   * Deletes as it reads: each datagram's doomed flows go before the next is
   * read, so memory holds one datagram's worth, not the table's.
   */
  async sweep(family: IpFamily, doomed: (f: FlowEntry) => boolean, wanted?: (origDst: string) => boolean): Promise<number> {
    const deleter = NetlinkSocket.open(NETLINK_NETFILTER);
    let removed = 0;
    try {
      await this.read(family, wanted, async (batch) => {
        const go = batch.filter(doomed);
        if (!go.length) return;
        const errnos = await deleter.acknowledged(go.map((f) => encodeDelete(f, deleter.nextSeq())));
        removed += errnos.filter((e) => e === 0).length;
        const failed = errnos.find((e) => e !== 0 && e !== ENOENT);
        if (failed !== undefined) throw new Error(`conntrack delete refused: errno ${failed} (${removed} flows removed before)`);
      });
      return removed;
    } finally {
      deleter.close();
    }
  }

  private async read(
    family: IpFamily,
    wanted: ((origDst: string) => boolean) | undefined,
    onBatch: (flows: FlowEntry[]) => Promise<void>,
  ): Promise<void> {
    const sock = NetlinkSocket.open(NETLINK_NETFILTER);
    try {
      const request = encodeMessage(ctType(IPCTNL_MSG_CT_GET), NLM_F_REQUEST | NLM_F_DUMP, sock.nextSeq(), nfgen(family));
      for await (const batch of sock.dump(request)) {
        const flows: FlowEntry[] = [];
        for (const m of batch) {
          const f = decodeFlow(m.payload, family, wanted);
          if (f) flows.push(f);
        }
        await onBatch(flows);
      }
    } finally {
      sock.close();
    }
  }
}

/**
 * The table over ctnetlink. Where the FFI cannot load, a table whose every
 * call fails with the reason: the cleanup turns that into a warning, and the
 * mappings it follows are in effect regardless.
 */
export function conntrackTable(): ConntrackTable {
  const c = libc();
  return c instanceof Error ? unavailableConntrack(c) : new NetlinkConntrack();
}

export function unavailableConntrack(why: Error): ConntrackTable {
  const refuse = () => Promise.reject(new Error(`ctnetlink unavailable (${why.message})`));
  return { via: 'ctnetlink', list: refuse, sweep: refuse };
}
