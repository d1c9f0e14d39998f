// The daemon loop: one pass once watching, then a pass whenever the mapping file or
// the config file changes. Passes never overlap; events that arrive during a
// pass are coalesced into one more pass, which reads the file as it is then,
// so a burst of pushes costs at most two passes and ends on the last file.
import { watch as chokidarWatch, type FSWatcher } from 'chokidar';
import type { Agent } from './agent.js';
import type { Logger } from './logger.js';

export interface Watcher {
  /** Resolves when the watcher has stopped. */
  done: Promise<void>;
  stop(): Promise<void>;
  /** Requests a pass (e.g. on SIGHUP). */
  trigger(reason: string): void;
}

export async function startWatching(agent: Agent, files: string[], log: Logger): Promise<Watcher> {
  let running = false;
  let again = false;
  let stopped = false;
  let idle: Promise<void> = Promise.resolve();

  const runPasses = async () => {
    running = true;
    try {
      do {
        again = false;
        try {
          await agent.pass();
        } catch (e) {
          log.error({ event: 'pass_error', reason: (e as Error).message }, 'unexpected error; will retry on the next change');
        }
      } while (again && !stopped);
    } finally {
      running = false;
    }
  };

  const trigger = (reason: string) => {
    if (stopped) return;
    log.debug({ event: 'trigger', reason }, 'change detected');
    if (running) {
      again = true;
      return;
    }
    idle = runPasses();
  };

  // atomic: a rename over the file shows up as a change, not unlink + add.
  const watcher: FSWatcher = chokidarWatch(files, { ignoreInitial: true, atomic: true, persistent: true });
  watcher.on('add', (p) => trigger(`added ${p}`));
  watcher.on('change', (p) => trigger(`changed ${p}`));
  watcher.on('unlink', (p) => trigger(`removed ${p}`));
  watcher.on('error', (e) => log.error({ event: 'watch_error', reason: String(e) }, 'file watcher error'));
  await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  log.info({ event: 'watching', files }, 'watching for pushes');
  // The first pass starts only once the watcher is ready, so a push landing
  // during start-up is never missed.
  trigger('start');
  await idle;

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  return {
    done,
    trigger,
    async stop() {
      stopped = true;
      await watcher.close();
      await idle;
      resolveDone();
    },
  };
}
