// The daemon loop: one pass once watching, then a pass whenever the mapping
// file or the config file changes, and a repair whenever another tool changes
// addrmap's table. Passes never overlap; events that arrive during a pass are
// coalesced into one more pass, which reads the file as it is then, so a
// burst of pushes costs at most two passes and ends on the last file.
import { stat } from 'node:fs/promises';
import { watch as chokidarWatch, type FSWatcher } from 'chokidar';
import type { Agent, PassResult } from './agent.js';
import type { DriftDetector, DriftReport } from './drift.js';
import type { Logger } from './logger.js';
import type { LocalAddresses } from '../net/local-addresses.js';

export interface Watcher {
  /** Resolves when the watcher has stopped. */
  done: Promise<void>;
  stop(): Promise<void>;
  /** Requests a pass (e.g. on SIGHUP). */
  trigger(reason: string): void;
  /** Requests a pass and resolves with its result (an `apply` handed over to this agent). */
  requestPass(reason: string): Promise<PassResult>;
}

export interface WatchOptions {
  files: string[];
  log: Logger;
  drift?: DriftDetector;
  /** Period of the fallback check of the files' identity (inode, size, times). */
  pollMs?: number;
  /** Called after every pass or repair (metrics, timers). */
  afterPass?: () => Promise<void>;
  /** Delay before a pass is retried after one that left warnings. */
  retryMs?: number;
  /** The guest's own addresses: a change (DHCP, router advertisement) gets a pass, which re-checks self-capture. */
  localAddresses?: () => Promise<LocalAddresses>;
}

/**
 * The fallback check of the watched files' identity, for changes inotify
 * missed (the file's directory replaced). Not faster: each check wakes the
 * process and a libuv thread (about 0.4 ms of CPU), and idle cost matters in
 * every guest more than a push's delay in that rare case.
 */
const FALLBACK_POLL_MS = 5000;

export async function startWatching(agent: Agent, o: WatchOptions): Promise<Watcher> {
  const { log, drift } = o;
  let running = false;
  let again = false;
  // Identity (inode, size, times) of each watched file as last read: the
  // poll below triggers only on a change no pass has seen.
  const identities = new Map<string, string>();
  const identity = async (f: string) =>
    stat(f).then(
      (s) => `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`,
      () => 'absent',
    );
  let repairReason: string | null = null;
  let repairing = false;
  let expireDue = false;
  let expiryTimer: NodeJS.Timeout | null = null;
  // Re-armed after every pass: the applied file decides when the next mapping expires.
  const armExpiry = () => {
    if (expiryTimer) clearTimeout(expiryTimer);
    expiryTimer = null;
    const at = agent.nextExpiry;
    if (at === null || stopped) return;
    // setTimeout holds at most ~24.8 days; a longer wait is taken in steps.
    const delay = Math.min(Math.max(0, at - Date.now()) + 5, 2 ** 31 - 1);
    expiryTimer = setTimeout(() => {
      if (Date.now() < at) return armExpiry();
      expireDue = true;
      schedule();
    }, delay);
    expiryTimer.unref();
  };
  let stopped = false;
  let idle: Promise<void> = Promise.resolve();
  const passWaiters: ((r: PassResult) => void)[] = [];

  const runPasses = async () => {
    running = true;
    try {
      do {
        const doPass = again || (repairReason === null && !expireDue);
        again = false;
        try {
          if (repairReason !== null) {
            const reason = repairReason;
            repairReason = null;
            repairing = true;
            await agent.repair(reason).finally(() => (repairing = false));
          }
          if (expireDue) {
            expireDue = false;
            await agent.expire();
          }
          if (doPass) {
            // Only a pass that starts after a request answers it.
            const answering = passWaiters.splice(0);
            // The file as this pass reads it: the poll must not report it again.
            for (const f of o.files) identities.set(f, await identity(f));
            const r = await agent.pass().catch((e: Error) => {
              for (const w of answering) w({ outcome: 'failed', flag: { enabled: false, source: 'default' }, message: e.message });
              throw e;
            });
            for (const w of answering) w(r);
            // Degraded (e.g. a target with no route yet, because the network
            // came up after addrmap): try again soon rather than wait for a push.
            // Not for what no retry fixes (a mapping of the guest's own address).
            // A failed pass (out of descriptors, nft failing) is retried too,
            // backing off while it keeps failing.
            failures = r.outcome === 'failed' ? failures + 1 : 0;
            if (failures || (r.sync?.warnings.length ?? 0) > (r.sync?.lasting ?? 0)) scheduleRetry();
          }
        } catch (e) {
          failures++;
          log.error({ event: 'pass_error', reason: (e as Error).message }, 'unexpected error; will retry');
          scheduleRetry();
        }
        if (drift) drift.tableExpected = agent.holdsState;
        armExpiry();
        await o.afterPass?.().catch((e: Error) => log.warn({ event: 'after_pass_failed', reason: e.message }, 'after-pass hook failed'));
      } while ((again || repairReason !== null || expireDue) && !stopped);
    } finally {
      running = false;
    }
  };

  let retryTimer: NodeJS.Timeout | null = null;
  let failures = 0;
  const scheduleRetry = () => {
    if (retryTimer || stopped) return;
    const base = o.retryMs ?? 5000;
    retryTimer = setTimeout(
      () => {
        retryTimer = null;
        trigger(failures ? 'retry after a failed pass' : 'retry while degraded');
      },
      Math.min(base * 2 ** Math.max(0, failures - 1), 12 * base),
    );
    retryTimer.unref();
  };
  const schedule = () => {
    if (!running) idle = runPasses();
  };
  const trigger = (reason: string) => {
    if (stopped) return;
    log.debug({ event: 'trigger', reason }, 'change detected');
    again = true;
    schedule();
  };
  // One incident, one line: while a repair is pending or running, more
  // changes join it (one running gets one more look after it, unlogged).
  const repair = ({ reason, certain, pid, comm }: DriftReport) => {
    if (stopped) return;
    const joining = repairReason !== null || repairing;
    if (certain && !joining) {
      // byPid, byName: the log's own pid is the agent's.
      log.info({ event: 'drift_detected', drift: reason, byPid: pid, byName: comm }, `kernel state changed: ${reason}`);
    }
    repairReason ??= reason;
    schedule();
  };

  // atomic: a rename over the file shows up as a change, not unlink + add.
  const watcher: FSWatcher = chokidarWatch(o.files, { ignoreInitial: true, atomic: true, persistent: true });
  watcher.on('add', (p) => trigger(`added ${p}`));
  watcher.on('change', (p) => trigger(`changed ${p}`));
  watcher.on('unlink', (p) => trigger(`removed ${p}`));
  watcher.on('error', (e) => log.error({ event: 'watch_error', reason: String(e) }, 'file watcher error'));
  await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));

  // File events can be lost, e.g. when the directory holding the file is
  // replaced; a cheap identity check catches what the watcher missed.
  for (const f of o.files) identities.set(f, await identity(f));
  const localKey = async () =>
    o.localAddresses
      ? o.localAddresses().then(
          (l) => [...l.v4, ...l.v6].sort().join(' '),
          () => '',
        )
      : '';
  let locals = await localKey();
  const addressesChanged = async () => {
    const now = await localKey();
    if (now !== locals) {
      locals = now;
      trigger('the guest’s addresses changed');
    }
  };
  // The kernel says when addresses change; polling /proc for them (0.4 ms a
  // read here) is only for when its notifications are not heard.
  const notified = drift?.setOnAddressChange(() => void addressesChanged()) ?? false;
  const pollChanges = async () => {
    for (const f of o.files) {
      const id = await identity(f);
      if (identities.get(f) !== id) {
        identities.set(f, id);
        trigger(`poll: ${f} changed`);
      }
    }
    if (!notified) await addressesChanged();
  };
  const poll = setInterval(() => void pollChanges(), o.pollMs ?? FALLBACK_POLL_MS);
  poll.unref();

  drift?.setOnDrift(repair);
  log.info({ event: 'watching', files: o.files }, 'watching for pushes');
  // The first pass starts only once the watcher is ready, so a push landing
  // during start-up is never missed.
  trigger('start');
  await idle;

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  return {
    done,
    trigger,
    requestPass(reason: string) {
      return new Promise<PassResult>((resolve) => {
        passWaiters.push(resolve);
        trigger(reason);
      });
    },
    async stop() {
      stopped = true;
      clearInterval(poll);
      if (expiryTimer) clearTimeout(expiryTimer);
      if (retryTimer) clearTimeout(retryTimer);
      await drift?.stop();
      await watcher.close();
      await idle;
      resolveDone();
    },
  };
}
