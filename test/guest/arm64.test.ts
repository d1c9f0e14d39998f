// The arm64 tree on arm64: the tarball unpacked into a root that holds
// nothing else but Debian's arm64 busybox, run on this x86-64 machine two
// ways. Under qemu-user (Debian's qemu-user-static) for what needs no
// nf_tables (qemu-user passes no NETLINK_NETFILTER socket to the kernel: it
// answers EPROTONOSUPPORT itself); and booted as a real arm64 guest, Debian's
// arm64 kernel in qemu-system-aarch64 (TCG, test/vm/run.sh), where apply
// installs the table and status reads it back from that kernel.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { guestSetup, mappingFile, mustHost, prepareGuestImages, ROOT, type GuestImages } from '../support/guest.js';

const MIN = 60_000;
const run = promisify(execFile);
let images: GuestImages;
let root: string;
let version: string;

guestSetup(async () => {
  images = await prepareGuestImages();
  version = JSON.parse((await run('cat', [join(ROOT, 'package.json')])).stdout).version;
  // Inside /var/tmp: run.sh shares it with the guest and links the kernel's modules into it.
  root = await mkdtemp('/var/tmp/addrmap-arm64-root-');
  await mustHost('tar', ['-xzf', join(images.artifacts.dir, images.artifacts.tarballs.arm64!), '-C', root]);
  // Debian's arm64 busybox (test/vm/kernel.sh keeps one beside that kernel) as /bin/sh and the kernel's modprobe.
  const kernel = (
    await run('bash', [join(ROOT, 'test/vm/kernel.sh'), 'bookworm'], { env: { ...process.env, ADDRMAP_VM_ARCH: 'arm64' } })
  ).stdout.trim();
  for (const d of ['bin', 'sbin', 'proc', 'sys', 'dev', 'run', 'tmp', 'root', 'etc/addrmap'])
    await mkdir(join(root, d), { recursive: true });
  await mustHost('cp', [join(kernel, 'busybox'), join(root, 'bin/busybox')]);
  const applets = (await run('qemu-aarch64-static', [join(root, 'bin/busybox'), '--list'])).stdout.split('\n').filter(Boolean);
  for (const a of applets) if (a !== 'busybox') await symlink('busybox', join(root, 'bin', a));
  await symlink('/bin/busybox', join(root, 'sbin/modprobe'));
  await writeFile(join(root, 'etc/addrmap/mappings.json'), mappingFile(1, [['fd00:aa::1', 'fd00:bb::2']]), { mode: 0o644 });
}, 20 * MIN);

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe('the arm64 tree', () => {
  it('under qemu-user: version and help, with nothing from this machine (the tree as the root)', async () => {
    const exe = join(root, 'usr/bin/addrmap');
    // Found on this PATH; the executable itself gets none.
    const qemu = (await run('sh', ['-c', 'command -v qemu-aarch64-static'])).stdout.trim();
    const v = await run(qemu, ['-L', root, exe, 'version'], { env: { PATH: '' } });
    expect(v.stdout.trim()).toBe(version);
    const help = await run(qemu, ['-L', root, exe, 'help'], { env: { PATH: '' } });
    expect(help.stdout).toContain('run -- CMD ARGS');
  });

  it(
    "on Debian's arm64 kernel: apply installs the table, status reads it back from the kernel, healthy",
    async () => {
      // The target needs a route (a connected one on lo), or status is rightly degraded.
      const job = [
        'ip -6 addr add fd00:bb::9/64 dev lo',
        'addrmap version',
        'ADDRMAP_ENABLED=1 ADDRMAP_RESIDENT=0 addrmap apply >/tmp/apply.log 2>&1; echo "apply=$?"',
        'addrmap status --json >/tmp/status.json; echo "status=$?"',
        'echo STATUS_JSON_BEGIN; cat /tmp/status.json; echo STATUS_JSON_END',
      ].join('; ');
      const r = await run('bash', [join(ROOT, 'test/vm/run.sh'), 'bookworm', '--timeout', '900', '--', '/bin/sh', '-c', job], {
        cwd: '/',
        env: { ...process.env, ADDRMAP_VM_ARCH: 'arm64', ADDRMAP_VM_ROOT: root },
        maxBuffer: 16 * 1024 * 1024,
        timeout: 15 * MIN,
      }).catch((e: { stdout?: string; stderr?: string; message: string }) => {
        throw new Error(`run.sh failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
      });
      const out = r.stdout.replaceAll('\r', '');
      expect(out).toContain(`${version}\n`);
      expect(out).toContain('apply=0\n');
      expect(out).toContain('status=0\n');
      const report = JSON.parse(out.slice(out.indexOf('STATUS_JSON_BEGIN') + 17, out.indexOf('STATUS_JSON_END')));
      expect(report).toMatchObject({ health: 'healthy', source: 'kernel', generation: 1, drift: [] });
      expect(report.mappings).toEqual([expect.objectContaining({ from: 'fd00:aa::1', to: 'fd00:bb::2', inKernel: true })]);
    },
    16 * MIN,
  );
});
