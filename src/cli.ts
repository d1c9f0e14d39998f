// Command-line entry point: parses arguments, wires the real components
// together and maps outcomes to exit codes.
import { parseArgs } from 'node:util';
import { Agent } from './agent.js';
import { ConntrackTool } from './conntrack.js';
import { createLogger } from './logger.js';
import { DriftDetector } from './drift.js';
import { ExecNft } from './nft/index.js';
import { Reconciler } from './reconciler.js';
import { planSync, EMPTY_VIEW } from './plan.js';
import { IpRoutes } from './routes.js';
import { resolvePaths, DEFAULT_PATHS } from './settings.js';
import { collectStatus, formatStatus } from './status.js';
import { startWatching } from './watch.js';

declare const ADDRMAP_VERSION: string;
const VERSION = typeof ADDRMAP_VERSION === 'string' ? ADDRMAP_VERSION : 'dev';

export const EXIT = { ok: 0, failed: 1, usage: 2, refused: 3 } as const;

const HELP = `addrmap ${VERSION}: keep stale literal IP addresses reachable after a migration,
with nftables DNAT driven by a mapping file the control plane pushes.

Usage: addrmap <command> [options]

Commands:
  apply     Apply the mapping file once and exit (run by init before the application).
  watch     Apply, then follow the mapping and config files and apply every change.
  status    Show what is mapped and what went wrong; read-only. --json for tools.
  help      Show this help.
  version   Print the version.

Options:
  --config PATH      config file     (env ADDRMAP_CONFIG, default ${DEFAULT_PATHS.config})
  --mappings PATH    mapping file    (env ADDRMAP_MAPPINGS, default ${DEFAULT_PATHS.mappings})
  --state-dir PATH   state directory (env ADDRMAP_STATE_DIR, default ${DEFAULT_PATHS.stateDir})
  --json             status: print JSON

Feature flag (off by default; first found wins):
  ADDRMAP_ENABLED=1|0 in the environment, addrmap.enabled=1|0 on the kernel
  command line, "enabled": true|false in the config file.

Exit codes: 0 success (also: feature off), 1 failure (kernel or tool error),
2 usage error, 3 mapping or config file refused (kernel state unchanged).
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
  if (positionals.length > 1) {
    process.stderr.write(`addrmap: unexpected argument ${JSON.stringify(positionals[1])}\n`);
    return EXIT.usage;
  }
  const paths = resolvePaths(
    { config: values.config, mappings: values.mappings, stateDir: values['state-dir'] },
    process.env,
  );

  switch (command) {
    case 'help':
    case undefined:
      process.stdout.write(HELP);
      return command ? EXIT.ok : EXIT.usage;
    case 'version':
      process.stdout.write(`${VERSION}\n`);
      return EXIT.ok;
    case 'status': {
      const report = await collectStatus(paths.stateDir, process.getuid?.() === 0 ? new ExecNft() : null);
      process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : formatStatus(report) + '\n');
      return EXIT.ok;
    }
    case 'apply':
    case 'watch':
      return run(command, paths);
    default:
      process.stderr.write(`addrmap: unknown command ${JSON.stringify(command)}\nRun 'addrmap help' for usage.\n`);
      return EXIT.usage;
  }
}

async function run(command: 'apply' | 'watch', paths: ReturnType<typeof resolvePaths>): Promise<number> {
  const log = createLogger();
  const nft = new ExecNft();
  try {
    const info = await nft.check();
    await nft.validate(planSync(EMPTY_VIEW, { v4: new Map(), v6: new Map() }, true).tx);
    log.debug({ event: 'nft', version: info.version }, 'nft is usable and the kernel accepts the table');
  } catch (e) {
    log.fatal({ event: 'nft_unusable', reason: (e as Error).message }, 'cannot start');
    process.stderr.write(`addrmap: ${(e as Error).message}\n`);
    return EXIT.failed;
  }
  // The daemon sees the kernel through the drift detector, which discounts
  // the echoes of addrmap's own transactions.
  const drift = command === 'watch' ? new DriftDetector(nft, { log, listChains: () => nft.listChains() }) : null;
  const reconciler = new Reconciler({ nft: drift ?? nft, routes: new IpRoutes(), conntrack: new ConntrackTool() });
  const agent = new Agent({ paths, env: process.env, reconciler, log, daemon: command === 'watch' });
  await agent.init();

  if (command === 'apply') {
    const r = await agent.pass();
    if (r.outcome === 'refused' || r.outcome === 'failed') process.stderr.write(`addrmap: ${r.outcome}: ${r.message}\n`);
    return r.outcome === 'refused' ? EXIT.refused : r.outcome === 'failed' ? EXIT.failed : EXIT.ok;
  }

  const watcher = await startWatching(agent, { files: [paths.mappings, paths.config], log, drift: drift! });
  const stop = (signal: string) => {
    log.info({ event: 'stopping', signal }, 'stopping; kernel state left in place for the next start');
    void watcher.stop();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => watcher.trigger('SIGHUP'));
  await watcher.done;
  await agent.stopped();
  return EXIT.ok;
}
