// Command-line entry point: parses arguments, wires the real components
// together and maps outcomes to exit codes.
import { parseArgs } from 'node:util';
import { Agent } from '../agent/agent.js';
import { DEFAULT_CONFIG, loadConfig } from '../input/config.js';
import { ConntrackCleanup } from '../kernel/conntrack-cleanup.js';
import { printable, printableJson, printableText } from '../support/printable.js';
import { conntrackTable } from '../kernel/netlink/ctnetlink.js';
import { createLogger } from '../agent/logger.js';
import { DriftDetector } from '../agent/drift.js';
import { LibNft } from '../kernel/nft/index.js';
import { Reconciler } from '../kernel/reconciler.js';
import { viewFromListing } from '../kernel/plan.js';
import { probeKernel } from '../kernel/kernel-caps.js';
import { currentFlag } from '../input/flag.js';
import { recordStartFailure } from '../agent/start-failure.js';
import { readLocalAddresses } from '../net/local-addresses.js';
import { AgentLock, ask } from '../agent/agent-lock.js';
import { NetlinkRoutes } from '../kernel/routes.js';
import { NetlinkSelfAddresses } from '../kernel/self-addresses.js';
import { resolvePaths, DEFAULT_PATHS } from '../input/settings.js';
import { collectStatus, STATUS_EXIT } from '../support/status.js';
import { formatStatus } from '../support/status-format.js';
import { explain, ExplainInputError } from '../support/explain.js';
import { scanPaths, type ScanStats } from '../support/scan.js';
import { APPLIED_FILE, prepareStateDir, readState, type AppliedState } from '../state/state-file.js';
import { missingCapabilities, TABLE, type Ruleset } from '../kernel/ruleset.js';
import { startWatching } from '../agent/watch.js';
import { Telemetry } from '../agent/telemetry.js';
import { UsageTracker } from '../agent/usage.js';

declare const ADDRMAP_VERSION: string;
const VERSION = typeof ADDRMAP_VERSION === 'string' ? ADDRMAP_VERSION : 'dev';

const EXIT = { ok: 0, failed: 1, usage: 2, refused: 3, cannotStart: 4 } as const;

const HELP = `addrmap ${VERSION}: keep stale literal IP addresses reachable after a migration,
with nftables DNAT driven by a mapping file the control plane pushes.

Usage: addrmap <command> [options]

Commands:
  apply            Apply the mapping file once and exit (run by init before the application).
  watch            Apply, then follow the mapping and config files and apply every change.
  status           What is mapped, what is still used and by whom, what is wrong. Read-only;
                   works without root (from the agent's snapshot), live kernel data as root.
  explain ADDRESS  Whether and why an address is translated (any textual form).
  scan PATH...     Every occurrence of a mapped stale address in files or directories.
  help             Show this help.
  version          Print the version.

Options:
  --config PATH      config file     (env ADDRMAP_CONFIG, default ${DEFAULT_PATHS.config})
  --mappings PATH    mapping file    (env ADDRMAP_MAPPINGS, default ${DEFAULT_PATHS.mappings})
  --state-dir PATH   state directory (env ADDRMAP_STATE_DIR, default ${DEFAULT_PATHS.stateDir})
  --json             status, explain, scan: print JSON
  --all              status: list every mapping, not the 50 most recently used
  --accept-lower-generation
                     apply: accept the file even if its generation is lower than the
                     applied one, and make it the applied one (after a mistaken push)

Feature flag (off by default; first found wins):
  ADDRMAP_ENABLED=1|0 in the environment, addrmap.enabled=1|0 on the kernel
  command line, "enabled": true|false in the config file.

Files:
  /etc/addrmap/config.json     settings: enabled, logLevel, allowedTargets (default ["fc00::/7"]),
                               usageIntervalSeconds, retireAfterSeconds, metricsFile, metricsListen
  /etc/addrmap/mappings.json   the mapping file the control plane pushes (format version 1)
  /usr/share/addrmap/mapping-file.schema.json   its JSON Schema
  /run/addrmap/status.json, applied.json, usage.json   the agent's state, read by status
  Both files must be owned by root and writable by no one else, with no symlink on the way.

Pushing a mapping (the control plane's contract):
  write the new file to a temporary name in the same directory, fsync it, rename it over
  mappings.json, and raise "generation" on every push; an older generation is refused.

Environment:
  ADDRMAP_ENABLED, ADDRMAP_CONFIG, ADDRMAP_MAPPINGS, ADDRMAP_STATE_DIR   as above
  ADDRMAP_LOG_LEVEL   fatal, error, warn, info (default), debug, trace
  ADDRMAP_REQUIRED=1  addrmap-entrypoint: do not start the application if apply fails
  ADDRMAP_HOLD_ON_FAILURE=1  watch: when it cannot start (exit 4), wait for SIGTERM instead of
                      exiting (for supervisors that restart on any exit: OpenRC, runit, s6)

Exit codes:
  apply, watch  0 success (also: feature off), 1 failure (kernel or tool error),
                2 usage error, 3 mapping or config file refused (kernel state unchanged),
                4 cannot start here (nft unusable, or the kernel rejects the table): not retried
  status        0 healthy, 1 degraded (drift, refused or failed push, warnings),
                2 usage error, 3 agent not running (or never ran, or cannot start), 4 disabled
  explain       0 translated, 1 not translated, 2 usage error
  scan          0 no stale address found, 1 found, 2 usage error

See also: man addrmap, /usr/share/doc/addrmap/README.md
`;

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string' },
        mappings: { type: 'string' },
        'state-dir': { type: 'string' },
        json: { type: 'boolean' },
        all: { type: 'boolean' },
        'accept-lower-generation': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
      },
    });
  } catch (e) {
    process.stderr.write(`addrmap: ${(e as Error).message}\nRun 'addrmap help' for usage.\n`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  const command = values.help ? 'help' : values.version ? 'version' : positionals[0];
  const args = positionals.slice(1);
  const arity: Record<string, [number, number]> = { explain: [1, 1], scan: [1, Infinity] };
  const [min, max] = arity[command ?? ''] ?? [0, 0];
  if (args.length < min || args.length > max) {
    process.stderr.write(
      args.length < min
        ? `addrmap: ${command} needs ${min === max ? 'an address' : 'at least one path'}\n`
        : `addrmap: unexpected argument ${JSON.stringify(args[max])}\n`,
    );
    return EXIT.usage;
  }
  const paths = resolvePaths({ config: values.config, mappings: values.mappings, stateDir: values['state-dir'] }, process.env);

  switch (command) {
    case 'help':
    case undefined:
      process.stdout.write(HELP);
      return command ? EXIT.ok : EXIT.usage;
    case 'version':
      process.stdout.write(`${VERSION}\n`);
      return EXIT.ok;
    case 'status': {
      const root = process.geteuid?.() === 0;
      const config = await loadConfig(paths.config).catch(() => DEFAULT_CONFIG);
      const report = await collectStatus({
        stateDir: paths.stateDir,
        nft: root ? new LibNft(TABLE) : null,
        conntrack: root ? conntrackTable() : null,
        retireAfterSeconds: config.retireAfterSeconds,
        flag: await currentFlag(process.env, config.enabled).catch(() => undefined),
      });
      process.stdout.write(
        values.json
          ? printableJson(JSON.stringify(report, null, 2)) + '\n'
          : printableText(formatStatus(report, { all: !!values.all })) + '\n',
      );
      return STATUS_EXIT[report.health];
    }
    case 'explain':
      return explainCommand(args[0]!, paths.stateDir, !!values.json);
    case 'scan':
      return scanCommand(args, paths.stateDir, !!values.json);
    case 'apply':
    case 'watch':
      if (values['accept-lower-generation'] && command !== 'apply') {
        process.stderr.write('addrmap: --accept-lower-generation is for apply (it makes one pass)\n');
        return EXIT.usage;
      }
      return run(command, paths, !!values['accept-lower-generation']);
    default:
      process.stderr.write(`addrmap: unknown command ${JSON.stringify(command)}\nRun 'addrmap help' for usage.\n`);
      return EXIT.usage;
  }
}

async function run(command: 'apply' | 'watch', paths: ReturnType<typeof resolvePaths>, acceptLower = false): Promise<number> {
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

  const telemetry = new Telemetry(agent, new UsageTracker(drift!), paths.stateDir, log);
  await telemetry.start();
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

async function explainCommand(input: string, stateDir: string, json: boolean): Promise<number> {
  const applied = await readState<AppliedState>(stateDir, APPLIED_FILE);
  let kernel: Map<string, string> | undefined;
  if (process.geteuid?.() === 0) {
    const view = await new LibNft(TABLE)
      .list()
      .then(viewFromListing)
      .catch(() => null);
    if (view) kernel = new Map([...view.v4, ...view.v6]);
  }
  try {
    const e = explain(input, applied, kernel);
    process.stdout.write(json ? printableJson(JSON.stringify(e, null, 2)) + '\n' : printableText(e.lines.join('\n')) + '\n');
    return e.translated ? EXIT.ok : 1;
  } catch (err) {
    if (!(err instanceof ExplainInputError)) throw err;
    process.stderr.write(`addrmap: ${printableText(err.message)}\n`);
    return EXIT.usage;
  }
}

async function scanCommand(paths: string[], stateDir: string, json: boolean): Promise<number> {
  const applied = await readState<AppliedState>(stateDir, APPLIED_FILE);
  if (!applied) {
    process.stderr.write(`addrmap: no applied mappings in ${stateDir}; nothing to look for\n`);
    return EXIT.usage;
  }
  const stale = new Map(applied.resolved.map((m) => [m.from, m.to]));
  const stats: ScanStats = { files: 0, skipped: [] };
  const found = [];
  for await (const o of scanPaths(paths, stale, stats)) {
    found.push(o);
    // The file's name and line are the customer's bytes: escaped field by field.
    if (!json)
      process.stdout.write(
        `${printable(o.file)}:${o.line}:${o.column}: ${printable(o.text)} is stale, now ${o.target}: ${printableText(o.lineText.replace(/[\r\n]/g, ''))}\n`,
      );
  }
  if (json)
    process.stdout.write(printableJson(JSON.stringify({ generation: applied.generation, occurrences: found, ...stats }, null, 2)) + '\n');
  else {
    for (const s of stats.skipped) process.stderr.write(`addrmap: skipped ${printable(s.file)}: ${printableText(s.reason)}\n`);
    process.stderr.write(`${found.length} occurrence(s) of ${stale.size} stale address(es) in ${stats.files} file(s)\n`);
  }
  return found.length ? 1 : EXIT.ok;
}
