// The artifacts of `npm run package`: what they contain, that the installed
// tree needs nothing from a guest (every ELF in it resolves every library
// inside it, for both architectures), and the .deb installing and going away
// cleanly in an image being built (no init system running).
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkTree } from '../../packaging/check-tree.mjs';
import type { StartedTestContainer } from 'testcontainers';
import { afterAll, describe, expect, it } from 'vitest';
import {
  GuestLab,
  guestSetup,
  ROOT,
  addrmapTable,
  exec,
  mappingFile,
  mustExec,
  mustHost,
  prepareGuestImages,
  type GuestImages,
} from '../support/guest.js';

const MIN = 60_000;
let images: GuestImages;
let lab: GuestLab;
let version: string;
const art = (name: string) => join(images.artifacts.dir, name);

guestSetup(async () => {
  images = await prepareGuestImages();
  lab = await GuestLab.create('package');
  version = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')).version;
});

afterAll(async () => {
  await lab?.destroy();
}, 2 * MIN);

describe('the artifacts', () => {
  it('are the standalone executable, the .deb and the tarball, with checksums', async () => {
    const { exe, deb, tarball } = images.artifacts;
    const sums = await readFile(art('SHA256SUMS'), 'utf8');
    for (const name of [exe, deb, tarball]) {
      const digest = createHash('sha256')
        .update(await readFile(art(name)))
        .digest('hex');
      expect(sums).toContain(`${digest}  ${name}\n`);
    }
    expect(deb).toBe(`addrmap_${version}_amd64.deb`);
    expect(tarball).toBe(`addrmap-${version}-linux-x64.tar.gz`);
    // Both architectures.
    expect(images.artifacts.tarballs).toEqual({ x64: tarball, arm64: `addrmap-${version}-linux-arm64.tar.gz` });
    expect(sums).toContain(`  addrmap_${version}_arm64.deb\n`);
  });

  for (const [arch, machine, loader] of [
    ['x64', 'x86-64', 'ld-linux-x86-64.so.2'],
    ['arm64', 'arm64', 'ld-linux-aarch64.so.1'],
  ] as const) {
    it(`${arch}: every ELF file of the tree finds its interpreter and every library it needs inside the tree`, async () => {
      const root = await mkdtemp(join(tmpdir(), `addrmap-tree-${arch}-`));
      try {
        await mustHost('tar', ['-xzf', art(images.artifacts.tarballs[arch]!), '-C', root]);
        const { files, problems } = await checkTree(root);
        expect(problems).toEqual([]);
        const lib = '/usr/lib/addrmap/lib';
        expect(files.find((f) => f.path === '/usr/bin/addrmap')).toMatchObject({ machine, interpreter: `${lib}/${loader}` });
        expect(files.map((f) => f.path).sort()).toEqual(
          [
            '/usr/bin/addrmap',
            '/usr/lib/addrmap/koffi.node',
            ...[
              loader,
              'libc.so.6',
              'libdl.so.2',
              'libgcc_s.so.1',
              'libgmp.so.10',
              'libjansson.so.4',
              'libm.so.6',
              'libmnl.so.0',
              'libnftables.so.1',
              'libnftnl.so.11',
              'libpthread.so.0',
              'libstdc++.so.6',
              'libxtables.so.12',
            ].map((l) => `${lib}/${l}`),
          ].sort(),
        );
        for (const f of files) expect(f.machine, f.path).toBe(machine);
        // Each bundled package's copyright file, and the versions recorded.
        const info = JSON.parse(await readFile(art('BUILD-INFO.json'), 'utf8'));
        const packages = info.architectures[arch].bundled.packages as { name: string; version: string }[];
        expect(packages.map((p) => p.name)).toEqual(expect.arrayContaining(['libc6', 'libnftables1', 'libstdc++6']));
        for (const p of packages) {
          expect(p.version).toMatch(/^\S+$/);
          expect((await readFile(join(root, 'usr/share/doc/addrmap/bundled', p.name, 'copyright'), 'utf8')).length).toBeGreaterThan(100);
        }
      } finally {
        await rm(root, { recursive: true, force: true });
      }
    });
  }

  it(
    "out/addrmap (the same program on the build machine's own glibc, for benchmarks and quick checks) needs glibc 2.28 or newer and the C++ runtime; no Node",
    async () => {
      const exe = art(images.artifacts.exe);
      const needed = [...(await mustHost('readelf', ['-d', exe])).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)]
        .map((m) => m[1])
        .sort();
      expect(needed).toEqual([
        'ld-linux-x86-64.so.2',
        'libc.so.6',
        'libdl.so.2',
        'libgcc_s.so.1',
        'libm.so.6',
        'libpthread.so.0',
        'libstdc++.so.6',
      ]);
      const glibc = [...(await mustHost('objdump', ['-T', exe])).matchAll(/GLIBC_(\d+)\.(\d+)/g)].map(
        (m) => Number(m[1]) * 1000 + Number(m[2]),
      );
      expect(Math.max(...glibc)).toBe(2028);

      // In a guest without Node: the base image (debootstrap minbase).
      const guest = await plainGuest('exe');
      expect((await exec(guest, ['sh', '-c', 'command -v node || command -v nodejs'])).code).not.toBe(0);
      await guest.copyFilesToContainer([{ source: exe, target: '/usr/local/bin/addrmap', mode: 0o755 }]);
      const versionRun = await exec(guest, ['addrmap', 'version']);
      expect(versionRun).toMatchObject({ code: 0, stderr: '' });
      expect(versionRun.stdout.trim()).toBe(version);
      const help = await mustExec(guest, ['addrmap', '--help']);
      for (const section of [
        'Usage: addrmap <command>',
        'Commands:',
        'Options:',
        '--config PATH',
        'ADDRMAP_ENABLED',
        'addrmap.enabled',
        'Exit codes:',
      ]) {
        expect(help).toContain(section);
      }
      // Usage errors are reported as such, also from the standalone build.
      const wrong = await exec(guest, ['addrmap', 'frobnicate']);
      expect(wrong.code).toBe(2);
    },
    3 * MIN,
  );

  it('the .deb depends on nothing and declares its conffiles; it ships the tree, init files, schema and man page', async () => {
    const deb = art(images.artifacts.deb);
    const field = async (f: string) => (await mustHost('dpkg-deb', ['--field', deb, f])).trim();
    expect(await field('Package')).toBe('addrmap');
    expect(await field('Version')).toBe(version);
    expect(await field('Architecture')).toBe('amd64');
    // Self-contained: no Depends, no Pre-Depends, no Recommends.
    for (const f of ['Depends', 'Pre-Depends', 'Recommends']) expect(await field(f)).toBe('');

    const contents = await mustHost('dpkg-deb', ['--contents', deb]);
    for (const path of [
      './usr/bin/addrmap',
      './usr/bin/addrmap-entrypoint',
      './usr/lib/addrmap/koffi.node',
      './usr/lib/addrmap/lib/libc.so.6',
      './usr/lib/addrmap/lib/ld-linux-x86-64.so.2',
      './usr/lib/addrmap/lib/libnftables.so.1',
      './usr/share/doc/addrmap/bundled/libc6/copyright',
      './etc/addrmap/config.json',
      './etc/default/addrmap',
      './lib/systemd/system/addrmap.service',
      './lib/systemd/system/addrmap-apply.service',
      './lib/systemd/system/addrmap-apply.path',
      './lib/systemd/system/addrmap-check.timer',
      './usr/share/addrmap/mapping-file.schema.json',
      './usr/share/addrmap/init/openrc/addrmap',
      './usr/share/addrmap/init/openrc/addrmap.confd',
      './usr/share/addrmap/init/runit/run',
      './usr/share/addrmap/init/runit/check',
      './usr/share/man/man8/addrmap.8.gz',
      './usr/share/doc/addrmap/copyright',
    ]) {
      expect(contents).toMatch(new RegExp(` root/root .* ${path.replaceAll('.', '\\.')}\\n`));
    }
    expect(contents).toMatch(/-rwxr-xr-x root\/root .* \.\/usr\/bin\/addrmap\n/);
    const control = await mustHost('dpkg-deb', ['--ctrl-tarfile', deb]);
    expect(control).toContain('/etc/addrmap/config.json\n/etc/default/addrmap\n');
  });

  it(
    'the .deb installs into an image being built (flag off), and removes and purges cleanly, kernel state included',
    async () => {
      const guest = await plainGuest('deb');
      const deb = `/tmp/${images.artifacts.deb}`;
      await guest.copyFilesToContainer([{ source: art(images.artifacts.deb), target: deb }]);
      const install = await exec(guest, ['dpkg', '--install', deb]);
      expect(install.code, install.stdout + install.stderr).toBe(0);
      expect(JSON.parse(await mustExec(guest, ['cat', '/etc/addrmap/config.json']))).toMatchObject({ enabled: false });
      // Enabled for the next boot (deb-systemd-helper), not started: systemd does not run here.
      expect((await exec(guest, ['test', '-L', '/etc/systemd/system/multi-user.target.wants/addrmap.service'])).code).toBe(0);
      expect((await exec(guest, ['pgrep', '-f', 'addrmap watch'])).code).not.toBe(0);

      // Off by default: apply does nothing.
      await guest.copyContentToContainer([
        { content: mappingFile(1, [['fd00:aaaa::1', 'fd00:bbbb::1']]), target: '/etc/addrmap/mappings.json', mode: 0o644 },
      ]);
      expect((await exec(guest, ['addrmap', 'apply'])).code).toBe(0);
      expect(await addrmapTable(guest)).toBeNull();
      // On: the table appears.
      const apply = await exec(guest, ['env', 'ADDRMAP_ENABLED=1', 'addrmap', 'apply']);
      expect(apply.code, apply.stderr).toBe(0);
      const table = await addrmapTable(guest);
      expect(table).toContain('fd00:aaaa::1 : fd00:bbbb::1');
      // The executable found its FFI addon: conntrack went over ctnetlink.
      expect(apply.stdout).toContain('"via":"ctnetlink"');

      // Installing again (what an upgrade does) leaves the kernel state alone.
      expect((await exec(guest, ['dpkg', '--install', deb])).code).toBe(0);
      expect(await addrmapTable(guest)).toBe(table);

      const remove = await exec(guest, ['dpkg', '--remove', 'addrmap']);
      expect(remove.code, remove.stderr).toBe(0);
      expect(await addrmapTable(guest)).toBeNull();
      expect((await mustExec(guest, ['ip', '-6', 'route', 'show', 'table', 'all', 'proto', '173'])).trim()).toBe('');
      expect((await exec(guest, ['test', '-e', '/usr/bin/addrmap'])).code).not.toBe(0);
      expect((await exec(guest, ['test', '-e', '/etc/addrmap/config.json'])).code).toBe(0);

      const purge = await exec(guest, ['dpkg', '--purge', 'addrmap']);
      expect(purge.code, purge.stderr).toBe(0);
      for (const path of [
        '/etc/addrmap',
        '/etc/default/addrmap',
        '/run/addrmap',
        '/usr/share/addrmap',
        '/etc/systemd/system/multi-user.target.wants/addrmap.service',
      ]) {
        expect((await exec(guest, ['test', '-e', path])).code, path).not.toBe(0);
      }
      expect((await mustExec(guest, ['dpkg', '--audit'])).trim()).toBe('');
    },
    3 * MIN,
  );

  it('the tarball holds the same files, relative to /, with no directory entries', async () => {
    const listing = (await mustHost('tar', ['-tvzf', art(images.artifacts.tarball)])).trim().split('\n');
    const entries = new Map(listing.map((l) => [l.split(/\s+/).at(-1)!, l]));
    const own = [...entries.keys()].filter((p) => !p.startsWith('usr/lib/addrmap/lib/') && !p.startsWith('usr/share/doc/addrmap/bundled/'));
    expect([...entries.keys()].filter((p) => p.startsWith('usr/lib/addrmap/lib/'))).toHaveLength(13);
    expect(own.sort()).toEqual(
      [
        'etc/addrmap/config.json',
        'etc/default/addrmap',
        'usr/bin/addrmap',
        'usr/bin/addrmap-entrypoint',
        'usr/lib/addrmap/koffi.node',
        'usr/lib/systemd/system/addrmap.service',
        'usr/lib/systemd/system/addrmap-apply.service',
        'usr/lib/systemd/system/addrmap-apply.path',
        'usr/lib/systemd/system/addrmap-check.timer',
        'usr/share/addrmap/init/openrc/addrmap',
        'usr/share/addrmap/init/openrc/addrmap.confd',
        'usr/share/addrmap/init/runit/check',
        'usr/share/addrmap/init/runit/run',
        'usr/share/addrmap/mapping-file.schema.json',
        'usr/share/doc/addrmap/README.md',
        ...['architecture', 'benchmarks', 'guarantees', 'images', 'operations', 'testing'].map((d) => `usr/share/doc/addrmap/docs/${d}.md`),
        'usr/share/doc/addrmap/copyright',
        'usr/share/man/man8/addrmap.8.gz',
      ].sort(),
    );
    for (const l of listing) expect(l).toMatch(/^-rw[-x]r-[-x]r-[-x] 0\/0 /);
    expect(entries.get('usr/bin/addrmap')).toMatch(/^-rwxr-xr-x/);
    expect(entries.get('usr/bin/addrmap-entrypoint')).toMatch(/^-rwxr-xr-x/);
  });
});

let nextHost = 0x20;

/** A container from the base image (no init, no Node) that just waits. */
function plainGuest(name: string): Promise<StartedTestContainer> {
  return lab.guest(name, { image: images.base, host: nextHost++, privileges: 'net', command: ['sleep', 'infinity'] });
}
