// `addrmap run` on this machine, without containers: usage, the application's
// status, a command that cannot start, and as PID 1 of a fresh PID namespace
// (unshare), orphans reaped and TERM forwarded. The flag is off, so nothing
// here touches nftables; the guest tests run the whole scenario.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADDRMAP } from '../support/lab.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'addrmap-run-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `addrmap run ARGS` (optionally as PID 1 of a new PID namespace); `whenStarted` is called once the application wrote "started". */
function run(args: string[], o: { pid1?: boolean; whenStarted?: (pid: number) => void } = {}): Promise<Ran> {
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    ADDRMAP_ENABLED: '0',
    ADDRMAP_STATE_DIR: join(dir, 'state'),
    ADDRMAP_MAPPINGS: join(dir, 'mappings.json'),
    ADDRMAP_CONFIG: join(dir, 'config.json'),
    ADDRMAP_LOG_FILE: join(dir, 'addrmap.log'),
  };
  // The bundle, run by this Node (the pinned one), as the tests run addrmap everywhere.
  const addrmap = [process.execPath, ADDRMAP];
  const cmd = o.pid1 ? ['unshare', '--pid', '--fork', '--mount-proc', ...addrmap, 'run', ...args] : [...addrmap, 'run', ...args];
  return new Promise((resolve) => {
    const child = spawn(cmd[0]!, cmd.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += String(d);
      if (o.whenStarted && stdout.includes('started\n')) {
        o.whenStarted(child.pid!);
        o.whenStarted = undefined;
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += String(d)));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('addrmap run', () => {
  it('without a command: a usage error', async () => {
    const r = await run(['--']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('usage: addrmap run');
  });

  it("runs the application after apply, with its own output, and returns the application's status", async () => {
    // apply has written its state before the application starts.
    const r = await run(['--', 'sh', '-c', `echo out; test -e ${join(dir, 'state/status.json')} && exit 5; exit 9`]);
    expect(r).toMatchObject({ code: 5, stdout: 'out\n' });
    // addrmap's own lines went to ADDRMAP_LOG_FILE, not into the application's output.
    expect(r.stderr).toBe('');
  });

  it('an application that cannot start: 127, naming it', async () => {
    const r = await run(['--', join(dir, 'no-such-program')]);
    expect(r.code).toBe(127);
    expect(r.stderr).toContain(`addrmap run: cannot start ${join(dir, 'no-such-program')}: not found`);
  });

  it('as PID 1: an orphan is reaped when it ends (no zombie), and TERM reaches the application, whose status is returned', async () => {
    // The application leaves an orphan (its child's child) to PID 1, waits for
    // it to end, counts the zombies, then waits for TERM.
    const app = [
      'sh',
      '-c',
      [
        'sh -c "sleep 0.3 &"',
        'sleep 1.5',
        'z=0; for f in /proc/[0-9]*/stat; do s=$(cat "$f" 2>/dev/null) || continue; case ${s##*) } in "Z "*) z=$((z+1));; esac; done',
        'echo "zombies $z"',
        'trap "echo got TERM; exit 7" TERM',
        'echo started',
        'while :; do sleep 0.1; done',
      ].join('; '),
    ];
    const r = await run(['--', ...app], {
      pid1: true,
      // unshare forks: PID 1 of the namespace is its child. A signal from
      // outside reaches a namespace's init when it handles that signal.
      whenStarted: (unshare) => {
        const init = Number(readFileSync(`/proc/${unshare}/task/${unshare}/children`, 'utf8').trim().split(' ')[0]);
        process.kill(init, 'SIGTERM');
      },
    });
    expect(r.stdout).toContain('zombies 0\n');
    expect(r.stdout).toContain('got TERM\n');
    expect(r.code).toBe(7);
  });
});
