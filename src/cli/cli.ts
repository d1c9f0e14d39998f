// Command-line entry point: parses arguments, wires the real components
// together and maps outcomes to exit codes.
import { parseArgs } from 'node:util';
import { DEFAULT_PATHS, resolvePaths } from '../input/settings.js';
import { explainCommand, statusCommand } from '../support/read-commands.js';
import { scanCommand } from '../support/scan-command.js';
import { EXIT, runAgent } from './run-agent.js';
import { runCommand } from './run-command.js';

declare const ADDRMAP_VERSION: string;
const VERSION = typeof ADDRMAP_VERSION === 'string' ? ADDRMAP_VERSION : 'dev';

const HELP = `addrmap ${VERSION}: keep stale literal IP addresses reachable after a migration,
with nftables DNAT driven by a mapping file the control plane pushes.

Usage: addrmap <command> [options]

Commands:
  apply            Apply the mapping file once and exit (run by init before the application).
  run -- CMD ARGS  For images without an init system (the entrypoint, PID 1 included): apply,
                   then run CMD with the watcher beside it; forwards signals to CMD, reaps
                   orphans, exits with CMD's status.
  watch            Apply, then follow the mapping and config files and apply every change.
  status           What is mapped, what is still used and by whom, what is wrong. Read-only;
                   live as root, and without root from the running agent (its query socket),
                   else from the agent's state files.
  explain ADDRESS  Whether and why an address is translated (any textual form).
  scan PATH...     Every occurrence of a mapped stale address in files or directories;
                   --diff: the rewrite to their targets, as a unified diff (nothing is written).
  help             Show this help.
  version          Print the version.

Options:
  --config PATH      config file     (env ADDRMAP_CONFIG, default ${DEFAULT_PATHS.config})
  --mappings PATH    mapping file    (env ADDRMAP_MAPPINGS, default ${DEFAULT_PATHS.mappings})
  --state-dir PATH   state directory (env ADDRMAP_STATE_DIR, default ${DEFAULT_PATHS.stateDir})
  --json             status, explain, scan: print JSON
  --all              status: list every mapping, not the 50 most recently used
  --diff             scan: print a unified diff rewriting each stale literal to its target
  --names FILE       scan --diff: a JSON object of target address -> host name to write instead
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
  /run/addrmap/status.json, applied.json, usage.json, history.json   the agent's state, read by
                               status; query.sock answers status and explain for anyone
  Both files must be owned by root and writable by no one else, with no symlink on the way.

Pushing a mapping (the control plane's contract):
  write the new file to a temporary name in the same directory, fsync it, rename it over
  mappings.json, and raise "generation" on every push; an older generation is refused.

Environment:
  ADDRMAP_ENABLED, ADDRMAP_CONFIG, ADDRMAP_MAPPINGS, ADDRMAP_STATE_DIR   as above
  ADDRMAP_LOG_LEVEL   fatal, error, warn, info (default), debug, trace
  ADDRMAP_LIBNFTABLES=PATH  the libnftables file to load instead of libnftables.so.1 (absolute path)
  ADDRMAP_REQUIRED=1  run: do not start the application if apply fails (exit with apply's status)
  ADDRMAP_LOG_FILE=PATH  run: append addrmap's log lines there (default: standard error)
  ADDRMAP_RESIDENT=0  apply: this guest runs no resident agent by design (the one-shot systemd
                      units set it), so status does not report a missing agent
  ADDRMAP_HOLD_ON_FAILURE=1  watch: when it cannot start (exit 4), wait for SIGTERM instead of
                      exiting (for supervisors that restart on any exit: OpenRC, runit, s6)

Exit codes:
  apply, watch  0 success (also: feature off), 1 failure (kernel or tool error),
                2 usage error, 3 mapping or config file refused (kernel state unchanged),
                4 cannot start here (libnftables unusable, or the kernel rejects the table): not retried
  status        0 healthy or waiting for the first push, 1 degraded (drift, refused or failed
                push, warnings), 2 usage error, 3 agent not running (or cannot start),
                4 disabled, 5 no state here (no agent ever wrote the state directory)
  explain       0 translated, 1 not translated, 2 usage error
  scan          0 no stale address found, 1 found, 2 usage error

See also: man addrmap, /usr/share/doc/addrmap/README.md
`;

export async function main(argv: string[]): Promise<number> {
  // run's own options end at "--"; everything after it is the application's.
  if (argv[0] === 'run') return run(argv.slice(1));
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
        diff: { type: 'boolean' },
        names: { type: 'string' },
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
    case 'status':
      return statusCommand({ stateDir: paths.stateDir, config: paths.config, json: !!values.json, all: !!values.all });
    case 'explain':
      return explainCommand({ input: args[0]!, stateDir: paths.stateDir, json: !!values.json });
    case 'scan':
      return scanCommand({ paths: args, stateDir: paths.stateDir, json: !!values.json, diff: !!values.diff, names: values.names });
    case 'apply':
    case 'watch':
      if (values['accept-lower-generation'] && command !== 'apply') {
        process.stderr.write('addrmap: --accept-lower-generation is for apply (it makes one pass)\n');
        return EXIT.usage;
      }
      return runAgent(command, paths, !!values['accept-lower-generation']);
    default:
      process.stderr.write(`addrmap: unknown command ${JSON.stringify(command)}\nRun 'addrmap help' for usage.\n`);
      return EXIT.usage;
  }
}

async function run(argv: string[]): Promise<number> {
  const split = argv.indexOf('--');
  const own = split < 0 ? [] : argv.slice(0, split);
  const command = split < 0 ? argv : argv.slice(split + 1);
  let values;
  try {
    ({ values } = parseArgs({
      args: own,
      options: { config: { type: 'string' }, mappings: { type: 'string' }, 'state-dir': { type: 'string' } },
    }));
  } catch (e) {
    process.stderr.write(`addrmap: ${(e as Error).message}\nRun 'addrmap help' for usage.\n`);
    return EXIT.usage;
  }
  // Resolved by apply and watch themselves, from the same flags and environment.
  const pathArgs = Object.entries(values).flatMap(([k, v]) => [`--${k}`, v]);
  return runCommand({ command, pathArgs });
}
