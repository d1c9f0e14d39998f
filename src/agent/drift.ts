// Noticing when another tool changes addrmap's table: someone deletes it,
// flushes the whole ruleset, or edits the map. Two sources, both cheap:
//  - `nft -j monitor`, the kernel's own change notifications. addrmap's own
//    changes are announced too, so every transaction it runs is registered
//    first and its echoes are discounted; anything else touching the table
//    is drift.
//  - a periodic `nft -j list chains` (no set elements, so it stays cheap at
//    100k mappings), in case the monitor missed something or died.
// Either calls onDrift; the agent then re-reads the kernel and repairs.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { normalizeIp } from '../net/address.js';
import { dyingWithUs, recordChild } from '../kernel/child-guard.js';
import type { Logger } from './logger.js';
import { FULL_RULESET, type Ruleset } from '../kernel/ruleset.js';
import type { Chain, NftInfo, NftInterface, Table, TableListing, Transaction } from '../kernel/nft/index.js';

export interface DriftOptions {
  log: Logger;
  binary?: string;
  /** Period of the chain check. */
  checkIntervalMs?: number;
  /** The table's shape on this kernel (default: a kernel that accepts everything). */
  ruleset?: Ruleset;
  /** setpriv, to have the kernel kill the monitor with the agent (null: not in the image). */
  setpriv?: string | null;
  /** Where the monitor's pid is recorded, for the next agent to kill an orphan (when setpriv is missing). */
  stateDir?: string;
}

/** How long an expected echo of our own change may take to arrive. */
const ECHO_MS = 5000;
/** More time per element of a transaction: the monitor prints 100k echoes over seconds. */
const ECHO_MS_PER_ELEMENT = 0.1;
/**
 * A table rebuild's echoes are too many to match one by one; they are let
 * through for this long, and if anything arrived then, the table is verified
 * afterwards, so another tool's change in that window is still caught.
 */
const REBUILD_QUIET_MS = 200;
/**
 * A transaction with this many element changes runs with the monitor
 * stopped. The kernel queues a notification per element for every listener,
 * and a monitor slower than the commit (a small VM) lets the queue grow: 10k
 * mappings put 60 MB of kernel memory behind `nft monitor` in a 256 MB guest
 * and the OOM killer took the agent. The chains are checked once the monitor
 * listens again; a foreign element change in that second is repaired at the
 * next event or sync.
 */
const UNWATCHED_ELEMENTS = 1000;
/** How long a restarted monitor is given to subscribe before the verification reads the table. */
const MONITOR_START_MS = 1000;

/**
 * The fields of the object in an `nft -j monitor` event that drift reads
 * (libnftables-json(5)): a rule names its chain, everything else its own name.
 */
interface MonitoredObject {
  family?: string;
  table?: string;
  name?: string;
  chain?: string;
  elem?: { set?: unknown[] };
}

export class DriftDetector implements NftInterface {
  private expected = new Map<string, number[]>();
  private quietUntil = 0;
  private suppressed = false;
  private monitor: ChildProcess | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** At most one chain check at a time, and none while a transaction holds the kernel's lock. */
  private checking = false;
  private committing = 0;
  /** Whether the table should exist now (feature on and applied). */
  tableExpected = false;
  /** certain: a foreign change was seen; otherwise the table just needs a look. */
  private onDrift: (reason: string, certain: boolean) => void = () => {};

  constructor(
    private readonly inner: NftInterface,
    private readonly o: DriftOptions,
  ) {}

  async run(tx: Transaction): Promise<void> {
    const rebuild = tx.operations.some((op) => 'table' in op.object);
    if (rebuild) this.quietUntil = Infinity;
    // Element echoes are expected one by one, also a rebuild's: a time window
    // alone mistakes them for foreign changes whenever the event loop is busy
    // longer than the window (at 100k elements it was, after every start:
    // ~92k drift_detected lines and seconds of needless repairs). Expecting an
    // element we add lets nothing foreign through: another tool adding the
    // same element changes nothing, and any delete of it is not expected. The
    // table, chains and rules of a rebuild are covered by the quiet window and
    // the verification after it. Echoes of a large batch take longer to come.
    const keys = tx.operations.flatMap((op) =>
      'element' in op.object ? [`${op.verb} ${op.object.element.name} ${normalizeIp(op.object.element.key)}`] : [],
    );
    if (keys.length >= UNWATCHED_ELEMENTS && this.monitor) return this.runUnwatched(tx);
    const expires = Date.now() + ECHO_MS + keys.length * ECHO_MS_PER_ELEMENT;
    for (const k of keys) {
      const list = this.expected.get(k) ?? [];
      list.push(expires);
      this.expected.set(k, list);
    }
    this.committing++;
    try {
      await this.inner.run(tx);
    } catch (e) {
      // A failed transaction changed nothing and will send no echo.
      for (const k of keys) this.consume(k, expires);
      throw e;
    } finally {
      this.committing--;
      if (rebuild) {
        this.quietUntil = Date.now() + REBUILD_QUIET_MS;
        // A large rebuild's echoes keep arriving for seconds: each one keeps
        // the window open (handleEvent), and the verification waits for the end.
        const verifyWhenQuiet = () => {
          const wait = this.quietUntil - Date.now();
          if (wait > 0) return void setTimeout(verifyWhenQuiet, wait + 10).unref();
          if (!this.suppressed) return;
          this.suppressed = false;
          this.onDrift('verification after a table rebuild', false);
        };
        setTimeout(verifyWhenQuiet, REBUILD_QUIET_MS + 10).unref();
      }
    }
  }

  private async runUnwatched(tx: Transaction): Promise<void> {
    const monitor = this.monitor!;
    this.monitor = null; // its close is ours, not a crash to report
    const closed = new Promise<void>((r) =>
      monitor.exitCode !== null || monitor.signalCode !== null ? r() : monitor.once('close', () => r()),
    );
    monitor.kill('SIGTERM');
    await closed;
    this.committing++;
    try {
      await this.inner.run(tx);
    } finally {
      this.committing--;
      if (!this.stopped) {
        this.startMonitor();
        // Chains only: a whole-table read at this size costs the guest tens
        // of MB (nft and the agent both hold every element) just when the
        // restarted monitor loads its own copy.
        setTimeout(() => !this.stopped && void this.checkChains(), MONITOR_START_MS).unref();
      }
    }
  }

  get table(): Table {
    return this.inner.table;
  }
  ready(): Promise<NftInfo> {
    return this.inner.ready();
  }
  check(tx: Transaction): Promise<void> {
    return this.inner.check(tx);
  }
  list(): Promise<TableListing | null> {
    return this.inner.list();
  }
  listChains(): Promise<Chain[]> {
    return this.inner.listChains();
  }

  setOnDrift(fn: (reason: string, certain: boolean) => void): void {
    this.onDrift = fn;
  }

  start(): void {
    this.stopped = false;
    this.startMonitor();
    this.timer = setInterval(() => void this.checkChains(), this.o.checkIntervalMs ?? 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.monitor?.kill('SIGTERM');
  }

  /** Handles one line of `nft -j monitor`; exported for tests. */
  handleEvent(line: string): void {
    let ev: unknown;
    try {
      ev = JSON.parse(line);
    } catch {
      return;
    }
    // Shapes other than {verb: {kind: {...}}} are not ruleset changes.
    const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (!isObj(ev)) return;
    const verb = Object.keys(ev)[0];
    const body = verb === undefined ? undefined : ev[verb];
    if (!verb || !isObj(body)) return;
    const kind = Object.keys(body)[0];
    const raw = kind === undefined ? undefined : body[kind];
    if (!kind || !isObj(raw)) return;
    const obj = raw as MonitoredObject;
    const table = kind === 'table' ? obj.name : obj.table;
    if (table !== this.table.name || obj.family !== this.table.family) return;
    const foreign =
      kind === 'element' ? (obj.elem?.set ?? []).map(elementKey).filter((key) => !this.consume(`${verb} ${obj.name} ${key}`)) : null;
    if (foreign?.length === 0) return; // our own element echoes
    if (Date.now() < this.quietUntil) {
      this.suppressed = true;
      this.quietUntil = Math.max(this.quietUntil, Date.now() + REBUILD_QUIET_MS);
      return;
    }
    if (foreign) {
      this.onDrift(
        `${verb} element ${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', …' : ''} in map ${obj.name} by another tool`,
        true,
      );
      return;
    }
    this.onDrift(
      `${verb} ${kind} ${kind === 'rule' ? `in chain ${obj.chain}` : (obj.name ?? '')} by another tool`.replace(/ +/g, ' '),
      true,
    );
  }

  /** Uses up one expected echo of key (the one registered with `exact` expiry, if given). */
  private consume(key: string, exact?: number): boolean {
    const list = this.expected.get(key);
    const now = Date.now();
    while (list?.length && list[0]! < now) list.shift();
    const i = exact === undefined ? 0 : (list?.lastIndexOf(exact) ?? -1);
    if (!list?.length || i < 0) {
      if (!list?.length) this.expected.delete(key);
      return false;
    }
    list.splice(i, 1);
    if (!list.length) this.expected.delete(key);
    return true;
  }

  private startMonitor(): void {
    const argv = dyingWithUs(this.o.setpriv ?? null, [this.o.binary ?? 'nft', '-j', 'monitor']);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.monitor = child;
    let restarting = false;
    // Events may have been lost: restart, and have the kernel checked. Also
    // when the spawn itself failed (out of descriptors), which closes nothing.
    const restart = (why: Record<string, unknown>) => {
      if (restarting || this.stopped || this.monitor !== child) return;
      restarting = true;
      this.o.log.warn({ event: 'monitor_restart', ...why }, 'nft monitor exited; restarting');
      setTimeout(() => {
        if (this.stopped) return;
        this.startMonitor();
        this.onDrift('nft monitor restarted', false);
      }, 1000).unref();
    };
    child.on('error', (e) => {
      this.o.log.warn({ event: 'monitor_error', reason: e.message }, 'nft monitor failed');
      if (child.pid === undefined) restart({ reason: e.message });
    });
    child.on('close', (code) => restart({ code }));
    if (!child.stdout || !child.stderr) return;
    if (!this.o.setpriv && this.o.stateDir && child.pid) {
      void recordChild(this.o.stateDir, child.pid, argv).catch((e: Error) =>
        this.o.log.warn({ event: 'state_write_failed', reason: e.message }, 'cannot record the monitor'),
      );
    }
    createInterface({ input: child.stdout }).on('line', (l) => this.handleEvent(l));
    child.stderr.resume();
  }

  /** Exported for tests. */
  async checkChains(): Promise<void> {
    // A check that falls due while the previous one still runs, or while a
    // large transaction holds the kernel's lock, is skipped: queued behind
    // the lock, checks piled up (26 nft processes in a 256 MB VM) and their
    // kernel memory brought in the OOM killer.
    if (!this.tableExpected || this.checking || this.committing > 0) return;
    this.checking = true;
    let chains: Chain[];
    try {
      chains = await this.inner.listChains();
    } catch {
      return; // a transient nft failure is not drift
    } finally {
      this.checking = false;
    }
    const missing = (this.o.ruleset ?? FULL_RULESET).chains.filter(
      (want) => !chains.some((c) => c.name === want.name && c.hook === want.hook && c.prio === want.prio),
    );
    if (missing.length) this.onDrift(`chain ${missing.map((c) => c.name).join(', ')} missing or changed`, true);
  }
}

function elementKey(item: unknown): string {
  const key: unknown = Array.isArray(item) ? item[0] : item;
  const val = typeof key === 'object' && key !== null && 'elem' in key ? (key as { elem: { val: unknown } }).elem.val : key;
  try {
    return normalizeIp(String(val));
  } catch {
    return String(val);
  }
}
