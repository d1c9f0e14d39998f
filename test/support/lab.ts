// The one namespace lab, for the kernel tests (test/kernel/), the kernel
// matrix's scenario (test/vm/) and the benchmarks (test/bench/): a guest
// namespace (where addrmap runs) joined by veth to a peer namespace (the
// migrated host, with an echo service), optionally a container namespace
// routed through the guest; the processes started inside them, killed with
// the lab; and mapping files written the way the control plane writes them.
// Every lab uses the same addresses; namespaces keep labs apart. Namespaces
// are named am<pid>x<n>{g,p,c} (or with another prefix a test asks for):
// unique per process, and a dead process's are recognised as stale
// (removeStaleNamespaces).
//
// Plain Node runs this file as it is (type stripping), so the benchmark's
// .mjs scripts import it without a build: erasable TypeScript only (no enums,
// parameter properties or namespaces, type-only imports marked `type`), and
// no imports but Node's own.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { mkdtemp, open, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

export const ROOT = resolve(import.meta.dirname, '../..');
/** The bundle under test; ADDRMAP_TEST_BUNDLE names another (see packaging/build.mjs). */
export const ADDRMAP = process.env.ADDRMAP_TEST_BUNDLE ?? join(ROOT, 'dist/addrmap.mjs');
const SUPPORT = join(ROOT, 'test/support');
const PORT = 7000;
/**
 * Waits for processes to start or print scale by this (environment
 * ADDRMAP_TEST_TIMEOUT_SCALE): under software emulation (test/vm) starting
 * Node takes seconds.
 */
const TIMEOUT_SCALE = Math.max(1, Number(process.env.ADDRMAP_TEST_TIMEOUT_SCALE) || 1);

/** Addresses of the lab. "new" ones live on the peer; "stale" ones nowhere. */
export const ADDR = {
  guest6: 'fd00:1::1',
  peer6: 'fd00:1::2',
  guest4: '192.0.2.1',
  peer4: '192.0.2.2',
  /** The peer's address before it migrated: routed towards the peer, but nobody has it. */
  stale6: 'fdaa:0:18:a7b:7d:f066:b83b:2',
  /** Stale addresses the peer refuses with a reset in a lab made with `staleRefused` (stale6 is one). */
  staleRange6: 'fdaa:0:18:a7b:7d::/80',
  /** A stale address outside every route of the guest. */
  staleUnrouted6: 'fdbb:0:1::2',
  new6: 'fdaa:0:18:a7b:c2:f066:b83b:2',
  newer6: 'fdaa:0:18:a7b:c3:f066:b83b:2',
  stale4: '198.51.100.10',
  staleUnrouted4: '203.0.113.10',
  new4: '198.51.100.20',
  newer4: '198.51.100.30',
  ctr6: 'fd00:2::2',
  ctr4: '198.18.0.2',
} as const;

/** A program on the test's own PATH, by absolute path. */
function onPath(name: string): string {
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir && existsSync(join(dir, name))) return join(dir, name);
  return name;
}

/** `ip`, for the lab's own work: found before addrmap's PATH is emptied (see Lab.env). */
const IP = onPath('ip');

/**
 * addrmap's PATH in every lab: an empty directory. addrmap needs no program
 * (nft, ip, conntrack are reached in-process), and this shows it: should it
 * ever start one by name again, the test fails.
 */
const EMPTY_PATH = join(tmpdir(), 'addrmap-lab-empty-path');
mkdirSync(EMPTY_PATH, { recursive: true });

/** Milliseconds on the monotonic clock (the same clock in every process on the machine). */
export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

// ---- commands ---------------------------------------------------------------

interface RunOptions {
  input?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

interface RunResult {
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit. */
  ms: number;
}

/** Runs a command with an argument vector (never a shell), in the C locale; resolves with its exit status, output and wall time. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((res, rej) => {
    const t0 = nowMs();
    const child = spawn(cmd, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C', ...opts.env },
      timeout: opts.timeoutMs ?? 600_000,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', rej);
    child.on('close', (code, signal) =>
      res({ code: code ?? 128, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), ms: nowMs() - t0 }),
    );
    // A command that exits early closes its stdin under us.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** run(), failing unless the command exits 0. */
export async function must(cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.signal ?? r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  return r;
}

// ---- processes, namespaces and directories, cleaned up --------------------------

/** Everything labs made that is still there: cleanupAll() removes it, also when a run dies. */
const children = new Set<ChildProcess>();
const namespaces = new Set<string>();
const dirs = new Set<string>();

const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

/**
 * Kills a lab process and everything it started: each runs in a process
 * group of its own. Only while the process lives (or in its exit handler),
 * when the group's id cannot have been reused.
 */
function killGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** Kills every lab process, deletes every lab namespace and directory of this process. */
export async function cleanupAll(): Promise<void> {
  for (const c of children) if (alive(c)) killGroup(c);
  children.clear();
  for (const ns of namespaces) await run('ip', ['netns', 'del', ns]).catch(() => {}); // already gone is as good
  namespaces.clear();
  for (const d of dirs) await rm(d, { recursive: true, force: true }).catch(() => {}); // a leftover temp dir is harmless
  dirs.clear();
}

let cleaning = false;
/** For scripts (the benchmarks): on a signal or an uncaught error, clean up, then exit. */
export function installCleanup(): void {
  const bail = async (why: string, code: number) => {
    if (cleaning) return;
    cleaning = true;
    process.stderr.write(`${why}; cleaning up\n`);
    await cleanupAll();
    process.exit(code);
  };
  const text = (e: unknown) => (e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.on('SIGINT', () => void bail('interrupted', 130));
  process.on('SIGTERM', () => void bail('terminated', 143));
  process.on('uncaughtException', (e) => void bail(`uncaught ${text(e)}`, 1));
  process.on('unhandledRejection', (e) => void bail(`unhandled ${text(e)}`, 1));
}

/** Lab namespaces left by a process that died without cleaning up (its pid is gone). */
export async function removeStaleNamespaces(): Promise<void> {
  const r = await run('ip', ['netns', 'list']);
  for (const line of r.stdout.split('\n')) {
    const m = /^((?:am|ctc-)(\d+)x\d+[gpc])\b/.exec(line);
    if (m && !existsSync(`/proc/${m[2]}`)) await run('ip', ['netns', 'del', m[1]!]);
  }
}

/** A temporary directory, removed by cleanupAll() if not before. */
export async function scratchDir(prefix = 'addrmap-lab-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  dirs.add(d);
  return d;
}

// ---- mapping files ---------------------------------------------------------------

/** Writes text to a temporary file next to `path` and fsyncs it; returns the temporary path (rename it over `path` to push). */
export async function stage(path: string, text: string): Promise<string> {
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w', 0o644);
  await fh.writeFile(text);
  await fh.sync();
  await fh.close();
  return tmp;
}

/** The control plane's way to write a file: temp file, fsync, rename. */
export async function writeAtomically(path: string, text: string): Promise<void> {
  await rename(await stage(path, text), path);
}

/** A mapping file (version 1) as an object. */
export function mappingFile(generation: number, mappings: [string, string][]) {
  return { version: 1, generation, mappings: mappings.map(([from, to]) => ({ from, to })) };
}

/** Mapping entries as JSON text, without brackets, so that large files can be built by concatenation (addresses need no escaping). */
function mappingEntries(mappings: readonly (readonly [string, string])[]): string {
  return mappings.map(([from, to]) => `{"from":"${from}","to":"${to}"}`).join(',');
}

/** A mapping file's text: entries (mappingEntries' text) followed by `extra` mappings. */
export function mappingText(generation: number, entries: string, extra: readonly (readonly [string, string])[] = []): string {
  const all = [entries, mappingEntries(extra)].filter((s) => s.length > 0).join(',');
  return `{"version":1,"generation":${generation},"mappings":[${all}]}`;
}

// ---- the lab ----------------------------------------------------------------------

interface LabOptions {
  /** A container namespace behind the guest (ADDR.ctr6, ADDR.ctr4), routed through it; the guest forwards. */
  container?: boolean;
  /** false: a guest alone (cold start, full apply), the veth's other end in the guest too. */
  peer?: boolean;
  /**
   * The peer answers ADDR.staleRange6 with a TCP reset (the range is local
   * there, but nothing listens on it), so a probe sees "refused" at once
   * until DNAT sends it to the target, instead of waiting for a SYN timeout.
   */
  staleRefused?: boolean;
  /**
   * For many short connections (the benchmarks): the guest uses the whole
   * port range and reuses TIME_WAIT ports, so the client is never the
   * bottleneck; the peer's accept queues are deep.
   */
  manyConnections?: boolean;
  /** The namespaces' prefix instead of "am", so a test's are told from other labs' at a glance ("ctc-"; see removeStaleNamespaces). */
  prefix?: 'ctc-';
}

let counter = 0;

export interface ProbeResult {
  ok: boolean;
  reply?: string;
  error?: string;
}

export class Lab {
  readonly guest: string;
  private readonly peerName: string | null;
  readonly ctr: string | null;
  readonly dir: string;
  private readonly procs: ChildProcess[] = [];

  private constructor(id: string, dir: string, opts: LabOptions) {
    this.guest = `${id}g`;
    this.peerName = opts.peer === false ? null : `${id}p`;
    this.ctr = opts.container ? `${id}c` : null;
    this.dir = dir;
  }

  get paths() {
    return {
      config: join(this.dir, 'config.json'),
      mappings: join(this.dir, 'mappings.json'),
      stateDir: join(this.dir, 'state'),
      cmdline: join(this.dir, 'cmdline'),
    };
  }

  /**
   * A fresh lab: the namespaces, their links, addresses and routes, the
   * peer's new addresses (ADDR.new6, ADDR.new4), and addrmap's config and
   * kernel command line files. fdaa::/16 and 198.51.100.0/24 are routed from
   * the guest to the peer, so stale addresses need no host routes, as on the
   * platform.
   */
  static async create(opts: LabOptions = {}): Promise<Lab> {
    const lab = new Lab(`${opts.prefix ?? 'am'}${process.pid}x${counter++}`, await scratchDir(), opts);
    try {
      await lab.build(opts);
    } catch (e) {
      await lab.destroy();
      throw e;
    }
    return lab;
  }

  private async build(opts: LabOptions): Promise<void> {
    const { guest: g, peerName: p, ctr: c } = this;
    await writeFile(this.paths.cmdline, 'console=ttyS0 quiet\n');
    await this.writeConfig({});
    for (const ns of [g, p, c]) {
      if (!ns) continue;
      await must('ip', ['netns', 'add', ns]);
      namespaces.add(ns);
    }
    const batch = (ns: string, lines: string[]) => must('ip', ['-n', ns, '-batch', '-'], { input: lines.join('\n') + '\n' });
    // Links are created inside the guest namespace, so their names never clash between labs.
    await batch(g, [
      p ? `link add gv type veth peer name pv netns ${p}` : 'link add gv type veth peer name pv',
      'link set lo up',
      'link set gv up',
      ...(p ? [] : ['link set pv up']),
      `addr add ${ADDR.guest6}/64 dev gv nodad`,
      `addr add ${ADDR.guest4}/24 dev gv`,
      `route add fdaa::/16 via ${ADDR.peer6}`,
      `route add 198.51.100.0/24 via ${ADDR.peer4}`,
      ...(c
        ? [
            `link add gc type veth peer name cv netns ${c}`,
            'link set gc up',
            'addr add fd00:2::1/64 dev gc nodad',
            'addr add 198.18.0.1/24 dev gc',
          ]
        : []),
    ]);
    if (p)
      await batch(p, [
        'link set lo up',
        'link set pv up',
        `addr add ${ADDR.peer6}/64 dev pv nodad`,
        `addr add ${ADDR.peer4}/24 dev pv`,
        ...(c ? ['route add fd00:2::/64 via ' + ADDR.guest6, 'route add 198.18.0.0/24 via ' + ADDR.guest4] : []),
      ]);
    if (c)
      await batch(c, [
        'link set lo up',
        'link set cv up',
        `addr add ${ADDR.ctr6}/64 dev cv nodad`,
        `addr add ${ADDR.ctr4}/24 dev cv`,
        'route add default via fd00:2::1',
        'route add default via 198.18.0.1',
      ]);
    const guestSysctls = [
      ...(c ? ['net.ipv6.conf.all.forwarding=1', 'net.ipv4.ip_forward=1'] : []),
      ...(opts.manyConnections ? ['net.ipv4.ip_local_port_range=1024 65535', 'net.ipv4.tcp_tw_reuse=1'] : []),
    ];
    if (guestSysctls.length) await must('ip', ['netns', 'exec', g, 'sysctl', '-q', '-w', ...guestSysctls]);
    if (!p) return;
    await this.setPeerAddresses([ADDR.new6, ADDR.new4]);
    if (opts.staleRefused) await must('ip', ['-n', p, 'route', 'add', 'local', ADDR.staleRange6, 'dev', 'lo']);
    if (opts.manyConnections)
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

  /** Writes the config file; the lab's IPv4 targets are always allowed besides the default ULA range. */
  async writeConfig(settings: Record<string, unknown>): Promise<void> {
    await writeAtomically(this.paths.config, JSON.stringify({ allowedTargets: ['fc00::/7', '198.51.100.0/24'], ...settings }));
  }

  /** The peer "migrates": it has exactly these addresses (besides its link address) from now on. */
  async setPeerAddresses(addrs: string[]): Promise<void> {
    await must('ip', ['-n', this.peer, '-batch', '-'], {
      input:
        [
          'addr flush dev lo scope global',
          ...addrs.map((a) => (a.includes(':') ? `addr add ${a}/128 dev lo nodad` : `addr add ${a}/32 dev lo`)),
        ].join('\n') + '\n',
    });
  }

  /** Starts the echo service on the peer and waits until it listens. */
  async startPeer(name = 'peer'): Promise<void> {
    const child = this.spawnIn(this.peer, process.execPath, [join(SUPPORT, 'echo-server.mjs'), name, String(PORT)]);
    await waitForOutput(child, /udp ready/, 5000);
  }

  /**
   * Starts a program inside a namespace, in a process group of its own;
   * destroy() (or cleanupAll()) kills the group. When the program exits, what
   * it left running is killed too, unless `leaveOrphans` (the agent: what it
   * leaves behind is for the tests to see).
   */
  spawnIn(ns: string, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; leaveOrphans?: boolean } = {}): ChildProcess {
    const child = spawn(IP, ['netns', 'exec', ns, cmd, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
      env: { ...process.env, ...opts.env },
    });
    children.add(child);
    this.procs.push(child);
    child.on('exit', () => {
      children.delete(child);
      // ip netns exec runs the program in place, so the group is the program's.
      if (!opts.leaveOrphans) killGroup(child);
    });
    return child;
  }

  /** Runs a command in a namespace to its end. */
  exec(ns: string, cmd: string, args: string[], input?: string): Promise<RunResult> {
    return run(IP, ['netns', 'exec', ns, cmd, ...args], input === undefined ? {} : { input });
  }

  env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    return {
      ADDRMAP_ENABLED: '1',
      ADDRMAP_CONFIG: this.paths.config,
      ADDRMAP_MAPPINGS: this.paths.mappings,
      ADDRMAP_STATE_DIR: this.paths.stateDir,
      ADDRMAP_CMDLINE_FILE: this.paths.cmdline,
      PATH: EMPTY_PATH,
      ...extra,
    };
  }

  /** Runs `addrmap ARGS` in the guest. */
  addrmap(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
    return run(IP, ['netns', 'exec', this.guest, process.execPath, ADDRMAP, ...args], { env: this.env(env) });
  }

  /**
   * Starts `addrmap watch` in the guest; resolves once it watches. nodeArgs:
   * V8 flags, e.g. those the standalone executable embeds; binary: run that
   * executable (out/addrmap) instead of node dist/addrmap.mjs.
   */
  async watch(env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = [], opts: { binary?: string | null; timeoutMs?: number } = {}) {
    const argv = opts.binary ? [opts.binary, 'watch'] : [process.execPath, ...nodeArgs, ADDRMAP, 'watch'];
    const agent = new LineProc(
      this.spawnIn(this.guest, argv[0]!, argv.slice(1), { env: this.env(env), leaveOrphans: true }),
      'addrmap watch',
    );
    await agent.waitFor((e) => e.event === 'watching', opts.timeoutMs ?? 60_000);
    return agent;
  }

  /** Pushes a mapping file the way the control plane must: temp file, fsync, rename. */
  async push(doc: unknown): Promise<void> {
    await writeAtomically(this.paths.mappings, typeof doc === 'string' ? doc : JSON.stringify(doc));
  }

  async tcp(addr: string, from = this.guest, timeoutMs = 1500, port = PORT): Promise<ProbeResult> {
    return this.probe(from, ['tcp', addr, String(port), String(timeoutMs)]);
  }

  /** Starts a TCP server in a namespace bound to one address; it answers "NAME <local address>". */
  async serve(ns: string, name: string, host: string, port: number): Promise<void> {
    const code = `require('net').createServer((s) => { s.on('error', () => {}); s.end('${name} ' + s.localAddress + '\\n'); }).listen({ host: '${host}', port: ${port} }, () => console.log('listening'))`;
    const child = this.spawnIn(ns, process.execPath, ['-e', code]);
    await waitForOutput(child, /listening/, 5000);
  }

  async udp(addr: string, from = this.guest, timeoutMs = 1500): Promise<ProbeResult> {
    return this.probe(from, ['udp', addr, String(PORT), String(timeoutMs)]);
  }

  /** Connects, sends `bytes` bytes, and returns the peer's answer. */
  async tcpSend(addr: string, bytes: number): Promise<ProbeResult> {
    return this.probe(this.guest, ['tcp-send', addr, String(PORT), String(bytes)]);
  }

  /** Opens a TCP connection from the guest and holds it for `ms`; resolves once connected. */
  async tcpHold(addr: string, ms: number): Promise<{ pid: number; localPort: number; reply: string }> {
    const child = this.spawnIn(this.guest, process.execPath, [join(SUPPORT, 'probe.mjs'), 'tcp-hold', addr, String(PORT + 1), String(ms)]);
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      child.on('close', () => reject(new Error(`tcp-hold ended early: ${out}`)));
    });
    const r = JSON.parse(line) as { ok: boolean; reply: string; localPort: number; error?: string };
    if (!r.ok) throw new Error(`tcp-hold could not connect: ${r.error}`);
    return { pid: child.pid!, localPort: r.localPort, reply: r.reply };
  }

  /** An application that talks through addr all the time (a line every intervalMs); resolves once connected. */
  async tcpChat(addr: string, intervalMs = 100) {
    const child = this.spawnIn(this.guest, process.execPath, [
      join(SUPPORT, 'probe.mjs'),
      'tcp-chat',
      addr,
      String(PORT + 2),
      String(intervalMs),
    ]);
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    const closed = new Promise<void>((r) => child.on('close', () => r()));
    await waitForOutput(child, /chat connected/, 10_000, 'stderr');
    return {
      /** Ends the conversation: whether it stayed connected, and the longest wait for an echo. */
      async stop(): Promise<{ ok: boolean; sent: number; echoed: number; maxGapMs: number; error?: string }> {
        child.kill('SIGTERM');
        await closed;
        return JSON.parse(out);
      },
    };
  }

  /** Starts a long-lived UDP flow from the guest; resolves when its first datagram is sent. */
  async udpStream(addr: string, srcPort: number, durationMs: number, intervalMs = 100) {
    const child = this.spawnIn(this.guest, process.execPath, [
      join(SUPPORT, 'probe.mjs'),
      'udp-stream',
      addr,
      String(PORT),
      String(srcPort),
      String(durationMs),
      String(intervalMs),
    ]);
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    const done = new Promise<{ sent: number; replies: { t: number; reply: string }[]; errors: unknown[] }>((res, rej) =>
      child.on('close', () => {
        try {
          res(JSON.parse(out));
        } catch (e) {
          rej(new Error(`udp-stream printed ${JSON.stringify(out)}: ${String(e)}`, { cause: e }));
        }
      }),
    );
    done.catch(() => {}); // a test that fails early kills the stream; that is not a second error
    await waitForOutput(child, /stream started/, 5000, 'stderr');
    return { started: Date.now(), done };
  }

  /** Polls a TCP connect until it succeeds; returns the milliseconds it took. */
  async waitReachable(addr: string, withinMs: number): Promise<{ ms: number; reply: string }> {
    const start = Date.now();
    let last: ProbeResult = { ok: false };
    while (Date.now() - start < withinMs) {
      last = await this.tcp(addr, this.guest, 300);
      if (last.ok) return { ms: Date.now() - start, reply: last.reply! };
    }
    throw new Error(`${addr} not reachable within ${withinMs} ms (last: ${JSON.stringify(last)})`);
  }

  /** The guest's whole ruleset, with counter values blanked (traffic changes them). */
  async ruleset(): Promise<string> {
    return (await this.exec(this.guest, 'nft', ['list', 'ruleset'])).stdout.replace(/packets \d+ bytes \d+/g, 'packets - bytes -');
  }

  /**
   * The guest's routes, every table but the local one (whose link-local
   * entries come and go with address configuration, not with addrmap).
   */
  async routes(): Promise<string> {
    const r6 = await run('ip', ['-n', this.guest, '-6', 'route', 'show', 'table', 'all']);
    const r4 = await run('ip', ['-n', this.guest, '-4', 'route', 'show', 'table', 'all']);
    return (r6.stdout + r4.stdout)
      .split('\n')
      .filter((l) => !l.includes('table local'))
      .join('\n');
  }

  /** Kills the lab's processes (with what they started), deletes its namespaces and its directory. */
  async destroy(): Promise<void> {
    // 'exit', not 'close': a killed group's pipes may close later.
    const living = this.procs.filter(alive);
    const exited = living.map((c) => new Promise((r) => c.once('exit', r)));
    for (const c of living) killGroup(c);
    await Promise.all(exited);
    for (const ns of [this.guest, this.peerName, this.ctr]) {
      if (!ns || !namespaces.has(ns)) continue;
      await run('ip', ['netns', 'del', ns]);
      namespaces.delete(ns);
    }
    dirs.delete(this.dir);
    await rm(this.dir, { recursive: true, force: true });
  }

  /** The peer namespace; a lab made with `peer: false` has none. */
  get peer(): string {
    if (!this.peerName) throw new Error('this lab has no peer');
    return this.peerName;
  }

  private async probe(ns: string, args: string[]): Promise<ProbeResult> {
    const r = await this.exec(ns, process.execPath, [join(SUPPORT, 'probe.mjs'), ...args]);
    if (r.code !== 0) throw new Error(`probe failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as ProbeResult;
  }
}

// ---- long-lived processes speaking lines ------------------------------------------

/** A line of output and when it was read (nowMs()); v is the parsed JSON for lines that are JSON, else the text. */
interface Line {
  t: number;
  v: unknown;
}

type Waiter = { pred: (v: unknown) => boolean; resolve: (l: Line) => void; reject: (e: Error) => void };

/** A process whose stdout is read line by line: addrmap's JSON log, or a helper's status lines. */
export class LineProc {
  readonly child: ChildProcess;
  readonly name: string;
  readonly lines: Line[] = [];
  /** The lines that are JSON objects (addrmap's log events), in order. */
  readonly events: Record<string, unknown>[] = [];
  /** The last 50-100 kB of stderr. */
  stderr = '';
  private waiters: Waiter[] = [];
  private closed = false;
  private readonly done: Promise<void>;

  constructor(child: ChildProcess, name: string) {
    this.child = child;
    this.name = name;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let v: unknown = line;
      if (line.startsWith('{')) {
        try {
          v = JSON.parse(line);
        } catch {
          // not JSON after all: kept as the raw line
        }
      }
      const l = { t: nowMs(), v };
      this.lines.push(l);
      if (isEvent(v)) this.events.push(v);
      this.waiters = this.waiters.filter((w) => (w.pred(v) ? (w.resolve(l), false) : true));
    });
    child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      if (this.stderr.length > 100_000) this.stderr = this.stderr.slice(-50_000);
    });
    this.done = new Promise((r) =>
      child.once('close', (code, signal) => {
        this.closed = true;
        for (const w of this.waiters) w.reject(new Error(`${name} exited (${signal ?? code}) while waiting; ${this.context()}`));
        this.waiters = [];
        r();
      }),
    );
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Resolves with the first log event (past or future) matching pred. */
  async waitFor(pred: (e: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    return (await this.waitLine((v) => isEvent(v) && pred(v), timeoutMs, { past: true })).v as Record<string, unknown>;
  }

  /** Resolves with the first line matching pred from now on (or already read, with `past`), and when it was read. */
  waitLine(pred: (v: unknown) => boolean, timeoutMs = 60_000, { past = false } = {}): Promise<Line> {
    if (past) {
      const seen = this.lines.find((l) => pred(l.v));
      if (seen) return Promise.resolve(seen);
    }
    if (this.closed) return Promise.reject(new Error(`${this.name} has exited (${this.child.exitCode}); ${this.context()}`));
    const ms = timeoutMs * TIMEOUT_SCALE;
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        pred,
        resolve: (l) => (clearTimeout(timer), resolve(l)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`${this.name}: no matching line within ${ms} ms; ${this.context()}`));
      }, ms);
      this.waiters.push(w);
    });
  }

  /** Signals the process and resolves with its exit code once it has exited and all its output is read. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (alive(this.child)) this.child.kill(signal);
    await this.done;
    return this.child.exitCode;
  }

  private context(): string {
    return `last lines: ${JSON.stringify(this.lines.slice(-30).map((l) => l.v))}; stderr: ${this.stderr.slice(-2000)}`;
  }
}

/** A running `addrmap watch` (Lab.watch). */
export type AgentProcess = LineProc;

const isEvent = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function waitForOutput(child: ChildProcess, re: RegExp, timeoutMs: number, stream: 'stdout' | 'stderr' = 'stdout'): Promise<void> {
  const ms = timeoutMs * TIMEOUT_SCALE;
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`process did not print ${re} within ${ms} ms: ${seen}`)), ms);
    child[stream]!.on('data', (d: Buffer) => {
      seen += d.toString();
      if (re.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

/** Parses addrmap's JSON log lines out of a command's stdout. */
export function logEvents(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
