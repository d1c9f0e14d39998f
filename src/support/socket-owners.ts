// Which process owns a local socket, read from /proc as `ss -p` would, but
// without starting it: /proc/net/{tcp,udp}{,6} give each socket's addresses,
// inode and owner uid (for this network namespace), /proc/PID/fd links name
// the inodes a process holds. Only the sockets asked about are looked for,
// and the process walk stops once all are found.
//
// Another user's /proc/PID/fd takes CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH,
// which the systemd unit does not give the agent (CAP_NET_ADMIN only: ptrace
// would let it read any process's memory). There, a socket of another user's
// program is attributed to its uid, named from /etc/passwd, which
// /proc/net shows to anyone; its pid and command only where visible.
import { readdir, readFile, readlink } from 'node:fs/promises';
import { endianness } from 'node:os';
import { bigToAddress, unmapIpv4 } from '../net/address.js';

export interface SocketKey {
  proto: string;
  local: string;
  localPort: number;
  peer: string;
  peerPort: number;
}

export interface SocketOwner {
  /** The socket's owner, as the kernel records it (the uid that opened it). */
  uid: number;
  /** That uid's name in /etc/passwd, when it has one. */
  user?: string;
  /** The process holding the socket; absent when its descriptors are not the agent's to see. */
  pid?: number;
  /** The command line, or the process name when it has none; with pid. */
  command?: string;
  /** The process's cgroup v2 path ("/system.slice/postgresql.service"), when it has one. */
  cgroup?: string;
}

const keyOf = (k: SocketKey) => `${k.proto} ${k.local} ${k.localPort} ${k.peer} ${k.peerPort}`;

/** Owners of the sockets asked about, keyed as the sockets (those not found are absent). */
export async function socketOwners(wanted: readonly SocketKey[]): Promise<Map<SocketKey, SocketOwner>> {
  const out = new Map<SocketKey, SocketOwner>();
  if (!wanted.length) return out;
  const byKey = new Map(wanted.map((w) => [keyOf(w), w]));
  const inodes = new Map<string, SocketKey>();
  const uids = new Map<SocketKey, number>();
  for (const proto of ['tcp', 'udp'] as const) {
    for (const file of [proto, `${proto}6`]) {
      const text = await readFile(`/proc/net/${file}`, 'utf8').catch(() => '');
      for (const s of parseProcNet(text, proto)) {
        const w = byKey.get(keyOf(s));
        // Inode 0: no socket any more (TIME_WAIT), so no owner either.
        if (!w || s.inode === '0') continue;
        inodes.set(`socket:[${s.inode}]`, w);
        uids.set(w, s.uid);
      }
    }
  }
  if (!inodes.size) return out;
  const names = await userNames();
  const user = (uid: number) => {
    const name = names.get(uid);
    return { uid, ...(name !== undefined ? { user: name } : {}) };
  };
  walk: for (const pid of (await readdir('/proc')).filter((d) => /^\d+$/.test(d))) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const w = inodes.get(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ''));
      if (!w || out.has(w)) continue;
      out.set(w, { ...user(uids.get(w)!), ...(await describe(Number(pid))) });
      if (out.size === inodes.size) break walk;
    }
  }
  for (const [w, uid] of uids) if (!out.has(w)) out.set(w, user(uid));
  return out;
}

/** uid -> name from /etc/passwd (users only a directory service knows keep their number). */
async function userNames(): Promise<Map<number, string>> {
  return parsePasswd(await readFile('/etc/passwd', 'utf8').catch(() => ''));
}

export function parsePasswd(text: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const line of text.split('\n')) {
    const [name, , uid] = line.split(':');
    if (name && uid && /^\d+$/.test(uid) && !out.has(Number(uid))) out.set(Number(uid), name);
  }
  return out;
}

async function describe(pid: number): Promise<{ pid: number; command: string; cgroup?: string }> {
  const [cmdline, comm, cgroup] = await Promise.all(
    ['cmdline', 'comm', 'cgroup'].map((f) => readFile(`/proc/${pid}/${f}`, 'utf8').catch(() => '')),
  );
  let command = cmdline!.replace(/\0+$/, '').replace(/\0/g, ' ').trim() || comm!.trim();
  if (command.length > 200) command = `${command.slice(0, 199)}…`;
  const v2 = /^0::(\/.*)$/m.exec(cgroup!)?.[1];
  return { pid, command, ...(v2 && v2 !== '/' ? { cgroup: v2 } : {}) };
}

/** The sockets of one /proc/net table: addresses canonical (IPv4-mapped IPv6 as IPv4), ports, owner uid, inode. */
export function parseProcNet(text: string, proto: string): (SocketKey & { uid: number; inode: string })[] {
  const out: (SocketKey & { uid: number; inode: string })[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const local = endpoint(f[1]!);
    const peer = endpoint(f[2]!);
    if (!local || !peer) continue;
    out.push({
      proto,
      local: local.address,
      localPort: local.port,
      peer: peer.address,
      peerPort: peer.port,
      uid: Number(f[7]),
      inode: f[9]!,
    });
  }
  return out;
}

/** "0100007F:1F90": the address as the kernel's 32-bit words in host byte order, the port in hex. */
function endpoint(text: string): { address: string; port: number } | null {
  const [hex, port] = text.split(':');
  if (!hex || !port || (hex.length !== 8 && hex.length !== 32)) return null;
  let value = 0n;
  for (let i = 0; i < hex.length; i += 8) {
    const word = hex.slice(i, i + 8);
    const bytes = endianness() === 'LE' ? word.match(/../g)!.reverse().join('') : word;
    value = (value << 32n) | BigInt(`0x${bytes}`);
  }
  const address = hex.length === 8 ? bigToAddress(4, value) : unmapIpv4(bigToAddress(6, value));
  return { address, port: parseInt(port, 16) };
}
