// rtnetlink in-process (NETLINK_ROUTE): the routing table, routing rules,
// links and addresses addrmap reads and changes, each as one dump or one
// batch of acknowledged requests on a socket of its own, so nothing here
// spawns `ip` and concurrent callers never share a socket's buffer.
import { getSystemErrorName } from 'node:util';
import type { IpFamily } from '../../net/address.js';
import { NetlinkSocket, encodeMessage, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST } from './socket.js';
import {
  AF,
  RTM,
  decodeAddress,
  decodeLink,
  decodeRoute,
  decodeRule,
  dumpPayload,
  routeGetPayload,
  type DumpedAddress,
  type DumpedRoute,
  type DumpedRule,
} from './rtnetlink-codec.js';

const NETLINK_ROUTE = 0;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;

/** strerror's words for the errnos these requests meet, as `ip` printed them. */
const ERRNO_TEXT: Record<number, string> = {
  1: 'Operation not permitted',
  2: 'No such file or directory',
  3: 'No such process',
  13: 'Permission denied',
  17: 'File exists',
  19: 'No such device',
  22: 'Invalid argument',
  95: 'Operation not supported',
  99: 'Cannot assign requested address',
  101: 'Network is unreachable',
  113: 'No route to host',
};

export function errnoText(errno: number): string {
  if (ERRNO_TEXT[errno]) return ERRNO_TEXT[errno];
  try {
    return `errno ${errno} (${getSystemErrorName(-errno)})`;
  } catch {
    return `errno ${errno}`;
  }
}

/** One request of a batch: its message type, flags beyond REQUEST|ACK, payload. */
export interface Change {
  type: number;
  flags: number;
  payload: Buffer;
}

/** A NETLINK_ROUTE socket for one operation; closed when fn settles. */
async function withSocket<T>(fn: (s: NetlinkSocket) => Promise<T>): Promise<T> {
  const s = NetlinkSocket.open(NETLINK_ROUTE);
  try {
    return await fn(s);
  } finally {
    s.close();
  }
}

async function dumpAll<T>(s: NetlinkSocket, type: number, payload: Buffer, decode: (p: Buffer) => T | null): Promise<T[]> {
  const out: T[] = [];
  for await (const batch of s.dump(encodeMessage(type, NLM_F_REQUEST | NLM_F_DUMP, s.nextSeq(), payload)))
    for (const m of batch) {
      const v = decode(m.payload);
      if (v !== null) out.push(v);
    }
  return out;
}

/** ifindex <-> name, as the kernel has them at one moment. */
export class Links {
  private readonly byIndex = new Map<number, string>();
  private readonly byName = new Map<string, number>();

  constructor(links: { index: number; name: string }[]) {
    for (const l of links) {
      this.byIndex.set(l.index, l.name);
      this.byName.set(l.name, l.index);
    }
  }

  name(index: number): string | undefined {
    return this.byIndex.get(index);
  }

  index(name: string): number | undefined {
    return this.byName.get(name);
  }
}

export function links(): Promise<Links> {
  return withSocket(async (s) => new Links(await dumpAll(s, RTM.GETLINK, dumpPayload(0, 16), decodeLink)));
}

/** Every route of a family, all tables (the kernel's dump does not filter); cached exceptions left out. */
export function routes(families: readonly IpFamily[]): Promise<DumpedRoute[]> {
  return withSocket(async (s) => {
    const out: DumpedRoute[] = [];
    for (const f of families) out.push(...(await dumpAll(s, RTM.GETROUTE, dumpPayload(AF[f], 12), decodeRoute)));
    return out.filter((r) => !r.cloned);
  });
}

export function rules(families: readonly IpFamily[]): Promise<DumpedRule[]> {
  return withSocket(async (s) => {
    const out: DumpedRule[] = [];
    for (const f of families) out.push(...(await dumpAll(s, RTM.GETRULE, dumpPayload(AF[f], 12), decodeRule)));
    return out;
  });
}

export function addresses(family: IpFamily): Promise<DumpedAddress[]> {
  return withSocket((s) => dumpAll(s, RTM.GETADDR, dumpPayload(AF[family], 8), decodeAddress));
}

/**
 * The kernel's own route lookup for each address (routing rules included):
 * the route it answers with, or the errno it refuses with (ENETUNREACH for an
 * address nothing routes).
 */
export function lookups(targets: { family: IpFamily; address: string }[]): Promise<(DumpedRoute | number)[]> {
  return withSocket(async (s) => {
    const out: (DumpedRoute | number)[] = [];
    for (const t of targets) {
      // A lookup is answered at once, inside the send: one round trip each.
      const request = encodeMessage(RTM.GETROUTE, NLM_F_REQUEST | NLM_F_ACK, s.nextSeq(), routeGetPayload(t.family, t.address));
      try {
        const found: DumpedRoute[] = [];
        for await (const batch of s.dump(request))
          for (const m of batch) if (m.type === RTM.NEWROUTE) found.push(...nonNull(decodeRoute(m.payload)));
        out.push(found[0] ?? 0);
      } catch (e) {
        const errno = (e as { errno?: number }).errno;
        if (!errno) throw e;
        out.push(errno);
      }
    }
    return out;
  });
}

/** Sends the changes in order, each acknowledged; one errno per change (0: done). */
export function change(changes: Change[]): Promise<number[]> {
  if (!changes.length) return Promise.resolve([]);
  return withSocket((s) =>
    s.acknowledged(changes.map((c) => encodeMessage(c.type, NLM_F_REQUEST | NLM_F_ACK | c.flags, s.nextSeq(), c.payload))),
  );
}

const nonNull = <T>(v: T | null): T[] => (v === null ? [] : [v]);
