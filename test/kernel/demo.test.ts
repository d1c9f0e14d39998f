// The quick start's demo, run as a newcomer runs it (after npm ci and the
// build): it must pass, print what README shows, and leave nothing behind;
// and its pre-flight must say exactly what is missing where it cannot run.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, run } from '../support/lab.js';

/** Processes whose command line mentions the demo's files: none may outlive it. */
function demoProcesses(): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmd.includes('addrmap-demo') || cmd.includes('echo-server.mjs database')) out.push(`${pid} ${cmd}`);
    } catch {
      // gone while listed
    }
  }
  return out;
}

describe('npm run demo', () => {
  it('passes, shows the stale address failing, then answering after the push, and a bad push refused; leaves nothing behind', async () => {
    const r = await run('bash', [join(ROOT, 'test/demo.sh')], { timeoutMs: 120_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = r.stdout.replace(/\x1b\[[0-9;]*m/g, '');
    const stale = 'fdaa:0:18:a7b:7d:f066:b83b:2';
    expect(out).toContain(`== The guest's config still says ${stale}: connecting fails\n{"ok":false,"error":"ETIMEDOUT"}`);
    expect(out).toContain('== The same literal address works again\n{"ok":true,"reply":"database fdaa:0:18:a7b:c2:f066:b83b:2"}');
    expect(out).toContain('addrmap HEALTHY: the bridge is on and the kernel matches the applied mappings');
    expect(out).toMatch(/"event":"refused","generation":2,"entry":"mappings\[0\]"/);
    expect((await run('ip', ['netns', 'list'])).stdout).not.toContain('addrmap-demo');
    expect(demoProcesses()).toEqual([]);
  });

  it('pre-flight: not root, or root without the capabilities (a container started without them), says what to do', async () => {
    const nobody = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'bash', join(ROOT, 'test/preflight.sh')]);
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toBe('demo: run it as root (sudo npm run demo): it creates network namespaces and nftables rules\n');
    const noSysAdmin = await run('setpriv', [
      '--bounding-set=-sys_admin',
      '--inh-caps=-sys_admin',
      'bash',
      join(ROOT, 'test/preflight.sh'),
    ]);
    expect(noSysAdmin.code).toBe(1);
    expect(noSysAdmin.stderr).toBe(
      'demo: root here lacks the capabilities SYS_ADMIN (a container started without them?)\n' +
        'demo: start the container with: docker run --cap-add NET_ADMIN --cap-add SYS_ADMIN --security-opt apparmor=unconfined ...\n',
    );
    expect((await run('bash', [join(ROOT, 'test/preflight.sh')])).code).toBe(0);
  });
});
