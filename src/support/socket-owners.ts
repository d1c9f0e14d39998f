// Which process owns a local socket, read from /proc as `ss -p` would, but
// without starting it: /proc/net/{tcp,udp}{,6} give each socket's addresses
// and inode (for this network namespace), /proc/PID/fd links name the inodes
// a process holds. Only the sockets asked about are looked for, and the
// process walk stops once all are found.
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
  pid: number;
  /** The command line, or the process name when it has none. */
  command: string;
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
  for (const proto of ['tcp', 'udp'] as const) {
    for (const file of [proto, `${proto}6`]) {
      const text = await readFile(`/proc/net/${file}`, 'utf8').catch(() => '');
      for (const s of parseProcNet(text, proto)) {
        const w = byKey.get(keyOf(s));
        if (w && s.inode !== '0') inodes.set(`socket:[${s.inode}]`, w);
      }
    }
  }
  if (!inodes.size) return out;
  for (const pid of (await readdir('/proc')).filter((d) => /^\d+$/.test(d))) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const w = inodes.get(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ''));
      if (!w || out.has(w)) continue;
      out.set(w, await describe(Number(pid)));
      if (out.size === inodes.size) return out;
    }
  }
  return out;
}

async function describe(pid: number): Promise<SocketOwner> {
  const [cmdline, comm, cgroup] = await Promise.all(
    ['cmdline', 'comm', 'cgroup'].map((f) => readFile(`/proc/${pid}/${f}`, 'utf8').catch(() => '')),
  );
  let command = cmdline!.replace(/\0+$/, '').replace(/\0/g, ' ').trim() || comm!.trim();
  if (command.length > 200) command = `${command.slice(0, 199)}…`;
  const v2 = /^0::(\/.*)$/m.exec(cgroup!)?.[1];
  return { pid, command, ...(v2 && v2 !== '/' ? { cgroup: v2 } : {}) };
}

/** The sockets of one /proc/net table: addresses canonical (IPv4-mapped IPv6 as IPv4), ports, inode. */
export function parseProcNet(text: string, proto: string): (SocketKey & { inode: string })[] {
  const out: (SocketKey & { inode: string })[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const local = endpoint(f[1]!);
    const peer = endpoint(f[2]!);
    if (!local || !peer) continue;
    out.push({ proto, local: local.address, localPort: local.port, peer: peer.address, peerPort: peer.port, inode: f[9]! });
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
