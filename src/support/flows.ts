// Who still uses a stale address, right now: the kernel's tracked flows whose
// original destination is a mapped stale address, and for flows of local
// sockets the process that owns them. A socket never sees the DNAT, so its
// peer address is the stale literal its process was configured with.
import { readFile } from 'node:fs/promises';
import { execFile } from '../kernel/exec.js';
import { normalizeIp, type IpFamily } from '../net/address.js';
import { printable } from './printable.js';
import type { ConntrackTable } from '../kernel/conntrack.js';

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
  /** For local sockets. */
  pid?: number;
  command?: string;
}

interface SocketOwner {
  proto: string;
  local: string;
  localPort: number;
  peer: string;
  peerPort: number;
  pid: number;
  command: string;
}

export async function listFlows(stale: ReadonlyMap<string, string>, conntrack: ConntrackTable): Promise<Flow[]> {
  const flows: Flow[] = [];
  for (const family of [4, 6] as IpFamily[]) {
    for (const e of await conntrack.list(family, (dst) => stale.has(dst))) {
      flows.push({
        proto: e.proto,
        ...(e.state ? { state: e.state } : {}),
        src: e.origSrc,
        ...(e.sport !== undefined ? { sport: e.sport } : {}),
        dst: e.origDst,
        ...(e.dport !== undefined ? { dport: e.dport } : {}),
        answeredBy: e.replySrc,
        translated: e.replySrc !== e.origDst,
      });
    }
  }
  const owners = await socketOwners().catch(() => [] as SocketOwner[]);
  for (const f of flows) {
    const o = owners.find(
      (s) => s.proto === f.proto && s.local === f.src && s.localPort === f.sport && s.peer === f.dst && s.peerPort === f.dport,
    );
    if (o) {
      f.pid = o.pid;
      // Displayed by status: whatever the process put in its arguments shows as text.
      f.command = printable(await commandLine(o.pid).catch(() => o.command));
    }
  }
  return flows;
}

/** The process's command line: ss gives only the thread name (Node's is "MainThread"). */
async function commandLine(pid: number): Promise<string> {
  const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8');
  const text = raw.replace(/\0+$/, '').replace(/\0/g, ' ').trim();
  if (!text) throw new Error('no command line');
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

/** Sockets with their owning processes, from `ss -H -t -u -a -n -p`. */
async function socketOwners(): Promise<SocketOwner[]> {
  const res = await execFile('ss', ['-H', '-t', '-u', '-a', '-n', '-p']);
  if (res.code !== 0) throw new Error(`ss failed: ${res.stderr.trim()}`);
  return parseSs(res.stdout);
}

function parseSs(text: string): SocketOwner[] {
  const out: SocketOwner[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+\S+\s+\d+\s+\d+\s+(\S+):(\d+)\s+(\S+):(\d+)\s+.*users:\(\("([^"]*)",pid=(\d+)/.exec(line.trim());
    if (!m) continue;
    try {
      out.push({
        proto: m[1]!,
        local: normalizeIp(unbracket(m[2]!)),
        localPort: Number(m[3]),
        peer: normalizeIp(unbracket(m[4]!)),
        peerPort: Number(m[5]),
        command: m[6]!,
        pid: Number(m[7]),
      });
    } catch {
      // wildcard or scoped addresses ("*", "fe80::1%eth0"): not a flow to a stale address
    }
  }
  return out;
}

const unbracket = (a: string) => a.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
