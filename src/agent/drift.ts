// Noticing when another tool changes addrmap's table: someone deletes it,
// flushes the whole ruleset, or edits a map, a chain or a rule. The kernel
// announces every committed transaction (nft-events.ts): its changes, then
// the generation with the task that committed it. A transaction committed by
// a thread of this process (libnftables runs on libuv's worker threads) or by
// an nft it started is addrmap's own; any other touching the table is drift,
// reported once per transaction with the other process's pid and name.
// When notifications were lost, nothing is known, so the table is verified.
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import type { Logger } from './logger.js';
import { NftEventSocket, type EventHandlers } from '../kernel/netlink/nft-events.js';
import type { Generation, ObjectEvent } from '../kernel/netlink/nft-notifications.js';
import type { Chain, NftInfo, NftInterface, Table, TableListing, Transaction } from '../kernel/nft/index.js';

export interface DriftReport {
  /** What changed, and who changed it, for the log. */
  reason: string;
  /** true: another tool changed the table; false: it only needs a look (events lost, a commit that may be ours). */
  certain: boolean;
  pid?: number;
  comm?: string;
}

interface Subscription {
  close(): Promise<void>;
  /** Whether it also hears the guest's address changes. */
  readonly hearsAddresses?: boolean;
  readonly receiveBuffer: number;
}

export interface DriftOptions {
  log: Logger;
  /** Where notifications come from (tests hand in their own). */
  subscribe?: (table: Table, on: EventHandlers) => Subscription;
  /** Whether a notification's pid can be looked up in /proc (default: this process runs in the initial pid namespace). */
  pidsVisible?: boolean;
  /** Whether pid is a thread of this process or a process it started (default: read from /proc). */
  isOwnTask?: (pid: number) => boolean;
  /** Whether pid is still there to look at (default: read from /proc). */
  taskExists?: (pid: number) => boolean;
}

/** The initial pid namespace's inode (PROC_PID_INIT_INO): the kernel names tasks by their pids there. */
const INITIAL_PID_NS = 'pid:[4026531836]';
/** How long a failed subscription waits before it is tried again. */
const RESUBSCRIBE_MS = 1000;

export class DriftDetector implements NftInterface {
  private sub: Subscription | null = null;
  private stopped = false;
  private retry: NodeJS.Timeout | null = null;
  /** Transactions of ours in flight. */
  private committing = 0;
  /** A commit of ours began and its generation has not been seen: lost events may be its. */
  private ownUnseen = false;
  private readonly pidsVisible: boolean;
  private expected = false;
  /**
   * A change or a loss heard while no table was expected yet. The watcher
   * says a table is expected only after the pass that made it has returned,
   * and notifications can be read in between (an agent stopped and continued
   * right there): such a report is kept and checked once the table is expected.
   */
  private missed: string | null = null;
  private onDrift: (r: DriftReport) => void = () => {};
  private onAddresses: (() => void) | null = null;

  constructor(
    private readonly inner: NftInterface,
    private readonly o: DriftOptions,
  ) {
    this.pidsVisible = o.pidsVisible ?? inInitialPidNamespace();
  }

  async run(tx: Transaction): Promise<void> {
    if (tx.size === 0) return this.inner.run(tx); // commits nothing, announces nothing
    this.committing++;
    this.ownUnseen = true;
    try {
      await this.inner.run(tx);
    } finally {
      this.committing--;
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

  /** Whether the table should exist now (feature on and applied). */
  get tableExpected(): boolean {
    return this.expected;
  }

  set tableExpected(v: boolean) {
    this.expected = v;
    if (!v) this.missed = null;
    else if (this.missed !== null) {
      const reason = this.missed;
      this.missed = null;
      this.onDrift({ reason, certain: false });
    }
  }

  setOnDrift(fn: (r: DriftReport) => void): void {
    this.onDrift = fn;
  }

  /**
   * Called when the guest's addresses change, from the kernel's rtnetlink
   * notifications heard by the same subscription (so the watcher need not
   * poll for them). True when such notifications are heard here.
   */
  setOnAddressChange(fn: () => void): boolean {
    this.onAddresses = fn;
    return this.sub?.hearsAddresses === true;
  }

  /** Subscribes to the kernel's notifications; throws, saying why, when it cannot. Before the first pass, so it is seen too. */
  subscribe(): void {
    this.stopped = false;
    const open = this.o.subscribe ?? ((table, on) => NftEventSocket.open(table, on));
    this.sub = open(this.table, {
      generation: (g) => this.generation(g),
      lost: (why, fatal) => this.lost(why, fatal),
      addresses: () => this.onAddresses?.(),
    });
    this.o.log.debug({ event: 'drift_subscribed', receiveBuffer: this.sub.receiveBuffer }, 'listening to nf_tables notifications');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    const sub = this.sub;
    this.sub = null;
    await sub?.close();
  }

  /** One committed transaction that touched the table. */
  private generation(g: Generation): void {
    const who = whoOf(g);
    const owner = this.ownerOf(g);
    if (owner === 'ours') {
      this.ownUnseen = false;
      return;
    }
    if (!this.expected) {
      this.missed ??= `${describe(g)}${who} before the table was in place`;
      return;
    }
    if (owner === 'unsure') {
      // Committed while one of ours was in flight, by a task that cannot be
      // looked up (an nft of ours already reaped, or pids from another pid
      // namespace): a look at the table settles it, and repairs what is not ours.
      this.onDrift({ reason: `${describe(g)}${who} while addrmap committed`, certain: false });
      return;
    }
    const r: DriftReport = { reason: `${describe(g)}${who}`, certain: true };
    if (g.pid !== undefined) r.pid = g.pid;
    if (g.comm !== undefined) r.comm = g.comm;
    this.onDrift(r);
  }

  private ownerOf(g: Generation): 'ours' | 'foreign' | 'unsure' {
    if (g.pid === undefined || !this.pidsVisible) return this.committing ? 'unsure' : 'foreign';
    if ((this.o.isOwnTask ?? isOwnTask)(g.pid)) return 'ours';
    return this.committing && !(this.o.taskExists ?? taskExists)(g.pid) ? 'unsure' : 'foreign';
  }

  private lost(why: string, fatal: boolean): void {
    if (this.stopped) return;
    const ownCommit = this.ownUnseen;
    this.o.log[ownCommit ? 'info' : 'warn'](
      { event: 'events_lost', reason: why, ownCommit },
      `kernel change notifications were lost (${why}); verifying the table`,
    );
    if (fatal) this.resubscribe();
    if (this.expected) this.onDrift({ reason: `notifications lost (${why})`, certain: false });
    else this.missed ??= `notifications lost (${why})`;
  }

  private resubscribe(): void {
    this.sub = null;
    try {
      if (!this.stopped) this.subscribe();
    } catch (e) {
      this.o.log.error({ event: 'events_lost', reason: (e as Error).message }, 'cannot subscribe again; retrying');
      this.retry = setTimeout(() => {
        this.retry = null;
        this.resubscribe();
        if (this.sub && this.tableExpected) this.onDrift({ reason: 'subscribed again', certain: false });
      }, RESUBSCRIBE_MS);
      this.retry.unref();
    }
  }
}

function inInitialPidNamespace(): boolean {
  try {
    return readlinkSync('/proc/self/ns/pid') === INITIAL_PID_NS;
  } catch {
    return false;
  }
}

/** A thread of this process (libnftables on a worker), or a process it started (nft) that is still there. */
function isOwnTask(pid: number): boolean {
  if (existsSync(`/proc/self/task/${pid}`)) return true;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid;
  } catch {
    return false;
  }
}

const taskExists = (pid: number): boolean => existsSync(`/proc/${pid}`);

const whoOf = (g: Generation): string => (g.pid === undefined ? '' : ` by ${g.comm ?? 'an unnamed task'} (pid ${g.pid})`);

/** "delete table inet addrmap (32 changes)", "delete element fdaa::1 in dnat6", ... at most three, then how many more. */
function describe(g: Generation): string {
  const one = (e: ObjectEvent) => {
    const verb = e.verb === 'new' ? 'add' : 'delete';
    if (e.object === 'table') return `${verb} table ${e.family} ${e.table}`;
    if (e.object === 'element') return `${verb} element ${e.key ?? ''} in ${e.name ?? '?'}`.replace('  ', ' ');
    if (e.object === 'rule') return `${verb} rule in chain ${e.name ?? '?'}`;
    return `${verb} ${e.object} ${e.name ?? ''}`.trim();
  };
  const table = g.sample[0]?.object === 'table' ? g.sample[0] : undefined;
  // A whole table gone or made says it all; its rules, chains and sets went with it.
  if (table) return `${one(table)}${g.changes > 1 ? ` (${g.changes} changes)` : ''}`;
  const more = g.changes - g.sample.length;
  return g.sample.map(one).join(', ') + (more > 0 ? ` and ${more} more` : '');
}
