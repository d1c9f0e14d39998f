// `addrmap apply` and `addrmap watch`: the real components wired together.
// apply makes one pass (or hands it to the running agent); watch starts the
// daemon: the lock, the kernel checks, the drift subscription, the first
// pass, then the file watcher, telemetry and the query socket.
import { Agent } from '../agent/agent.js';
import { AgentLock, ask } from '../agent/agent-lock.js';
import { DriftDetector } from '../agent/drift.js';
import { createLogger } from '../agent/logger.js';
import { QuerySocket } from '../agent/query-socket.js';
import { recordStartFailure } from '../agent/start-failure.js';
import { Telemetry } from '../agent/telemetry.js';
import { UsageTracker } from '../agent/usage.js';
import { startWatching } from '../agent/watch.js';
import type { Paths } from '../input/settings.js';
import { ConntrackCleanup } from '../kernel/conntrack-cleanup.js';
import { probeKernel } from '../kernel/kernel-caps.js';
import { conntrackTable } from '../kernel/netlink/ctnetlink.js';
import { LibNft } from '../kernel/nft/index.js';
import { Reconciler } from '../kernel/reconciler.js';
import { NetlinkRoutes } from '../kernel/routes.js';
import { missingCapabilities, TABLE, type Ruleset } from '../kernel/ruleset.js';
import { NetlinkSelfAddresses } from '../kernel/self-addresses.js';
import { readLocalAddresses } from '../net/local-addresses.js';
import { prepareStateDir } from '../state/state-file.js';
import { explainAt } from '../support/explain.js';
import { listFlows } from '../support/flows.js';
import { printableText } from '../support/printable.js';
import { collectStatus } from '../support/status.js';

/** Exit codes of apply and watch (README: Commands). */
export const EXIT = { ok: 0, failed: 1, usage: 2, refused: 3, cannotStart: 4 } as const;

export async function runAgent(command: 'apply' | 'watch', paths: Paths, acceptLower = false): Promise<number> {
  const log = createLogger();
  // One agent per table. apply hands its pass to a running agent, which would
  // otherwise undo what apply changed behind it.
  let lock: AgentLock | null = null;
  if (command === 'apply') {
    const running = await ask(
      paths.stateDir,
      { request: 'pass', ...(acceptLower ? { acceptLowerGeneration: true } : {}) },
      10 * 60_000,
    ).catch(() => null);
    if (running) return handedOver(running, log);
  } else {
    // A state directory that cannot hold the socket (read-only, full) costs
    // the lock, not the agent.
    const got = await AgentLock.acquire(paths.stateDir).catch((e: Error) => {
      log.warn({ event: 'lock_unavailable', reason: e.message }, 'cannot take the agent lock; running without it');
      return null;
    });
    if (got && !(got instanceof AgentLock)) {
      log.fatal({ event: 'already_running', pid: got.heldBy }, 'another agent watches this table');
      process.stderr.write(`addrmap: another agent (pid ${got.heldBy}) already watches this table (state directory ${paths.stateDir})\n`);
      return EXIT.failed;
    }
    lock = got;
  }
  const nft = new LibNft(TABLE);
  let ruleset: Ruleset;
  // The daemon sees the kernel through the drift detector, which tells
  // addrmap's own transactions from other tools' by the kernel's notifications.
  let drift: DriftDetector | null = null;
  try {
    // Run together; a missing or unusable nft is the error to report first.
    const [checked, probed] = await Promise.allSettled([nft.ready(), probeKernel((tx) => nft.check(tx))]);
    if (checked.status === 'rejected') throw checked.reason;
    if (probed.status === 'rejected') throw probed.reason;
    ruleset = probed.value.ruleset;
    log.debug(
      { event: 'nft', version: checked.value.version, kernel: ruleset.caps, rejected: probed.value.rejected },
      'nft is usable and the kernel accepts the table',
    );
    const missing = missingCapabilities(ruleset.caps);
    if (missing.length)
      log.warn(
        { event: 'kernel_capabilities', kernel: ruleset.caps, missing },
        `the running kernel lacks part of addrmap's table: ${missing.join('; ')}`,
      );
    // Subscribed before the first pass; without it no repair would follow drift.
    if (command === 'watch') {
      drift = new DriftDetector(nft, { log });
      drift.subscribe();
    }
  } catch (e) {
    // Not retried by init (exit 4): the kernel and nft do not change while
    // the guest runs, and a restart loop would only repeat this line.
    const reason = (e as Error).message;
    log.fatal({ event: 'cannot_start', reason }, 'cannot start');
    process.stderr.write(`addrmap: ${reason}\n`);
    await recordStartFailure(paths, command, reason, process.env).catch(() => {}); // logged and printed above already
    if (command === 'watch' && process.env.ADDRMAP_HOLD_ON_FAILURE === '1') await holdUntilStopped(log);
    return EXIT.cannotStart;
  }
  const table = conntrackTable();
  const cleanup = new ConntrackCleanup(
    () => table,
    (o) => {
      if (o.warning)
        log.warn(
          { event: 'conntrack_cleanup_incomplete', targets: o.targets, removed: o.removed, durationMs: o.durationMs, reason: o.warning },
          o.warning,
        );
      else
        log.info(
          { event: 'conntrack_cleaned', targets: o.targets, removed: o.removed, durationMs: o.durationMs, via: table.via },
          `conntrack: ${o.removed} stale flows removed`,
        );
    },
  );
  const reconciler = new Reconciler({
    nft: drift ?? nft,
    routes: new NetlinkRoutes(),
    conntrack: cleanup,
    selfAddresses: new NetlinkSelfAddresses(paths.stateDir),
    ruleset,
    localAddresses: () => readLocalAddresses(),
  });
  const agent = new Agent({ paths, env: process.env, reconciler, log, daemon: command === 'watch', ruleset });
  // Before anything is read from it: repaired if ours but writable by others,
  // refused (the agent then works without state) if a symlink or someone else's.
  await prepareStateDir(paths.stateDir).catch((e: Error) =>
    log.error({ event: 'state_dir_untrusted', reason: e.message }, 'state directory not used'),
  );
  await agent.init();

  if (command === 'apply') {
    if (acceptLower) agent.acceptLowerGenerationOnce();
    const r = await agent.pass();
    // The mappings are in effect already; the flows they fix are waited for
    // so that apply returns with the guest's connections working.
    await cleanup.settled();
    if (r.outcome === 'refused' || r.outcome === 'failed')
      process.stderr.write(`addrmap: ${r.outcome}: ${printableText(r.message ?? '')}\n`);
    return r.outcome === 'refused' ? EXIT.refused : r.outcome === 'failed' ? EXIT.failed : EXIT.ok;
  }

  // Counter samples and status queries list the whole table: in a context
  // of their own, so that a push never waits behind one.
  const listings = new LibNft(TABLE, { context: 'listings' });
  const telemetry = new Telemetry(agent, new UsageTracker(listings), paths.stateDir, log, () => listFlows(agent.appliedPairs(), table));
  await telemetry.start();
  // Read-only questions from anyone (status, explain without root), answered
  // live; only while this agent holds the lock, so the socket is its own.
  const queries = lock
    ? await QuerySocket.open(paths.stateDir, {
        status: () =>
          collectStatus({
            stateDir: paths.stateDir,
            nft: listings,
            conntrack: table,
            retireAfterSeconds: agent.config?.retireAfterSeconds,
          }),
        explain: (address) => explainAt(address, paths.stateDir, listings),
      }).catch((e: Error) => {
        log.warn(
          { event: 'query_socket_failed', reason: e.message },
          'cannot serve status queries; status without root reads the state files',
        );
        return null;
      })
    : null;
  // Signals are handled from here on, before the first pass: a SIGHUP's
  // default action is to end the process, and the first pass (and whatever
  // arrives during it) runs before startWatching returns.
  let watcher: Awaited<ReturnType<typeof startWatching>> | null = null;
  let stopAsked: string | null = null;
  let passAsked = false;
  const stop = (signal: string) => {
    log.info({ event: 'stopping', signal }, 'stopping; kernel state left in place for the next start');
    if (watcher) void watcher.stop();
    else stopAsked = signal;
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => (watcher ? watcher.trigger('SIGHUP') : (passAsked = true)));
  watcher = await startWatching(agent, {
    files: [paths.mappings, paths.config],
    log,
    drift: drift!,
    afterPass: () => telemetry.afterPass(),
    localAddresses: () => readLocalAddresses(),
  });
  if (stopAsked) void watcher.stop();
  else if (passAsked) watcher.trigger('SIGHUP');
  const running = watcher;
  lock?.handlePasses((req) => {
    if (req.acceptLowerGeneration) agent.acceptLowerGenerationOnce();
    return running.requestPass('addrmap apply');
  });
  await running.done;
  await queries?.close();
  await lock?.close();
  await telemetry.stop();
  await agent.stopped();
  return EXIT.ok;
}

/** The running agent did apply's pass: its outcome, as apply would report it. */
function handedOver(r: { pid: number; outcome?: string; message?: string }, log: ReturnType<typeof createLogger>): number {
  log.info({ event: 'handed_over', pid: r.pid, outcome: r.outcome }, `the running agent (pid ${r.pid}) made the pass: ${r.outcome}`);
  if (r.outcome === 'refused' || r.outcome === 'failed')
    process.stderr.write(`addrmap: ${r.outcome} (by the running agent, pid ${r.pid}): ${printableText(r.message ?? '')}\n`);
  return r.outcome === 'refused' ? EXIT.refused : r.outcome === 'failed' ? EXIT.failed : EXIT.ok;
}

/**
 * For supervisors that restart a service whatever its exit status (OpenRC's
 * supervise-daemon, runit, s6): a watcher that cannot start waits, idle,
 * until it is stopped, instead of exiting into a restart loop.
 */
function holdUntilStopped(log: ReturnType<typeof createLogger>): Promise<void> {
  log.info({ event: 'holding' }, 'cannot start; waiting to be stopped (ADDRMAP_HOLD_ON_FAILURE=1) rather than being restarted');
  return new Promise((resolve) => {
    // A timer that never fires keeps the event loop, and so the process, alive.
    const keepAlive = setInterval(() => {}, 2 ** 31 - 1);
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => (clearInterval(keepAlive), resolve()));
  });
}
