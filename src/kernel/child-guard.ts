// Nothing addrmap starts may outlive it. A long-lived child (`nft monitor`)
// is started under `setpriv --pdeathsig KILL` where the image has setpriv, so
// the kernel kills it the moment the agent dies, even by SIGKILL. Where it
// has not, the child's pid and start time are recorded in the state
// directory, and the next agent kills that exact process if it is still
// there: the same pid with the same start time and command line is the
// orphan, never a process that merely reused the pid.
import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { readState, writeState } from '../state/state-file.js';

const CHILD_FILE = 'children.json';

interface Recorded {
  schema: 1;
  children: { pid: number; startTime: string; argv: string[] }[];
}

/** The setpriv on PATH, if any. */
export async function findSetpriv(env: NodeJS.ProcessEnv = process.env): Promise<string | null> {
  for (const dir of (env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const p = join(dir, 'setpriv');
    if (
      await access(p, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return p;
  }
  return null;
}

/** argv run so that the kernel kills it when this process dies (when setpriv exists). */
export function dyingWithUs(setpriv: string | null, argv: string[]): string[] {
  return setpriv ? [setpriv, '--pdeathsig', 'KILL', '--', ...argv] : argv;
}

async function startTimeOf(pid: number): Promise<string | null> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  // Field 22, counted after the command name (which may hold spaces) closes.
  return stat ? (stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null) : null;
}

async function argvOf(pid: number): Promise<string[]> {
  const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return raw.split('\0').filter(Boolean);
}

/** Records a child, so a later agent can tell its orphan from any other process. */
export async function recordChild(stateDir: string, pid: number, argv: string[]): Promise<void> {
  const startTime = await startTimeOf(pid);
  if (startTime === null) return;
  await writeState(stateDir, CHILD_FILE, { schema: 1, children: [{ pid, startTime, argv }] } satisfies Recorded);
}

/** Kills the recorded children of a previous agent that are still running; returns their pids. */
export async function reapOrphans(stateDir: string): Promise<number[]> {
  const doc = await readState<Recorded>(stateDir, CHILD_FILE).catch(() => null);
  const killed: number[] = [];
  for (const c of Array.isArray(doc?.children) ? doc.children : []) {
    if (!Number.isInteger(c.pid) || c.pid <= 1 || c.pid === process.pid) continue;
    if ((await startTimeOf(c.pid)) !== c.startTime) continue;
    if (JSON.stringify(await argvOf(c.pid)) !== JSON.stringify(c.argv)) continue;
    try {
      process.kill(c.pid, 'SIGKILL');
      killed.push(c.pid);
    } catch {
      /* gone meanwhile */
    }
  }
  return killed;
}
