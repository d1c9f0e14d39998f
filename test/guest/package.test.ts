// The artifacts of `npm run package`: what they contain, what the standalone
// executable needs from a guest, and the .deb installing and going away
// cleanly in an image being built (no init system running).
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
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
  });

  it(
    'the executable needs glibc 2.28 or newer, the C++ runtime and nothing else; no Node',
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

  it('the .deb declares its dependencies and conffiles and ships the executable, init files, schema and man page', async () => {
    const deb = art(images.artifacts.deb);
    const field = async (f: string) => (await mustHost('dpkg-deb', ['--field', deb, f])).trim();
    expect(await field('Package')).toBe('addrmap');
    expect(await field('Version')).toBe(version);
    expect(await field('Architecture')).toBe('amd64');
    const depends = await field('Depends');
    for (const d of ['libc6 (>= 2.28)', 'libstdc++6', 'libnftables1 (>= 0.9.7)', 'iproute2', 'conntrack']) expect(depends).toContain(d);
    expect(depends).not.toMatch(/(^|, )nftables/); // the library, not the nft program

    const contents = await mustHost('dpkg-deb', ['--contents', deb]);
    for (const path of [
      './usr/bin/addrmap',
      './usr/bin/addrmap-entrypoint',
      './usr/lib/addrmap/koffi.node',
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
    expect([...entries.keys()].sort()).toEqual(
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
