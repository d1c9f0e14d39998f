// addrmap on the kernels guests run: Debian's stock kernels from the mirror,
// each booted in QEMU (test/vm/run.sh) with the host's userland, running the
// core scenario (scenario.vm.ts) inside the VM; and Debian 12's kernel in a
// 256 MB guest taking 5k mappings (small-vm.mjs; 10k regressed, see guarantees.md).
import { spawn } from 'node:child_process';
import { relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../support/lab.js';

/** Debian's kernels, oldest first: bullseye 5.10, bookworm 6.1, trixie 6.12, sid (newest). */
const SUITES = ['bullseye', 'bookworm', 'trixie', 'sid'];
const NODE = relative(ROOT, process.execPath).startsWith('..') ? process.execPath : relative(ROOT, process.execPath);

function inVm(suite: string, args: string[], cmd: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['test/vm/run.sh', suite, ...args, '--', ...cmd], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => {
      // The VM's console, for the CI log: what ran and what it measured.
      const text = out.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
      process.stdout.write(`--- ${suite} ---\n${text}\n`);
      resolve({ code, out: text });
    });
  });
}

describe.each(SUITES)('the Debian %s kernel', (suite) => {
  it('runs the core scenario: push, chain, IPv4, prefix, UDP recovery, counters, self, drift repair, flag off', async () => {
    // Starting Node takes seconds under emulation: waits scale.
    const r = await inVm(
      suite,
      ['--env', 'ADDRMAP_TEST_TIMEOUT_SCALE=6', '--env', 'CI=true'],
      [NODE, 'node_modules/vitest/vitest.mjs', 'run', '--config', 'test/vm/vitest.config.ts'],
    );
    expect(r.out).toMatch(/^kernel capabilities: \{/m);
    expect(r.out).toMatch(/\b6 passed, 0 failed, 0 skipped\b/);
    expect(r.code).toBe(0);
  });
});

describe('a 256 MB Debian 12 guest', () => {
  it('applies 5k mappings while an application stays connected, with no OOM kill, and reports what addrmap costs it', async () => {
    const r = await inVm('bookworm', ['--mem', '256'], [NODE, 'test/vm/small-vm.mjs']);
    const line = /^ADDRMAP_GUEST_MEMORY (.*)$/m.exec(r.out);
    expect(line).not.toBeNull();
    const result = JSON.parse(line![1]!);
    expect(result.oomKills).toBe(0);
    expect(result.app.ok).toBe(true);
    expect(result.rows.map((x: { mappings: number }) => x.mappings)).toEqual([0, 1000, 5_000]);
    expect(r.code).toBe(0);
  });
});
