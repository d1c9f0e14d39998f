// rtnetlink messages as bytes: the headers (rtmsg, ifaddrmsg, ifinfomsg,
// fib_rule_hdr) and attributes addrmap sends and reads, nothing more. Kept
// apart from the socket work so the unit tests can check them byte by byte.
import { addressFromBytes, addressGroups, type IpFamily } from '../../net/address.js';
import { attr, attributes } from './attributes.js';

export const RTM = {
  NEWLINK: 16,
  GETLINK: 18,
  NEWADDR: 20,
  DELADDR: 21,
  GETADDR: 22,
  NEWROUTE: 24,
  DELROUTE: 25,
  GETROUTE: 26,
  GETRULE: 34,
} as const;

export const AF = { 4: 2, 6: 10 } as const;
export const RT_TABLE_MAIN = 254;
export const RTN_UNICAST = 1;
const RT_SCOPE_UNIVERSE = 0;
const RT_SCOPE_NOWHERE = 255;
const RTM_F_CLONED = 0x200;

// linux/rtnetlink.h
const RTA_DST = 1;
const RTA_SRC = 2;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_MULTIPATH = 9;
const RTA_TABLE = 15;
const RTA_VIA = 18;
// linux/if_addr.h
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_CACHEINFO = 6;
const IFA_FLAGS = 8;
const IFA_F_NODAD = 0x02;
const INFINITY_LIFE_TIME = 0xffffffff;
// linux/if_link.h
const IFLA_IFNAME = 3;
// linux/fib_rules.h
const FRA_PRIORITY = 6;
const FRA_SUPPRESS_PREFIXLEN = 14;
const FRA_TABLE = 15;
const FRA_PROTOCOL = 21;
const FR_ACT_TO_TBL = 1;

/** rtm_type names, as `ip route` prints them. */
export const ROUTE_TYPES = [
  'unspec',
  'unicast',
  'local',
  'broadcast',
  'anycast',
  'multicast',
  'blackhole',
  'unreachable',
  'prohibit',
  'throw',
  'nat',
  'xresolve',
];

/** The address family every rtnetlink header starts with, or null for one addrmap does not read (AF_UNSPEC, AF_BRIDGE...). */
function familyOf(payload: Buffer): IpFamily | null {
  const af = payload.readUInt8(0);
  return af === AF[4] ? 4 : af === AF[6] ? 6 : null;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

function addressBytes(family: IpFamily, address: string): Buffer {
  const b = Buffer.alloc(family === 6 ? 16 : 4);
  addressGroups(family, address).forEach((g, i) => b.writeUInt16BE(g, 2 * i));
  return b;
}

/** struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type; flags. */
function rtmsg(family: IpFamily, dstLen: number, protocol: number, scope: number, type: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(AF[family], 0);
  b.writeUInt8(dstLen, 1);
  b.writeUInt8(RT_TABLE_MAIN, 4);
  b.writeUInt8(protocol, 5);
  b.writeUInt8(scope, 6);
  b.writeUInt8(type, 7);
  return b;
}

export interface RouteMessage {
  family: IpFamily;
  dst: string;
  dstLen: number;
  oif?: number;
  gateway?: string;
}

/** The payload of an RTM_NEWROUTE (add) in the main table. */
export function routeAddPayload(r: RouteMessage & { oif: number }, protocol: number): Buffer {
  return Buffer.concat([
    rtmsg(r.family, r.dstLen, protocol, RT_SCOPE_UNIVERSE, RTN_UNICAST),
    attr(RTA_TABLE, u32(RT_TABLE_MAIN)),
    attr(RTA_DST, addressBytes(r.family, r.dst)),
    attr(RTA_OIF, u32(r.oif)),
    ...(r.gateway ? [attr(RTA_GATEWAY, addressBytes(r.family, r.gateway))] : []),
  ]);
}

/**
 * The payload of an RTM_DELROUTE naming prefix and protocol only (as `ip
 * route del PREFIX proto N` does): the kernel removes a route of that
 * protocol for exactly that prefix, whatever its device or gateway, and no
 * other protocol's.
 */
export function routeDelPayload(family: IpFamily, dst: string, dstLen: number, protocol: number): Buffer {
  return Buffer.concat([
    rtmsg(family, dstLen, protocol, RT_SCOPE_NOWHERE, 0),
    attr(RTA_TABLE, u32(RT_TABLE_MAIN)),
    attr(RTA_DST, addressBytes(family, dst)),
  ]);
}

/** The payload of a route lookup (RTM_GETROUTE without NLM_F_DUMP): where the kernel would send `address`. */
export function routeGetPayload(family: IpFamily, address: string): Buffer {
  return Buffer.concat([rtmsg(family, family === 6 ? 128 : 32, 0, 0, 0), attr(RTA_DST, addressBytes(family, address))]);
}

/** An rtgenmsg-sized dump request header (family only) padded to the header a dump of that kind expects. */
export function dumpPayload(family: number, headerLength: number): Buffer {
  const b = Buffer.alloc(headerLength);
  b.writeUInt8(family, 0);
  return b;
}

export interface DumpedRoute {
  family: IpFamily;
  dst: string;
  dstLen: number;
  srcLen: number;
  tos: number;
  table: number;
  protocol: number;
  type: number;
  /** A cached (exception) route, not one of the table's. */
  cloned: boolean;
  oif?: number;
  gateway?: string;
  priority?: number;
  /** Multipath, a gateway of the other family or a source prefix: more than one device and gateway can say. */
  complex: boolean;
}

export function decodeRoute(payload: Buffer): DumpedRoute | null {
  if (payload.length < 12) return null;
  const family = familyOf(payload);
  if (!family) return null;
  const a = attributes(payload.subarray(12));
  const dstLen = payload.readUInt8(1);
  const dst = a.get(RTA_DST);
  const route: DumpedRoute = {
    family,
    dst: dst ? addressFromBytes(dst) : family === 6 ? '::' : '0.0.0.0',
    dstLen,
    srcLen: payload.readUInt8(2),
    tos: payload.readUInt8(3),
    table: a.get(RTA_TABLE)?.readUInt32LE(0) ?? payload.readUInt8(4),
    protocol: payload.readUInt8(5),
    type: payload.readUInt8(7),
    cloned: (payload.readUInt32LE(8) & RTM_F_CLONED) !== 0,
    complex: a.has(RTA_MULTIPATH) || a.has(RTA_VIA) || (a.has(RTA_SRC) && payload.readUInt8(2) > 0),
  };
  const oif = a.get(RTA_OIF);
  const gw = a.get(RTA_GATEWAY);
  const prio = a.get(RTA_PRIORITY);
  if (oif) route.oif = oif.readUInt32LE(0);
  if (gw) route.gateway = addressFromBytes(gw);
  if (prio) route.priority = prio.readUInt32LE(0);
  return route;
}

export interface DumpedRule {
  family: IpFamily;
  priority: number;
  table: number;
  /** Anything that selects packets or acts other than "look up a table": source, marks, interfaces, goto... */
  selective: boolean;
}

/** struct fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action; flags. */
export function decodeRule(payload: Buffer): DumpedRule | null {
  if (payload.length < 12) return null;
  const family = familyOf(payload);
  if (!family) return null;
  const a = attributes(payload.subarray(12));
  const header = payload.readUInt8(1) | payload.readUInt8(2) | payload.readUInt8(3) | payload.readUInt32LE(8);
  // The kernel always reports these; with these values they select nothing.
  const plain = new Set([FRA_PRIORITY, FRA_TABLE, FRA_PROTOCOL]);
  const extra = [...a.keys()].some(
    (k) => !plain.has(k) && !(k === FRA_SUPPRESS_PREFIXLEN && a.get(k)!.readUInt32LE(0) === INFINITY_LIFE_TIME),
  );
  return {
    family,
    priority: a.get(FRA_PRIORITY)?.readUInt32LE(0) ?? 0,
    table: a.get(FRA_TABLE)?.readUInt32LE(0) ?? payload.readUInt8(4),
    selective: header !== 0 || payload.readUInt8(7) !== FR_ACT_TO_TBL || extra,
  };
}

export function decodeLink(payload: Buffer): { index: number; name: string } | null {
  if (payload.length < 16) return null;
  const name = attributes(payload.subarray(16)).get(IFLA_IFNAME);
  if (!name) return null;
  const end = name.indexOf(0);
  return { index: payload.readInt32LE(4), name: name.subarray(0, end < 0 ? name.length : end).toString() };
}

export interface DumpedAddress {
  family: IpFamily;
  index: number;
  prefixlen: number;
  address: string;
  /** Seconds the address stays preferred; 0: deprecated. */
  preferred: number;
}

export function decodeAddress(payload: Buffer): DumpedAddress | null {
  if (payload.length < 8) return null;
  const family = familyOf(payload);
  if (!family) return null;
  const a = attributes(payload.subarray(8));
  const addr = a.get(IFA_LOCAL) ?? a.get(IFA_ADDRESS);
  if (!addr) return null;
  const cache = a.get(IFA_CACHEINFO);
  return {
    family,
    index: payload.readUInt32LE(4),
    prefixlen: payload.readUInt8(1),
    address: addressFromBytes(addr),
    preferred: cache ? cache.readUInt32LE(0) : INFINITY_LIFE_TIME,
  };
}

/** struct ifaddrmsg: family, prefixlen, flags, scope; index. */
function ifaddrmsg(family: IpFamily, prefixlen: number, flags: number, index: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(AF[family], 0);
  b.writeUInt8(prefixlen, 1);
  b.writeUInt8(flags & 0xff, 2);
  b.writeUInt32LE(index, 4);
  return b;
}

/**
 * An address that can be bound at once (no duplicate address detection) and
 * is never picked as a source: preferred lifetime 0, valid forever.
 */
export function addressAddPayload(family: IpFamily, address: string, prefixlen: number, index: number): Buffer {
  const cache = Buffer.alloc(16);
  cache.writeUInt32LE(0, 0);
  cache.writeUInt32LE(INFINITY_LIFE_TIME, 4);
  const bytes = addressBytes(family, address);
  return Buffer.concat([
    ifaddrmsg(family, prefixlen, IFA_F_NODAD, index),
    attr(IFA_LOCAL, bytes),
    attr(IFA_ADDRESS, bytes),
    attr(IFA_CACHEINFO, cache),
    attr(IFA_FLAGS, u32(IFA_F_NODAD)),
  ]);
}

export function addressDelPayload(family: IpFamily, address: string, prefixlen: number, index: number): Buffer {
  const bytes = addressBytes(family, address);
  return Buffer.concat([ifaddrmsg(family, prefixlen, 0, index), attr(IFA_LOCAL, bytes), attr(IFA_ADDRESS, bytes)]);
}
