// The quick start's demo where newcomers often try it first: in a container.
// Started with the flags the pre-flight and README name, it passes; started
// without them, the pre-flight says which flags are missing and nothing runs.
// The checkout (with node_modules and the built bundle) is mounted read-only:
// the demo writes only under /tmp and into its own namespaces. On a minimal
// image without procps (no ps, pkill, pgrep) it still leaves nothing behind.
import { describe, expect, it } from 'vitest';
import { guestSetup, prepareGuestImages, ROOT, type GuestImages } from '../support/guest.js';
import { run } from '../support/lab.js';

let images: GuestImages;
guestSetup(async () => {
  images = await prepareGuestImages();
});

const FLAGS = ['--cap-add', 'NET_ADMIN', '--cap-add', 'SYS_ADMIN', '--security-opt', 'apparmor=unconfined'];
const docker = (flags: string[], script: string) =>
  run('docker', ['run', '--rm', ...flags, '-v', `${ROOT}:/src:ro`, '-w', '/src', images.base, 'bash', script], { timeoutMs: 180_000 });

describe('the demo in a container', () => {
  it('with the documented flags: passes', async () => {
    const r = await docker(FLAGS, 'test/demo.sh');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('{"ok":true,"reply":"database fdaa:0:18:a7b:c2:f066:b83b:2"}');
  });

  it('on an image without procps: passes, and leaves no process, namespace, rule or file behind', async () => {
    // The base image with procps taken out, in this container only: the other tests' image keeps it.
    const script = [
      'set -eu',
      'dpkg --purge --force-depends procps >/dev/null 2>&1',
      'for t in ps pkill pgrep; do if command -v "$t" >/dev/null; then echo "$t is still here" >&2; exit 9; fi; done',
      'bash test/demo.sh',
      // Builtins only while looking: a command started for it would be a process of its own.
      'left=""; for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = "$$" ] && continue; read -r c < "$d/comm" || continue; left="$left $p:$c"; done',
      'echo "processes left:${left:- none}"',
      'echo "namespaces left: $(ip netns list | wc -l)"',
      'echo "rules left: $(nft list ruleset | wc -l)"',
      'echo "files left: $(find /tmp -mindepth 1 | wc -l)"',
    ].join('\n');
    const r = await run('docker', ['run', '--rm', ...FLAGS, '-v', `${ROOT}:/src:ro`, '-w', '/src', images.base, 'bash', '-c', script], {
      timeoutMs: 180_000,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('{"ok":true,"reply":"database fdaa:0:18:a7b:c2:f066:b83b:2"}');
    expect(r.stdout).toContain('processes left: none\nnamespaces left: 0\nrules left: 0\nfiles left: 0\n');
  });

  it('without them: the pre-flight names the missing capabilities and the docker run flags', async () => {
    const r = await docker([], 'test/preflight.sh');
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'demo: root here lacks the capabilities NET_ADMIN SYS_ADMIN (a container started without them?)\n' +
        'demo: start the container with: docker run --cap-add NET_ADMIN --cap-add SYS_ADMIN --security-opt apparmor=unconfined ...\n',
    );
  });
});
