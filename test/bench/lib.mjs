// Shared pieces of the benchmark suite: running commands, throwaway network
// namespaces (a guest and a peer joined by veth, like test/support/lab.ts),
// long-lived processes inside them (addrmap, the baseline script, the in-guest
// driver), mapping files, and statistics. Plain ESM so it runs without a build.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, open, rename, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BENCH = join(ROOT, 'test/bench');
export const ADDRMAP = join(ROOT, 'dist/addrmap.mjs');
export const SEA = join(ROOT, 'out/addrmap');
export const NODE = process.execPath;

/** Milliseconds on the monotonic clock (the same clock in every process on the machine). */
export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- commands ---------------------------------------------------------------

/** Runs a command with an argument vector (never a shell); resolves with code, stdout, stderr and wall time. */
export function run(cmd, args, { input, env, timeoutMs = 600_000 } = {}) {
  return new Promise((res, rej) => {
    const t0 = nowMs();
    const child = spawn(cmd, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: env ? { ...process.env, ...env } : process.env,
      timeout: timeoutMs,
    });
    const out = [];
    const err = [];
    child.stdout.on('data', (b) => out.push(b));
    child.stderr.on('data', (b) => err.push(b));
    child.on('error', rej);
    child.on('close', (code, signal) =>
      res({ code: code ?? 128, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), ms: nowMs() - t0 }),
    );
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });
}

export async function must(cmd, args, opts) {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  return r;
}

// ---- cleanup ----------------------------------------------------------------

const children = new Set();
const namespaces = new Set();
const dirs = new Set();

/** Spawns a long-lived process that is killed on exit, also on failure. */
export function track(child) {
  children.add(child);
  // Whatever the process left running dies with it.
  child.on('exit', () => {
    children.delete(child);
    killGroup(child);
  });
  return child;
}

/**
 * Kills a tracked process and everything it started (socat's and netload's
 * forks, addrmap's `nft monitor`): each runs in a process group of its own.
 */
export function killGroup(child, signal = 'SIGKILL') {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

const alive = (c) => c.exitCode === null && c.signalCode === null;

export async function cleanupAll() {
  for (const c of children) killGroup(c);
  // ip netns exec runs the program in place, so the pid above is the program's.
  for (const ns of namespaces) await run('ip', ['netns', 'del', ns]).catch(() => {}); // already gone is as good
  namespaces.clear();
  for (const d of dirs) await rm(d, { recursive: true, force: true }).catch(() => {}); // a leftover temp dir is harmless
  dirs.clear();
}

let cleaning = false;
export function installCleanup() {
  const bail = async (why, code) => {
    if (cleaning) return;
    cleaning = true;
    process.stderr.write(`bench: ${why}; cleaning up\n`);
    await cleanupAll();
    process.exit(code);
  };
  process.on('SIGINT', () => void bail('interrupted', 130));
  process.on('SIGTERM', () => void bail('terminated', 143));
  process.on('uncaughtException', (e) => void bail(`uncaught ${e.stack ?? e}`, 1));
  process.on('unhandledRejection', (e) => void bail(`unhandled ${e?.stack ?? e}`, 1));
}

/** Namespaces left by a bench run that died without cleaning up (its pid is gone). */
export async function removeStaleNamespaces() {
  const r = await run('ip', ['netns', 'list']);
  for (const line of r.stdout.split('\n')) {
    const m = /^(amb(\d+)x\d+[gp])\b/.exec(line);
    if (m && !existsSync(`/proc/${m[2]}`)) await run('ip', ['netns', 'del', m[1]]);
  }
}

export async function scratchDir(prefix = 'addrmap-bench-') {
  const d = await mkdtemp(join(tmpdir(), prefix));
  dirs.add(d);
  return d;
}

export async function dropDir(d) {
  dirs.delete(d);
  await rm(d, { recursive: true, force: true });
}

// ---- addresses and mapping files ----------------------------------------------

export const ADDR = {
  guest6: 'fd00:1::1',
  peer6: 'fd00:1::2',
  guest4: '192.0.2.1',
  peer4: '192.0.2.2',
  /** The peer's address now: the one target that answers. */
  new6: 'fdaa:0:18:a7b:c2:f066:b83b:2',
  /** Its address before the migration, for the data plane. */
  stale6: 'fdaa:0:18:a7b:7d:f066:b83b:2',
  /** Every stale address of the push benchmark lies in here (routed to the peer, which refuses them). */
  staleRange6: 'fdaa:0:18:a7b:7d::/80',
};

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

export function mappingText(generation, entries, extra = []) {
  const more = extra.map(([from, to]) => `{"from":"${from}","to":"${to}"}`);
  const all = [entries, ...more].filter((s) => s.length > 0).join(',');
  return `{"version":1,"generation":${generation},"mappings":[${all}]}`;
}

/** Writes text to a temporary file next to `path` and fsyncs it; returns the temporary path (rename it to push). */
export async function stage(path, text) {
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w', 0o644);
  await fh.writeFile(text);
  await fh.sync();
  await fh.close();
  return tmp;
}

/** The control plane's push: temp file, fsync, rename. */
export async function pushFile(path, text) {
  await rename(await stage(path, text), path);
}

// ---- namespaces -----------------------------------------------------------------

let counter = 0;

/**
 * A guest namespace (where addrmap runs) joined by veth to a peer namespace
 * (the migrated host). fdaa::/16 is routed from the guest to the peer, so
 * stale addresses need no host routes, as on the platform.
 * Options:
 *   staleRefused: the peer answers the stale range with a TCP reset (it is local
 *     there, but nothing listens on it), so a probe sees "refused" at once until
 *     DNAT sends it to the target, instead of waiting for a SYN timeout.
 *   peer: false for a guest alone (cold start, full apply): the veth's other end
 *     stays in the guest.
 */
export class Lab {
  constructor(id, opts) {
    this.guest = `${id}g`;
    this.peer = opts.peer === false ? null : `${id}p`;
    this.procs = [];
  }

  static async create(opts = {}) {
    const lab = new Lab(`amb${process.pid}x${counter++}`, opts);
    lab.dir = await scratchDir('addrmap-bench-lab-');
    const { guest: g, peer: p } = lab;
    await must('ip', ['netns', 'add', g]);
    namespaces.add(g);
    if (p) {
      await must('ip', ['netns', 'add', p]);
      namespaces.add(p);
    }
    const batch = (ns, lines) => must('ip', ['-n', ns, '-batch', '-'], { input: lines.join('\n') + '\n' });
    if (p) {
      await must('ip', ['-n', g, 'link', 'add', 'gv', 'type', 'veth', 'peer', 'name', 'pv', 'netns', p]);
    } else {
      await must('ip', ['-n', g, 'link', 'add', 'gv', 'type', 'veth', 'peer', 'name', 'pv']);
    }
    await batch(g, [
      'link set lo up',
      'link set gv up',
      ...(p ? [] : ['link set pv up']),
      `addr add ${ADDR.guest6}/64 dev gv nodad`,
      `addr add ${ADDR.guest4}/24 dev gv`,
      `route add fdaa::/16 via ${ADDR.peer6}`,
      `route add 198.51.100.0/24 via ${ADDR.peer4}`,
    ]);
    // Many short connections: use the whole port range, and let the guest
    // reuse TIME_WAIT ports, so the client is never the bottleneck.
    await must('ip', ['netns', 'exec', g, 'sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=1024 65535', 'net.ipv4.tcp_tw_reuse=1']);
    if (p) {
      await batch(p, [
        'link set lo up',
        'link set pv up',
        `addr add ${ADDR.peer6}/64 dev pv nodad`,
        `addr add ${ADDR.peer4}/24 dev pv`,
        `addr add ${ADDR.new6}/128 dev lo nodad`,
        ...(opts.staleRefused ? [`route add local ${ADDR.staleRange6} dev lo`] : []),
      ]);
      await must('ip', [
        'netns',
        'exec',
        p,
        'sysctl',
        '-q',
        '-w',
        'net.ipv4.ip_local_port_range=1024 65535',
        'net.core.somaxconn=8192',
        'net.ipv4.tcp_max_syn_backlog=8192',
      ]);
    }
    return lab;
  }

  get paths() {
    return {
      config: join(this.dir, 'config.json'),
      mappings: join(this.dir, 'mappings.json'),
      stateDir: join(this.dir, 'state'),
      cmdline: join(this.dir, 'cmdline'),
    };
  }

  /** Config and flag files for addrmap; allowedTargets stays at its default (fc00::/7). */
  async prepareAddrmap() {
    await writeFile(this.paths.cmdline, 'console=ttyS0 quiet\n');
    await writeFile(this.paths.config, JSON.stringify({ logLevel: 'info' }), { mode: 0o644 });
    await mkdir(this.paths.stateDir, { recursive: true });
  }

  env(extra = {}) {
    return {
      ADDRMAP_ENABLED: '1',
      ADDRMAP_CONFIG: this.paths.config,
      ADDRMAP_MAPPINGS: this.paths.mappings,
      ADDRMAP_STATE_DIR: this.paths.stateDir,
      ADDRMAP_CMDLINE_FILE: this.paths.cmdline,
      ...extra,
    };
  }

  /** Starts a program inside a namespace; it is killed on destroy and on exit. */
  spawnIn(ns, cmd, args, { env } = {}) {
    const child = track(
      spawn('ip', ['netns', 'exec', ns, cmd, ...args], {
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true,
        env: env ? { ...process.env, ...env } : process.env,
      }),
    );
    this.procs.push(child);
    return child;
  }

  exec(ns, cmd, args, opts = {}) {
    return run('ip', ['netns', 'exec', ns, cmd, ...args], opts);
  }

  async destroy() {
    // 'exit', not 'close': a killed group's pipes may close later.
    const exited = this.procs.map((c) => (alive(c) ? new Promise((r) => c.once('exit', r)) : null));
    for (const c of this.procs) killGroup(c);
    await Promise.all(exited);
    for (const ns of [this.guest, this.peer]) {
      if (!ns) continue;
      await run('ip', ['netns', 'del', ns]);
      namespaces.delete(ns);
    }
    await dropDir(this.dir);
  }
}

// ---- long-lived processes speaking lines ------------------------------------------

/** A process whose stdout is read line by line; waiters match lines (parsed as JSON when they are). */
export class LineProc {
  constructor(child, name) {
    this.child = child;
    this.name = name;
    this.lines = [];
    this.waiters = [];
    this.stderr = '';
    createInterface({ input: child.stdout }).on('line', (line) => {
      let v = line;
      if (line.startsWith('{')) {
        try {
          v = JSON.parse(line);
        } catch {
          // not JSON after all: kept as the raw line
        }
      }
      const t = nowMs();
      this.lines.push({ t, v });
      this.waiters = this.waiters.filter((w) => (w.pred(v) ? (w.resolve({ t, v }), false) : true));
    });
    child.stderr.on('data', (d) => {
      this.stderr += d;
      if (this.stderr.length > 100_000) this.stderr = this.stderr.slice(-50_000);
    });
    child.on('close', (code) => {
      for (const w of this.waiters) w.reject(new Error(`${name} exited (${code}) while waiting; stderr: ${this.stderr.slice(-2000)}`));
      this.waiters = [];
    });
  }

  /** Resolves with {t, v} for the first line matching pred from now on (or already seen, with `past`). */
  waitFor(pred, timeoutMs = 60_000, { past = false } = {}) {
    if (past) {
      const seen = this.lines.find((l) => pred(l.v));
      if (seen) return Promise.resolve(seen);
    }
    if (this.child.exitCode !== null)
      return Promise.reject(new Error(`${this.name} has exited (${this.child.exitCode}): ${this.stderr.slice(-2000)}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(
          new Error(
            `${this.name}: no matching line within ${timeoutMs} ms; last lines: ${JSON.stringify(this.lines.slice(-5).map((l) => l.v))}; stderr: ${this.stderr.slice(-2000)}`,
          ),
        );
      }, timeoutMs);
      const done = (x) => (clearTimeout(timer), resolve(x));
      this.waiters.push({ pred, resolve: done, reject: (e) => (clearTimeout(timer), reject(e)) });
    });
  }

  get pid() {
    return this.child.pid;
  }

  async stop(signal = 'SIGTERM') {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const closed = new Promise((r) => this.child.once('exit', r));
    this.child.kill(signal);
    await closed;
  }
}

/** Starts `addrmap watch` in the guest of `lab`; resolves once it watches. */
export async function startAgent(lab, { binary = null } = {}) {
  const [cmd, args] = binary ? [binary, ['watch']] : [NODE, [ADDRMAP, 'watch']];
  const p = new LineProc(lab.spawnIn(lab.guest, cmd, args, { env: lab.env() }), 'addrmap watch');
  await p.waitFor((e) => e?.event === 'watching', 60_000);
  return p;
}

/** Starts the hand-rolled baseline (inotifywait + nft -f) in the guest; resolves once it watches. */
export async function startBaseline(lab) {
  const p = new LineProc(lab.spawnIn(lab.guest, 'bash', [join(BENCH, 'baseline-watch.sh'), lab.paths.mappings]), 'baseline script');
  await p.waitFor((l) => l === 'watching', 30_000);
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
    const reply = this.proc.waitFor((v) => v?.id === id, timeoutMs);
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
    return { rssKiB: kb('VmRSS'), hwmKiB: kb('VmHWM') };
  } catch {
    return null;
  }
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
