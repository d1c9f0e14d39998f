// The one way addrmap runs other programs (its fallbacks' tools, and addrmap
// run's application and agents): an argument vector, never a shell,
// so nothing read from a file can become shell syntax.
import { spawn } from 'node:child_process';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

class CommandNotFoundError extends Error {
  constructor(readonly command: string) {
    super(`${command}: command not found (is it installed and on PATH?)`);
  }
}

export function execFile(
  command: string,
  args: readonly string[],
  options: { input?: string; timeoutMs?: number } = {},
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      shell: false,
      timeout: options.timeoutMs ?? 60_000,
      env: { ...process.env, LC_ALL: 'C' },
    });
    // First: a spawn that fails for want of descriptors (EMFILE) reports it
    // as an 'error' event, and has no pipes to listen on.
    child.on('error', (e: NodeJS.ErrnoException) => {
      reject(e.code === 'ENOENT' ? new CommandNotFoundError(command) : e);
    });
    if (!child.stdout || !child.stderr || !child.stdin) return;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('close', (code, signal) => {
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8') + (signal ? `\n(killed by ${signal})` : ''),
      });
    });
    // A command that exits early (e.g. a bad flag) closes stdin under us.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

/**
 * A child that lives on beside addrmap (`addrmap run`'s application and its
 * agents), with the given descriptors: an argument vector, never a shell.
 */
export function startProcess(
  command: string,
  args: readonly string[],
  options: { stdio: 'inherit' | ('ignore' | 'inherit' | number)[]; env: NodeJS.ProcessEnv },
): ReturnType<typeof spawn> {
  return spawn(command, args, { stdio: options.stdio, env: options.env, shell: false });
}
