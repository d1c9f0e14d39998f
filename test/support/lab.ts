// A throwaway network for kernel tests: a guest namespace (where addrmap
// runs) joined by veth to a peer namespace (the migrated host, with an echo
// service), and optionally a container namespace routed through the guest.
// Every lab uses the same addresses; namespaces keep labs apart.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile, rename, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execFile, type ExecResult } from '../../src/kernel/exec.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const ADDRMAP = join(ROOT, 'dist/addrmap.mjs');
const SUPPORT = join(ROOT, 'test/support');
const PORT = 7000;
/**
 * Waits for processes to start scale by this (environment
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

let counter = 0;

export interface ProbeResult {
  ok: boolean;
  reply?: string;
  error?: string;
}

export class Lab {
  private children: ChildProcess[] = [];

  private constructor(
    readonly guest: string,
    readonly peer: string,
    readonly ctr: string | null,
    readonly dir: string,
  ) {}

  get paths() {
    return {
      config: join(this.dir, 'config.json'),
      mappings: join(this.dir, 'mappings.json'),
      stateDir: join(this.dir, 'state'),
      cmdline: join(this.dir, 'cmdline'),
    };
  }

  static async create(opts: { container?: boolean } = {}): Promise<Lab> {
    const id = `am${process.pid}x${counter++}`;
    const lab = new Lab(`${id}g`, `${id}p`, opts.container ? `${id}c` : null, await mkdtemp(join(tmpdir(), 'addrmap-lab-')));
    await writeFile(lab.paths.cmdline, 'console=ttyS0 quiet\n');
    await lab.writeConfig({});
    const { guest: g, peer: p } = lab;
    await must('ip', ['netns', 'add', g]);
    await must('ip', ['netns', 'add', p]);
    // Created inside the guest namespace, so names never clash between labs.
    await must('ip', ['-n', g, 'link', 'add', 'gv', 'type', 'veth', 'peer', 'name', 'pv', 'netns', p]);
    for (const [ns, dev] of [
      [g, 'gv'],
      [p, 'pv'],
      [g, 'lo'],
      [p, 'lo'],
    ] as const)
      await must('ip', ['-n', ns, 'link', 'set', dev, 'up']);
    await must('ip', ['-n', g, 'addr', 'add', `${ADDR.guest6}/64`, 'dev', 'gv', 'nodad']);
    await must('ip', ['-n', p, 'addr', 'add', `${ADDR.peer6}/64`, 'dev', 'pv', 'nodad']);
    await must('ip', ['-n', g, 'addr', 'add', `${ADDR.guest4}/24`, 'dev', 'gv']);
    await must('ip', ['-n', p, 'addr', 'add', `${ADDR.peer4}/24`, 'dev', 'pv']);
    await must('ip', ['-n', g, '-6', 'route', 'add', 'fdaa::/16', 'via', ADDR.peer6]);
    await must('ip', ['-n', g, '-4', 'route', 'add', '198.51.100.0/24', 'via', ADDR.peer4]);
    if (lab.ctr) {
      const c = lab.ctr;
      await must('ip', ['netns', 'add', c]);
      await must('ip', ['-n', g, 'link', 'add', 'gc', 'type', 'veth', 'peer', 'name', 'cv', 'netns', c]);
      for (const [ns, dev] of [
        [g, 'gc'],
        [c, 'cv'],
        [c, 'lo'],
      ] as const)
        await must('ip', ['-n', ns, 'link', 'set', dev, 'up']);
      await must('ip', ['-n', g, 'addr', 'add', 'fd00:2::1/64', 'dev', 'gc', 'nodad']);
      await must('ip', ['-n', c, 'addr', 'add', `${ADDR.ctr6}/64`, 'dev', 'cv', 'nodad']);
      await must('ip', ['-n', g, 'addr', 'add', '198.18.0.1/24', 'dev', 'gc']);
      await must('ip', ['-n', c, 'addr', 'add', `${ADDR.ctr4}/24`, 'dev', 'cv']);
      await must('ip', ['-n', c, '-6', 'route', 'add', 'default', 'via', 'fd00:2::1']);
      await must('ip', ['-n', c, '-4', 'route', 'add', 'default', 'via', '198.18.0.1']);
      await must('ip', ['-n', p, '-6', 'route', 'add', 'fd00:2::/64', 'via', ADDR.guest6]);
      await must('ip', ['-n', p, '-4', 'route', 'add', '198.18.0.0/24', 'via', ADDR.guest4]);
      await must('ip', ['netns', 'exec', g, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.forwarding=1', 'net.ipv4.ip_forward=1']);
    }
    await lab.setPeerAddresses([ADDR.new6, ADDR.new4]);
    return lab;
  }

  /** Writes the config file; the lab's IPv4 targets are always allowed besides the default ULA range. */
  async writeConfig(settings: Record<string, unknown>): Promise<void> {
    await writeAtomically(this.paths.config, JSON.stringify({ allowedTargets: ['fc00::/7', '198.51.100.0/24'], ...settings }));
  }

  /** The peer "migrates": it has exactly these addresses (besides its link address) from now on. */
  async setPeerAddresses(addrs: string[]): Promise<void> {
    await must('ip', ['-n', this.peer, 'addr', 'flush', 'dev', 'lo', 'scope', 'global']);
    for (const a of addrs)
      await must('ip', [
        '-n',
        this.peer,
        'addr',
        'add',
        `${a}/${a.includes(':') ? 128 : 32}`,
        'dev',
        'lo',
        ...(a.includes(':') ? ['nodad'] : []),
      ]);
  }

  /** Starts the echo service on the peer and waits until it listens. */
  async startPeer(name = 'peer'): Promise<void> {
    const child = this.spawnIn(this.peer, process.execPath, [join(SUPPORT, 'echo-server.mjs'), name, String(PORT)]);
    await waitForOutput(child, /udp ready/, 5000);
  }

  exec(ns: string, cmd: string, args: string[], input?: string): Promise<ExecResult> {
    return execFile('ip', ['netns', 'exec', ns, cmd, ...args], input === undefined ? {} : { input });
  }

  env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    return {
      ADDRMAP_ENABLED: '1',
      ADDRMAP_CONFIG: this.paths.config,
      ADDRMAP_MAPPINGS: this.paths.mappings,
      ADDRMAP_STATE_DIR: this.paths.stateDir,
      ADDRMAP_CMDLINE_FILE: this.paths.cmdline,
      ...extra,
    };
  }

  /** Runs `addrmap ARGS` in the guest. */
  addrmap(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ExecResult> {
    return runWithEnv(['ip', 'netns', 'exec', this.guest, process.execPath, ADDRMAP, ...args], this.env(env));
  }

  /** Starts `addrmap watch` in the guest; resolves once it watches. nodeArgs: V8 flags, e.g. those the standalone executable embeds. */
  async watch(env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = []): Promise<AgentProcess> {
    const child = spawn('ip', ['netns', 'exec', this.guest, process.execPath, ...nodeArgs, ADDRMAP, 'watch'], {
      env: { ...process.env, ...this.env(env) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.children.push(child);
    const agent = new AgentProcess(child);
    await agent.waitFor((e) => e.event === 'watching', 10_000 * TIMEOUT_SCALE);
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
    const r6 = await execFile('ip', ['-n', this.guest, '-6', 'route', 'show', 'table', 'all']);
    const r4 = await execFile('ip', ['-n', this.guest, '-4', 'route', 'show', 'table', 'all']);
    return (r6.stdout + r4.stdout)
      .split('\n')
      .filter((l) => !l.includes('table local'))
      .join('\n');
  }

  async destroy(): Promise<void> {
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const ns of [this.guest, this.peer, this.ctr]) if (ns) await execFile('ip', ['netns', 'del', ns]);
    await rm(this.dir, { recursive: true, force: true });
  }

  private async probe(ns: string, args: string[]): Promise<ProbeResult> {
    const r = await this.exec(ns, process.execPath, [join(SUPPORT, 'probe.mjs'), ...args]);
    if (r.code !== 0) throw new Error(`probe failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as ProbeResult;
  }

  private spawnIn(ns: string, cmd: string, args: string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.push(child);
    return child;
  }
}

/** A running `addrmap watch`, with its JSON log lines. */
export class AgentProcess {
  readonly events: Record<string, unknown>[] = [];
  private waiters: { pred: (e: Record<string, unknown>) => boolean; resolve: (e: Record<string, unknown>) => void }[] = [];
  stderr = '';

  constructor(readonly child: ChildProcess) {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const e = JSON.parse(line) as Record<string, unknown>;
          this.events.push(e);
          this.waiters = this.waiters.filter((w) => (w.pred(e) ? (w.resolve(e), false) : true));
        } catch {
          /* not a log line */
        }
      }
    });
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
  }

  /** Resolves with the first event (past or future) matching pred. */
  waitFor(pred: (e: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new Error(`no matching log event within ${timeoutMs} ms; events: ${JSON.stringify(this.events)}; stderr: ${this.stderr}`)),
        timeoutMs * TIMEOUT_SCALE,
      );
      this.waiters.push({ pred, resolve: (e) => (clearTimeout(timer), resolve(e)) });
    });
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    const closed = new Promise<number | null>((r) => this.child.on('close', (code) => r(code)));
    this.child.kill(signal);
    return closed;
  }
}

export async function writeAtomically(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w', 0o644);
  await fh.writeFile(text);
  await fh.sync();
  await fh.close();
  await rename(tmp, path);
}

export function mappingFile(generation: number, mappings: [string, string][]) {
  return { version: 1, generation, mappings: mappings.map(([from, to]) => ({ from, to })) };
}

async function must(cmd: string, args: string[]): Promise<ExecResult> {
  const r = await execFile(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr.trim()}`);
  return r;
}

function runWithEnv(argv: string[], env: NodeJS.ProcessEnv): Promise<ExecResult> {
  return new Promise((res, rej) => {
    const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', rej);
    child.on('close', (code) => res({ code: code ?? 1, stdout, stderr }));
  });
}

function waitForOutput(child: ChildProcess, re: RegExp, timeoutMs: number, stream: 'stdout' | 'stderr' = 'stdout'): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(
      () => reject(new Error(`process did not print ${re} within ${timeoutMs * TIMEOUT_SCALE} ms: ${seen}`)),
      timeoutMs * TIMEOUT_SCALE,
    );
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
