// Who still uses a stale address, right now: the kernel's tracked flows whose
// original destination is a mapped stale address, and for flows of local
// sockets the process that owns them. A socket never sees the DNAT, so its
// peer address is the stale literal its process was configured with.
import type { ConntrackTable } from '../kernel/conntrack.js';
import type { IpFamily } from '../net/address.js';
import { prefixKey, prefixMovesOf, type PrefixMoves } from '../net/prefix.js';
import { printable } from './printable.js';
import { socketOwners, type SocketKey, type SocketOwner } from './socket-owners.js';

export interface Flow {
  proto: string;
  state?: string;
  src: string;
  sport?: number;
  /** The stale address the flow was opened to. */
  dst: string;
  dport?: number;
  /** Who answers: the mapping's target when translated. */
  answeredBy: string;
  translated: boolean;
  /** For local sockets: the process, where the agent may see it (see socket-owners.ts). */
  pid?: number;
  command?: string;
  /** For local sockets: the socket's owner uid, and its user name when /etc/passwd has one; known even where the process is not. */
  uid?: number;
  user?: string;
  /** The owning process's cgroup (its systemd unit or container), when it has one. */
  cgroup?: string;
  /** The prefix mapping ("network/length") the stale address lies in, when it has no mapping of its own. */
  prefix?: string;
}

/**
 * The prefix moves of a set of pairs, and the families it has stale
 * addresses in; found once per set: the agent asks again with the same set
 * every sample.
 */
const known = new WeakMap<ReadonlyMap<string, string>, { moves: PrefixMoves; families: IpFamily[] }>();
function lookupOf(stale: ReadonlyMap<string, string>): { moves: PrefixMoves; families: IpFamily[] } {
  let found = known.get(stale);
  if (!found) {
    const families = new Set<IpFamily>();
    for (const key of stale.keys()) families.add(key.includes(':') ? 6 : 4);
    found = { moves: prefixMovesOf(stale), families: ([4, 6] as IpFamily[]).filter((f) => families.has(f)) };
    known.set(stale, found);
  }
  return found;
}

/**
 * Flows to the stale addresses of `stale` (address -> target, or prefix
 * "network/length" -> "network/length": every address inside counts), with
 * the owning process of each local socket.
 */
export async function listFlows(stale: ReadonlyMap<string, string>, conntrack: ConntrackTable): Promise<Flow[]> {
  const { moves, families } = lookupOf(stale);
  const prefixOf = (family: IpFamily, dst: string) => {
    if (stale.has(dst)) return undefined;
    const m = moves.lookup(family, dst);
    return m && prefixKey(m.move.from, m.move.length);
  };
  const flows: Flow[] = [];
  // A family without stale addresses has no flows to them: its table is not
  // dumped (a dump walks the kernel's whole conntrack hash, every namespace's).
  for (const family of families) {
    for (const e of await conntrack.list(family, (dst) => stale.has(dst) || (moves.size > 0 && moves.lookup(family, dst) !== undefined))) {
      const prefix = prefixOf(family, e.origDst);
      flows.push({
        proto: e.proto,
        ...(e.state ? { state: e.state } : {}),
        src: e.origSrc,
        ...(e.sport !== undefined ? { sport: e.sport } : {}),
        dst: e.origDst,
        ...(e.dport !== undefined ? { dport: e.dport } : {}),
        answeredBy: e.replySrc,
        translated: e.replySrc !== e.origDst,
        ...(prefix ? { prefix } : {}),
      });
    }
  }
  // A socket never sees the DNAT: its peer is the stale address it dialled.
  const keys = flows.map((f) => ({ proto: f.proto, local: f.src, localPort: f.sport ?? 0, peer: f.dst, peerPort: f.dport ?? 0 }));
  const owners = await socketOwners(keys).catch(() => new Map<SocketKey, SocketOwner>());
  flows.forEach((f, i) => {
    const o = owners.get(keys[i]!);
    if (!o) return;
    f.uid = o.uid;
    if (o.user !== undefined) f.user = printable(o.user);
    if (o.pid === undefined) return;
    f.pid = o.pid;
    // Displayed by status: whatever the process put in its arguments shows as text.
    f.command = printable(o.command ?? '');
    if (o.cgroup) f.cgroup = printable(o.cgroup);
  });
  return flows;
}
