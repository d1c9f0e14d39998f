// The benchmark suite's own pieces: the mapping sets it pushes, the
// processes it starts in a lab (addrmap, the baseline script, the in-guest
// driver), process accounting and statistics. The lab itself (namespaces,
// commands, cleanup, mapping files) is the kernel tests' test/support/lab.ts,
// which Node runs as it is (type stripping), so the benchmarks need no build.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADDRMAP, Lab, LineProc, ROOT, nowMs, writeAtomically } from '../support/lab.ts';

export {
  ADDR,
  ADDRMAP,
  LineProc,
  ROOT,
  cleanupAll,
  installCleanup,
  mappingText,
  must,
  nowMs,
  removeStaleNamespaces,
  run,
  scratchDir,
  stage,
} from '../support/lab.ts';

export const BENCH = join(ROOT, 'test/bench');
export const SEA = join(ROOT, 'out/addrmap');
export const NODE = process.execPath;

/**
 * `ip` by absolute path, for commands started with the lab's environment:
 * that environment gives addrmap an empty PATH (it starts no program), so
 * `ip netns exec` itself must not be looked up on it.
 */
export const IP =
  (process.env.PATH ?? '')
    .split(':')
    .filter(Boolean)
    .map((d) => join(d, 'ip'))
    .find((p) => existsSync(p)) ?? 'ip';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A lab for load: the guest may use every port and reuse TIME_WAIT ones, the
 * peer's accept queues are deep; addrmap logs at info.
 */
export async function createLab(opts = {}) {
  const lab = await Lab.create({ manyConnections: true, ...opts });
  await lab.writeConfig({ logLevel: 'info' });
  return lab;
}

// ---- mapping sets -----------------------------------------------------------------

const hex = (n) => n.toString(16);

/** The i-th of N installed mappings: stale fdaa:0:18:a7b:7d:0:x:y -> target fdaa:0:18:a7b:c2:0:x:y (nobody answers there). */
export function baseMapping(i) {
  const g = `${hex(i >>> 16)}:${hex(i & 0xffff)}`;
  return [`fdaa:0:18:a7b:7d:0:${g}`, `fdaa:0:18:a7b:c2:0:${g}`];
}

/** The k-th probe address: a stale address never mapped before trial k. */
export function probeAddress(k) {
  return `fdaa:0:18:a7b:7d:1:${hex(k >>> 16)}:${hex(k & 0xffff)}`;
}

/** JSON text of the N base mappings, without brackets, so files can be built by concatenation. */
export function baseEntries(n) {
  const parts = new Array(n);
  for (let i = 0; i < n; i++) {
    const [from, to] = baseMapping(i);
    parts[i] = `{"from":"${from}","to":"${to}"}`;
  }
  return parts.join(',');
}

/** The control plane's push: temp file, fsync, rename. */
export const pushFile = writeAtomically;

// ---- processes in the lab ---------------------------------------------------------

/** Starts `addrmap watch` in the guest of `lab`; resolves once it watches. */
export async function startAgent(lab, { binary = null } = {}) {
  const [cmd, args] = binary ? [binary, ['watch']] : [NODE, [ADDRMAP, 'watch']];
  const p = new LineProc(lab.spawnIn(lab.guest, cmd, args, { env: lab.env() }), 'addrmap watch');
  await p.waitLine((e) => e?.event === 'watching', 60_000);
  return p;
}

/** Starts the hand-rolled baseline (inotifywait + nft -f) in the guest; resolves once it watches. */
export async function startBaseline(lab) {
  const p = new LineProc(lab.spawnIn(lab.guest, 'bash', [join(BENCH, 'baseline-watch.sh'), lab.paths.mappings]), 'baseline script');
  await p.waitLine((l) => l === 'watching', 30_000);
  return p;
}

/** The in-guest driver (driver.mjs): renames and probes from inside the guest, on one clock. */
export class Driver {
  constructor(lab) {
    this.proc = new LineProc(lab.spawnIn(lab.guest, NODE, [join(BENCH, 'driver.mjs')]), 'driver');
    this.seq = 0;
  }
  async call(msg, timeoutMs = 120_000) {
    const id = ++this.seq;
    const reply = this.proc.waitLine((v) => v?.id === id, timeoutMs);
    this.proc.child.stdin.write(JSON.stringify({ id, ...msg }) + '\n');
    const { v } = await reply;
    if (v.error) throw new Error(`driver: ${v.error}`);
    return v;
  }
}

// ---- process memory ----------------------------------------------------------------

export function readStatus(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
    return { rssKiB: kb('VmRSS'), hwmKiB: kb('VmHWM'), rssAnonKiB: kb('RssAnon') };
  } catch {
    return null;
  }
}

/** Proportional set size (KiB) of a process: its private pages plus its share of pages shared with others. */
export function readPss(pid) {
  try {
    return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/**
 * CPU of one process from the kernel's own accounting: `ns`, the time its
 * living threads spent on a CPU (schedstat, nanoseconds); `runs`, how often
 * they were put on a CPU (each wakeup is one); `ticksMs`, utime + stime of
 * the whole process (exited threads included, 10 ms resolution); `childTicksMs`,
 * cutime + cstime (children it has waited for); per thread, by name.
 */
export function readCpu(pid) {
  const out = { ns: 0, runs: 0, ticksMs: NaN, childTicksMs: NaN, threads: {} };
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.ticksMs = (Number(f[11]) + Number(f[12])) * 10;
    out.childTicksMs = (Number(f[13]) + Number(f[14])) * 10;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const [ns, , runs] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(' ').map(Number);
        const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
        out.ns += ns;
        out.runs += runs;
        const t = (out.threads[`${comm} ${tid}`] = { ns, runs });
        t.comm = comm;
      } catch {
        // the thread exited while it was read: its time is in ticksMs only
      }
    }
  } catch {
    return null;
  }
  return out;
}

/** A process and all its descendants. */
export function descendants(pid) {
  const kids = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(d));
    } catch {
      // the process exited while /proc was read: it has no children to count
    }
  }
  const out = [];
  const walk = (p) => {
    for (const k of kids.get(p) ?? []) {
      out.push(k);
      walk(k);
    }
  };
  walk(pid);
  return out;
}

/** CPU time (ms) used so far by a process and its living descendants. */
export function cpuMs(pid) {
  let ticks = 0;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]); // utime, stime
    } catch {
      // the process exited since it was listed: its time is no longer readable
    }
  }
  return ticks * 10; // USER_HZ is 100 on Linux
}

/**
 * Waits until a process (with its children) has gone quiet: under maxCpuMs of
 * CPU in a window of windowMs. Resolves with how long that took.
 */
export async function waitQuiet(pid, { windowMs = 1000, maxCpuMs = 30, timeoutMs = 300_000 } = {}) {
  const t0 = nowMs();
  let last = cpuMs(pid);
  for (;;) {
    await sleep(windowMs);
    const now = cpuMs(pid);
    if (now - last <= maxCpuMs) return nowMs() - t0 - windowMs;
    if (nowMs() - t0 > timeoutMs) throw new Error(`process ${pid} still busy after ${timeoutMs} ms`);
    last = now;
  }
}

// ---- statistics ----------------------------------------------------------------

export function quantile(xs, q) {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  // Nearest rank: with fewer than 100 samples, p99 is the largest.
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i];
}
export const median = (xs) => {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

export function shuffle(xs) {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

export const round = (x, digits = 2) => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : null);
