// `addrmap run -- CMD ARGS...`: addrmap in front of an application, for
// images with no init system and no shell (the image's entrypoint, often
// PID 1). Apply first, so the mappings are in place before the application's
// first connection; then the application, with this process's standard
// input, output and error; beside it the watcher, started again when it
// exits. Signals go to the application; its status is this process's status.
//
// apply and watch run as child processes of this executable: the supervisor
// stays small (it never loads libnftables or a mapping file), and an agent
// that fails cannot take the application down with it.
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { isSea } from 'node:sea';
import { startProcess } from '../kernel/exec.js';
import { libc } from '../kernel/netlink/ffi.js';

type ChildProcess = ReturnType<typeof startProcess>;

/** Forwarded to the application, as a shell entrypoint's traps did. */
const FORWARDED = ['SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'] as const;
/** apply and watch exit with 4 when this kernel or libnftables cannot carry the table: starting again would only repeat it. */
const CANNOT_START = 4;
const RESTART_DELAY_MS = 2000;
/** How long the watcher has to stop after the application ended before it is killed. */
const WATCHER_STOP_MS = 10_000;
const WNOHANG = 1;

const say = (m: string) => process.stderr.write(`addrmap run: ${m}\n`);

export interface RunOptions {
  command: string[];
  /** Flags given to run that apply and watch must see too (--config, --mappings, --state-dir). */
  pathArgs: string[];
  env?: NodeJS.ProcessEnv;
}

export async function runCommand(o: RunOptions): Promise<number> {
  const env = o.env ?? process.env;
  if (!o.command.length) {
    say('usage: addrmap run [--config P] [--mappings P] [--state-dir P] -- COMMAND [ARGS...]');
    return 2;
  }
  // Node waits for these itself; a pid leaves the set once Node has, so a
  // later orphan that reuses it is still reaped.
  const children = new Set<number>();
  const track = (child: ChildProcess) => {
    const pid = child.pid;
    if (pid === undefined) return;
    children.add(pid);
    child.once('exit', () => children.delete(pid));
  };
  const reaper = process.pid === 1 ? startReaper(children) : null;
  let stopping: NodeJS.Signals | null = null;
  let app: ChildProcess | null = null;
  let current: ChildProcess | null = null; // apply, then the watcher
  const onSignal = (sig: NodeJS.Signals) => {
    if (app) app.kill(sig);
    else if (sig !== 'SIGWINCH' && sig !== 'SIGUSR1' && sig !== 'SIGUSR2') {
      // Told to stop before the application started: it never will.
      stopping = sig;
      current?.kill('SIGTERM');
    }
  };
  for (const sig of FORWARDED) process.on(sig, onSignal);

  const log = addrmapOutput(env);
  const agent = (sub: 'apply' | 'watch') => {
    const [exe, pre] = self();
    const child = startProcess(exe, [...pre, sub, ...o.pathArgs], { stdio: ['ignore', log, log], env });
    track(child);
    return child;
  };

  try {
    // 1. Apply once, to completion.
    current = agent('apply');
    const applied = await exited(current);
    current = null;
    if (stopping) return 128 + constants.signals[stopping as NodeJS.Signals];
    if (applied.code !== 0) {
      if (env.ADDRMAP_REQUIRED === '1') {
        say(`addrmap apply failed with status ${applied.status}; not starting the application (ADDRMAP_REQUIRED=1)`);
        return applied.status;
      }
      say(`addrmap apply failed with status ${applied.status}; starting the application anyway`);
    }

    // 2. The application.
    try {
      app = startProcess(o.command[0]!, o.command.slice(1), { stdio: 'inherit', env });
    } catch (e) {
      say(`cannot start ${o.command[0]}: ${(e as Error).message}`);
      return 127;
    }
    const appDone = exited(app);
    track(app);

    // 3. The watcher beside it, until the application ends.
    let over = false;
    let wakeSupervisor = () => {};
    const supervised = (async () => {
      while (!over) {
        current = agent('watch');
        const r = await exited(current);
        current = null;
        if (over) break;
        if (r.status === CANNOT_START) {
          say(`addrmap watch cannot run here (status ${CANNOT_START}); not starting it again (addrmap status says why)`);
          break;
        }
        say(`addrmap watch exited with status ${r.status}; starting it again in ${RESTART_DELAY_MS / 1000} s`);
        // Cut short when the application ends meanwhile.
        await new Promise<void>((r) => {
          const t = setTimeout(r, RESTART_DELAY_MS);
          wakeSupervisor = () => (clearTimeout(t), r());
        });
      }
    })();

    const done = await appDone;
    over = true;
    wakeSupervisor();
    if (done.spawnError) {
      const code = done.spawnError.code === 'ENOENT' ? 127 : 126;
      say(`cannot start ${o.command[0]}: ${done.spawnError.code === 'ENOENT' ? 'not found' : done.spawnError.message}`);
      await stopWatcher(current);
      await supervised;
      return code;
    }
    // The kernel state stays for the next start.
    await stopWatcher(current);
    await supervised;
    return done.status;
  } finally {
    for (const sig of FORWARDED) process.off(sig, onSignal);
    reaper?.stop();
    if (typeof log === 'number' && log > 2) closeSync(log);
  }
}

/** This executable and what it needs to run a command of its own (the bundle's path when run by node). */
function self(): [string, string[]] {
  return isSea() ? [process.execPath, []] : [process.execPath, [process.argv[1]!]];
}

/** Where apply's and watch's log lines go: ADDRMAP_LOG_FILE, else standard error, so they never mix with the application's output. */
function addrmapOutput(env: NodeJS.ProcessEnv): number {
  const file = env.ADDRMAP_LOG_FILE;
  if (!file) return 2;
  try {
    return openSync(file, 'a', 0o640);
  } catch (e) {
    say(`cannot open ADDRMAP_LOG_FILE (${(e as NodeJS.ErrnoException).code ?? 'error'}); addrmap logs to standard error`);
    return 2;
  }
}

interface Exit {
  code: number | null;
  /** The shell's convention: the exit code, or 128 + the signal's number. */
  status: number;
  spawnError?: NodeJS.ErrnoException;
}

function exited(child: ChildProcess): Promise<Exit> {
  return new Promise((resolve) => {
    child.once('error', (e: NodeJS.ErrnoException) => {
      if (child.pid === undefined) resolve({ code: null, status: 127, spawnError: e });
    });
    child.once('exit', (code, signal) => resolve({ code, status: code ?? 128 + (signal ? constants.signals[signal] : 0) }));
  });
}

async function stopWatcher(w: ChildProcess | null): Promise<void> {
  if (!w || w.exitCode !== null || w.signalCode !== null) return;
  const gone = exited(w);
  w.kill('SIGTERM');
  const timer = setTimeout(() => w.kill('SIGKILL'), WATCHER_STOP_MS);
  await gone;
  clearTimeout(timer);
}

/**
 * As PID 1, every orphan in the guest becomes this process's child, and one
 * nobody waits for stays a zombie. Node waits only for the children it
 * started, and a waitpid(-1) would take their statuses from it; so on each
 * SIGCHLD the zombies whose parent is this process are found in /proc, and
 * those Node did not start are reaped one by one.
 */
function startReaper(ours: Set<number>): { stop(): void } | null {
  const c = libc();
  if (c instanceof Error) {
    say(`orphans cannot be reaped here (${c.message})`);
    return null;
  }
  const me = String(process.pid);
  const reap = () => {
    let pids: string[];
    try {
      pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
    } catch {
      return;
    }
    for (const pid of pids) {
      if (ours.has(Number(pid))) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      } catch {
        continue; // gone meanwhile
      }
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state === 'Z' && ppid === me) c.waitpid(Number(pid), WNOHANG);
    }
  };
  process.on('SIGCHLD', reap);
  return { stop: () => process.off('SIGCHLD', reap) };
}
