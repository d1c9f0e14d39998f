// Guest tests: guest VMs played by containers (testcontainers) on an IPv6
// Docker network, with addrmap baked in from the packaged artifacts.
//
// A GuestLab owns one network and every container started through it; all of
// them carry a label with the lab's id, and destroy() removes them whatever
// state the test left them in. Labs left behind by a killed run are removed
// by the next one.
import './guest-env.js';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GenericContainer, Wait, type StartedTestContainer } from 'testcontainers';
import { beforeAll, beforeEach } from 'vitest';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const PORT = 7000;
const LABEL = 'addrmap-guest-test';

export interface GuestImages {
  base: string;
  init: string;
  deb: string;
  noinit: string;
  openrc: string;
  runit: string;
  /** The .deb image in the mode without a resident agent (addrmap-apply.path, addrmap-check.timer). */
  idle: string;
  /** FROM scratch: addrmap's tree and a static busybox in /opt/busybox, nothing else. */
  scratch: string;
  /** Another Debian release's base image (otherSuite) with the tarball. */
  other: string;
  otherSuite: string;
  artifacts: {
    dir: string;
    deb: string;
    tarball: string;
    /** Each architecture's tarball, by Node's name for it (x64, arm64). */
    tarballs: Record<string, string>;
    exe: string;
    sizes: Record<string, number>;
    installedBytes: number;
  };
  timings: { packaged: string; packageSecs: number; baseSecs: number; imagesSecs: number; totalSecs: number };
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a host command (argument vector, no shell). */
function host(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

export async function mustHost(cmd: string, args: string[]): Promise<string> {
  const r = await host(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/**
 * A guest test file's one-time setup. When it fails (no Docker, an image that
 * cannot be built), every test of the file fails with that error: none is
 * skipped.
 */
export function guestSetup(setup: () => Promise<void>, timeoutMs = 20 * 60_000): void {
  let failure: { error: unknown } | null = null;
  beforeAll(async () => {
    try {
      await setup();
    } catch (e) {
      failure = { error: e };
    }
  }, timeoutMs);
  beforeEach(() => {
    if (failure) throw failure.error;
  });
}

let prepared: Promise<GuestImages> | null = null;

/**
 * Docker running, artifacts packaged, guest images built (test/guest/prepare.mjs),
 * once per test process and one process at a time (flock), reusing every cache.
 * Fails, never skips, when Docker cannot be had.
 */
export function prepareGuestImages(): Promise<GuestImages> {
  prepared ??= (async () => {
    const lock = join(tmpdir(), 'addrmap-guest-prepare.lock');
    const r = await host('flock', [lock, process.execPath, join(ROOT, 'test/guest/prepare.mjs')]);
    if (r.code !== 0) throw new Error(`guest preparation failed (exit ${r.code}):\n${r.stderr}\n${r.stdout}`);
    const images = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as GuestImages;
    const t = images.timings;
    console.log(
      `guest images ready in ${t.totalSecs} s (artifacts ${t.packaged} in ${t.packageSecs} s, base images ${t.baseSecs} s, guest images ${t.imagesSecs} s)`,
    );
    return images;
  })();
  return prepared;
}

/** Never pull: every image is built on this machine. */
const NEVER_PULL = { shouldPull: () => 'never' as const };

/** Docker's host settings of a container (dockerode's HostConfig), as testcontainers types them. */
type HostConfig = GenericContainer['hostConfig'];

/** A container with a fixed IPv6 address on the lab network and extra host settings. */
class GuestContainer extends GenericContainer {
  constructor(image: string) {
    super(image);
    this.withPullPolicy(NEVER_PULL);
  }

  withAddress(network: string, ipv6: string): this {
    this.withNetworkMode(network);
    this.createOpts.NetworkingConfig = { EndpointsConfig: { [network]: { IPAMConfig: { IPv6Address: ipv6 } } } };
    return this;
  }

  withHostSettings(extra: Partial<HostConfig> & { CgroupnsMode?: 'private' | 'host' }): this {
    Object.assign(this.hostConfig, extra);
    return this;
  }
}

export interface GuestOptions {
  image: string;
  /** Last group of the guest's address on the lab network. */
  host: number;
  /** Files written into the container before it starts (owned by root). */
  files?: Record<string, string>;
  env?: Record<string, string>;
  entrypoint?: string[];
  command?: string[];
  /**
   * What the guest needs from the container runtime:
   *  'net'    CAP_NET_ADMIN only (what addrmap needs);
   *  'system' every capability this host can grant (Docker's --privileged is
   *           refused here because the host lacks CAP_SYS_RESOURCE), no
   *           seccomp filter, tmpfs /run and a private cgroup namespace: what
   *           systemd as PID 1 needs, and what mounting a stand-in
   *           /proc/cmdline needs.
   */
  privileges: 'net' | 'system';
}

export class GuestLab {
  private constructor(
    readonly id: string,
    readonly network: string,
    /** The lab network's IPv6 prefix, without the trailing "::". */
    readonly prefix: string,
  ) {}

  static async create(name: string): Promise<GuestLab> {
    await removeAbandonedLabs();
    const id = `${name}-${process.pid}-${randomBytes(3).toString('hex')}`;
    const r = randomBytes(7).toString('hex');
    const prefix = `fd${r.slice(0, 2)}:${r.slice(2, 6)}:${r.slice(6, 10)}:${r.slice(10, 14)}`;
    const network = `addrmap-${id}`;
    // testcontainers' Network has no IPv6 option: create it with the CLI.
    await mustHost('docker', [
      'network',
      'create',
      '--ipv6',
      '--subnet',
      `${prefix}::/64`,
      '--label',
      `${LABEL}=${id}`,
      '--label',
      `${LABEL}.pid=${process.pid}`,
      network,
    ]);
    return new GuestLab(id, network, prefix);
  }

  /**
   * An address outside the lab network (another /64, reached only through the
   * default route), like the address of a host the peer has left.
   */
  offNet(hostPart: number): string {
    const groups = this.prefix.split(':');
    groups[3] = (parseInt(groups[3]!, 16) ^ 1).toString(16);
    return canonical(`${groups.join(':')}::${hostPart.toString(16)}`);
  }

  /** An address on the lab network, in canonical form (as nft and addrmap print it). */
  addr(hostPart: number): string {
    return canonical(`${this.prefix}::${hostPart.toString(16)}`);
  }

  /**
   * A peer host: answers every TCP connection on PORT with "<name> <its address>".
   * `host` is the last group of its address; a migration is a new peer on a new one.
   */
  async peer(image: string, name: string, hostPart: number): Promise<StartedTestContainer> {
    return this.start(
      new GuestContainer(image)
        .withAddress(this.network, this.addr(hostPart))
        .withEnvironment({ PEER_NAME: name })
        .withCommand(['socat', '-d', '-d', `TCP6-LISTEN:${PORT},fork,reuseaddr`, 'SYSTEM:echo $PEER_NAME $SOCAT_SOCKADDR'])
        .withWaitStrategy(Wait.forLogMessage(/listening on/)),
      name,
    );
  }

  async guest(name: string, o: GuestOptions): Promise<StartedTestContainer> {
    // No ports: started is enough; the tests wait for what they need themselves.
    const c = new GuestContainer(o.image).withAddress(this.network, this.addr(o.host));
    if (o.env) c.withEnvironment(o.env);
    if (o.entrypoint) c.withEntrypoint(o.entrypoint);
    if (o.command) c.withCommand(o.command);
    if (o.files) c.withCopyContentToContainer(Object.entries(o.files).map(([target, content]) => ({ target, content, mode: 0o644 })));
    if (o.privileges === 'system') {
      c.withAddedCapabilities('ALL')
        .withDroppedCapabilities('SYS_RESOURCE')
        .withSecurityOpt('seccomp=unconfined', 'apparmor=unconfined')
        .withTmpFs({ '/run': 'rw,mode=755', '/run/lock': 'rw' })
        .withHostSettings({ CgroupnsMode: 'private' });
    } else {
      c.withAddedCapabilities('NET_ADMIN');
    }
    return this.start(c, name);
  }

  private async start(c: GuestContainer, name: string): Promise<StartedTestContainer> {
    c.withName(`${this.network}-${name}-${randomBytes(2).toString('hex')}`).withLabels({
      [LABEL]: this.id,
      [`${LABEL}.pid`]: String(process.pid),
    });
    return c.start();
  }

  /** Removes every container and the network of this lab, in whatever state they are. */
  async destroy(): Promise<void> {
    await removeLab(`${LABEL}=${this.id}`);
  }
}

async function removeLab(filter: string): Promise<void> {
  const ids = (await mustHost('docker', ['ps', '-aq', '--filter', `label=${filter}`])).split('\n').filter(Boolean);
  if (ids.length) await host('docker', ['rm', '-f', '-v', ...ids]);
  const nets = (await mustHost('docker', ['network', 'ls', '-q', '--filter', `label=${filter}`])).split('\n').filter(Boolean);
  if (nets.length) await mustHost('docker', ['network', 'rm', ...nets]);
}

/** Labs whose test process is gone (killed before it could clean up). */
async function removeAbandonedLabs(): Promise<void> {
  const out = await mustHost('docker', [
    'network',
    'ls',
    '--filter',
    `label=${LABEL}`,
    '--format',
    `{{.Label "${LABEL}"}} {{.Label "${LABEL}.pid"}}`,
  ]);
  for (const line of out.split('\n').filter(Boolean)) {
    const [id, pid] = line.split(' ');
    if (!id || !pid || alive(Number(pid))) continue;
    await removeLab(`${LABEL}=${id}`);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- inside a guest ----------------------------------------------------------------------

/** The container's state as Docker sees it. */
export async function containerState(c: StartedTestContainer): Promise<{ running: boolean; exitCode: number }> {
  const [running, exitCode] = (await mustHost('docker', ['inspect', '-f', '{{.State.Running}} {{.State.ExitCode}}', c.getId()]))
    .trim()
    .split(' ');
  return { running: running === 'true', exitCode: Number(exitCode) };
}

/** Runs a command in a container; never throws for a non-zero exit. */
export async function exec(c: StartedTestContainer, cmd: string[]): Promise<Run> {
  const r = await c.exec(cmd);
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr };
}

export async function mustExec(c: StartedTestContainer, cmd: string[]): Promise<string> {
  const r = await exec(c, cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(' ')} exited with ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

let pushes = 0;

/**
 * Writes a file the way the control plane pushes: the new content copied in
 * as a temporary file in the same directory, then renamed over the target.
 */
export async function pushFile(c: StartedTestContainer, path: string, content: string): Promise<void> {
  const dir = path.slice(0, path.lastIndexOf('/'));
  const tmp = `${dir}/.push-${process.pid}-${pushes++}.tmp`;
  await c.copyContentToContainer([{ content, target: tmp, mode: 0o644 }]);
  await mustExec(c, ['sync', tmp]);
  await mustExec(c, ['mv', '-f', '-T', tmp, path]);
}

export function mappingFile(generation: number, mappings: [string, string][]): string {
  return JSON.stringify({ version: 1, generation, mappings: mappings.map(([from, to]) => ({ from, to })) }, null, 2);
}

export const pushMappings = (c: StartedTestContainer, generation: number, mappings: [string, string][]) =>
  pushFile(c, '/etc/addrmap/mappings.json', mappingFile(generation, mappings));

/**
 * The inet addrmap table as `nft list table` prints it, without the per-element
 * counters (so a map element reads "stale : target"), or null when there is none.
 */
export async function addrmapTable(c: StartedTestContainer): Promise<string | null> {
  const r = await exec(c, ['nft', 'list', 'table', 'inet', 'addrmap']);
  return r.code === 0 ? r.stdout.replace(/ counter packets \d+ bytes \d+/g, '') : null;
}

export async function addrmapRoutes(c: StartedTestContainer): Promise<string> {
  return (
    (await mustExec(c, ['ip', '-6', 'route', 'show', 'table', 'all', 'proto', '173'])) +
    (await mustExec(c, ['ip', '-4', 'route', 'show', 'table', 'all', 'proto', '173']))
  );
}

export interface StatusJson {
  enabled: boolean;
  flagSource: string;
  generation: number | null;
  agent: { running: boolean; resident?: boolean; pid: number | null };
  health?: string;
}

/** `addrmap status --json` in the guest (its exit code tells health, not success). */
export async function status(c: StartedTestContainer): Promise<StatusJson> {
  const r = await exec(c, ['addrmap', 'status', '--json']);
  try {
    return JSON.parse(r.stdout) as StatusJson;
  } catch {
    throw new Error(`addrmap status --json printed ${JSON.stringify(r.stdout)} (exit ${r.code}, stderr ${r.stderr})`);
  }
}

/** Polls until check() returns a value (not undefined/false), or fails with what it saw last. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 10_000,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${timeoutMs} ms (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await sleep(everyMs);
  }
}

// ---- the test application's log (test/guest/fixtures/app) -------------------------------------

export interface AppEvent {
  t: number;
  pid: number;
  kind: 'start' | 'ok' | 'fail' | 'signal';
  /** ok: peer name; fail: error; signal: name. */
  text: string;
  /** ok: the address that answered, canonical. */
  address?: string;
}

export async function appLog(c: StartedTestContainer, path = '/var/log/app.log'): Promise<AppEvent[]> {
  const r = await exec(c, ['cat', path]);
  return r.code === 0 ? parseAppLog(r.stdout) : [];
}

export function parseAppLog(text: string): AppEvent[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [t, pid, kind, ...rest] = line.split(' ');
      const e: AppEvent = { t: Number(t), pid: Number(pid), kind: kind as AppEvent['kind'], text: rest.join(' ') };
      if (e.kind === 'ok') {
        const m = /^(\S+) \[?([0-9a-fA-F:.]+)\]?$/.exec(e.text);
        if (m) {
          e.text = m[1]!;
          e.address = canonical(m[2]!);
        }
      }
      return e;
    });
}

/** Events since the application's last start. */
export function sinceLastStart(events: AppEvent[]): AppEvent[] {
  const i = events.map((e) => e.kind).lastIndexOf('start');
  return i < 0 ? [] : events.slice(i);
}

/** One TCP connection from the guest (socat), answered by a peer with "<name> <address>". */
export async function connect(
  c: StartedTestContainer,
  address: string,
): Promise<{ ok: boolean; peer?: string; address?: string; error?: string }> {
  const r = await exec(c, ['socat', '-T', '2', `TCP:[${address}]:${PORT},connect-timeout=2`, '-']);
  if (r.code !== 0) return { ok: false, error: r.stderr.trim().split('\n').at(-1) };
  const m = /^(\S+) \[?([0-9a-fA-F:.]+)\]?$/.exec(r.stdout.trim());
  return m ? { ok: true, peer: m[1]!, address: canonical(m[2]!) } : { ok: false, error: `unexpected reply ${JSON.stringify(r.stdout)}` };
}

/** Waits for an ok from the named peer after time `after`; returns it. */
export function waitForPeer(c: StartedTestContainer, peer: string, after: number, timeoutMs = 10_000): Promise<AppEvent> {
  return eventually(
    `the application reaching ${peer}`,
    async () => (await appLog(c)).find((e) => e.t > after && e.kind === 'ok' && e.text === peer),
    timeoutMs,
  );
}

/** The canonical (RFC 5952) text of an IPv6 address, whatever form it came in. */
function canonical(address: string): string {
  if (!address.includes(':')) return address;
  const [head, tail] = address.includes('::') ? address.split('::') : [address, null];
  const h = head ? head.split(':') : [];
  const tl = tail === null ? [] : tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - tl.length).fill('0'), ...tl].map((g) => parseInt(g, 16));
  // Longest run of two or more zero groups becomes "::".
  let best = [-1, 0];
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best[1]! && j - i > 1) best = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best[0]! < 0) return hex.join(':');
  return `${hex.slice(0, best[0]).join(':')}::${hex.slice(best[0]! + best[1]!).join(':')}`;
}

// ---- systemd guests -------------------------------------------------------------------------

/** Waits until systemd (PID 1) has finished booting; fails listing the failed units if any. */
export async function systemdUp(c: StartedTestContainer, timeoutMs = 60_000): Promise<void> {
  const state = await eventually(
    'systemd finishing the boot',
    async () => {
      const s = (await exec(c, ['systemctl', 'is-system-running'])).stdout.trim();
      return (s === 'running' || s === 'degraded') && s;
    },
    timeoutMs,
    250,
  );
  if (state !== 'running') throw new Error(`systemd is ${state}: ${(await exec(c, ['systemctl', '--failed', '--no-pager'])).stdout}`);
}

/** Properties of a unit (systemctl show), as strings. */
export async function unitProps(c: StartedTestContainer, unit: string, props: string[]): Promise<Record<string, string>> {
  const out = await mustExec(c, ['systemctl', 'show', unit, ...props.map((p) => `--property=${p}`)]);
  const r: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) r[line.slice(0, i)] = line.slice(i + 1);
  }
  return r;
}
