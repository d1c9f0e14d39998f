// The tarball in images that give addrmap nothing: one FROM scratch, holding
// only addrmap's tree and a static busybox (in /opt/busybox, for the test
// application: there is no /bin/sh, no libc, no /lib), and one of another
// Debian release than the build machine's, whose own glibc and libraries
// addrmap must not use. In both: the migration scenario with `addrmap run`
// as PID 1.
import type { StartedTestContainer } from 'testcontainers';
import { afterAll, describe, expect, it } from 'vitest';
import {
  GuestLab,
  guestSetup,
  PORT,
  appLog,
  containerState,
  eventually,
  exec,
  mappingFile,
  mustExec,
  mustHost,
  prepareGuestImages,
  pushMappings,
  sinceLastStart,
  status,
  waitForPeer,
  type GuestImages,
} from '../support/guest.js';

const MIN = 60_000;
const STALE = 0x20;
const NEW = 0x21;
const TERM_STATUS = 7;

let images: GuestImages;
let lab: GuestLab;

guestSetup(async () => {
  images = await prepareGuestImages();
  lab = await GuestLab.create('anyimage');
});

afterAll(async () => {
  await lab?.destroy();
}, 2 * MIN);

/** A file's content in a container with no cat of its own on PATH but busybox's, or none at all. */
const cmdline = async (c: StartedTestContainer, pid: number) =>
  (await mustExec(c, ['cat', `/proc/${pid}/cmdline`])).split('\0').filter(Boolean).join(' ');

/** The pid of the process with exactly this command line (busybox has no pgrep). */
async function pidOf(c: StartedTestContainer, args: string): Promise<number> {
  const out = await mustExec(c, [
    'sh',
    '-c',
    'for f in /proc/[0-9]*/cmdline; do p=${f%/cmdline}; echo "${p#/proc/} $(tr "\\0" " " <"$f")"; done',
  ]);
  const hit = out.split('\n').find((l) => l.replace(/^\d+ /, '').trim() === args);
  if (!hit) throw new Error(`no process ${args} in ${out}`);
  return Number(hit.split(' ')[0]);
}

/** The zombies in the guest: state Z in /proc/PID/stat. */
async function zombies(c: StartedTestContainer): Promise<string[]> {
  const out = await mustExec(c, ['sh', '-c', 'for f in /proc/[0-9]*/stat; do cat "$f" 2>/dev/null; echo; done']);
  return out.split('\n').filter((l) => / Z \d+ /.test(l.slice(l.lastIndexOf(')'))));
}

/**
 * The scenario: the application's peer is at a literal address; the peer
 * moves; the push maps the old address to the new one and the same
 * application process reconnects.
 */
async function migration(image: string, name: string, hostPart: number, peerBase: number) {
  const first = await lab.peer(images.base, `${name}-peer1`, peerBase);
  const guest = await lab.guest(name, {
    image,
    host: hostPart,
    privileges: 'net',
    env: { ADDRMAP_ENABLED: '1', APP_TERM_STATUS: String(TERM_STATUS) },
    files: { '/etc/app/peer': `${lab.addr(peerBase)} ${PORT}\n` },
  });
  await waitForPeer(guest, `${name}-peer1`, 0, 20_000);
  const appPid = sinceLastStart(await appLog(guest))[0]!.pid;

  await first.stop({ remove: true, timeout: 1 });
  const moved = Date.now();
  await lab.peer(images.base, `${name}-peer2`, peerBase + 1);
  await eventually('the stale address failing', async () => (await appLog(guest)).some((e) => e.t >= moved - 1000 && e.kind === 'fail'));
  const pushed = Date.now();
  await pushMappings(guest, 1, [[lab.addr(peerBase), lab.addr(peerBase + 1)]]);
  // busybox's date has whole seconds: "after" the push means from its second on.
  const ok = await waitForPeer(guest, `${name}-peer2`, pushed - 1000, 20_000);
  expect(ok).toMatchObject({ pid: appPid });
  expect(await status(guest)).toMatchObject({ enabled: true, flagSource: 'environment', generation: 1, health: 'healthy' });
  return { guest, appPid };
}

describe('FROM scratch: addrmap and a static busybox, nothing else', () => {
  let guest: StartedTestContainer;

  it(
    'follows a migration: literal address, the peer moves, a push, the same application reconnects; addrmap run is PID 1',
    async () => {
      ({ guest } = await migration(images.scratch, 'scratch', 2, STALE));
      expect(await cmdline(guest, 1)).toBe('/usr/bin/addrmap run -- /usr/local/bin/app');
      // Nothing of a userland: no shell where programs look for one, no C library outside addrmap's tree.
      for (const path of ['/bin/sh', '/bin', '/lib', '/lib64', '/usr/lib/x86_64-linux-gnu', '/etc/ld.so.cache']) {
        expect((await exec(guest, ['test', '-e', path])).code, path).not.toBe(0);
      }
      const libcs = (await mustExec(guest, ['find', '/', '-xdev', '-name', 'libc.so*'])).trim().split('\n');
      expect(libcs).toEqual(['/usr/lib/addrmap/lib/libc.so.6']);
      // The addon and libnftables the agent loaded are the tree's.
      const maps = await mustExec(guest, ['cat', `/proc/${await pidOf(guest, '/usr/bin/addrmap watch')}/maps`]);
      const loaded = [...new Set([...maps.matchAll(/ (\/\S+\.so[.\d]*|\S+\.node)$/gm)].map((m) => m[1]!))];
      expect(loaded.length).toBeGreaterThan(5);
      for (const f of loaded) expect(f, f).toMatch(/^\/usr\/lib\/addrmap\//);
      expect(loaded).toContain('/usr/lib/addrmap/lib/libnftables.so.1');
    },
    4 * MIN,
  );

  it(
    'reaps orphaned processes as PID 1',
    async () => {
      await mustExec(guest, ['sh', '-c', 'sleep 0.3 & exit 0']);
      await new Promise((r) => setTimeout(r, 1000));
      await eventually('no zombie left', async () => (await zombies(guest)).length === 0 || undefined, 5000);
    },
    MIN,
  );

  it(
    'forwards TERM to the application and exits with its status',
    async () => {
      await mustHost('docker', ['stop', '--time', '20', guest.getId()]);
      expect(await containerState(guest)).toEqual({ running: false, exitCode: TERM_STATUS });
    },
    MIN,
  );

  it(
    'reads the flag from the kernel command line, and the mapping is in place before the application starts',
    async () => {
      const peer = await lab.peer(images.base, 'cmdline-peer', 0x31);
      const g = await lab.guest('scratch-cmdline', {
        image: images.scratch,
        host: 3,
        // Mounting a stand-in over /proc/cmdline needs CAP_SYS_ADMIN; busybox's shell runs the stand-in's script.
        privileges: 'system',
        entrypoint: ['/opt/busybox/bin/sh', '/usr/local/bin/guest-boot', '/usr/bin/addrmap', 'run', '--'],
        command: ['/usr/local/bin/app'],
        files: {
          '/etc/platform/cmdline': 'console=ttyS0 quiet addrmap.enabled=1\n',
          '/etc/app/peer': `${lab.addr(0x30)} ${PORT}\n`,
          '/etc/addrmap/mappings.json': mappingFile(1, [[lab.addr(0x30), lab.addr(0x31)]]),
        },
      });
      const events = await eventually(
        'the application connecting',
        async () => {
          const ev = sinceLastStart(await appLog(g));
          return ev.length >= 2 && ev;
        },
        20_000,
      );
      // Its first connection already went through: apply ran before it started.
      expect(events[1]).toMatchObject({ kind: 'ok', text: 'cmdline-peer' });
      expect(await status(g)).toMatchObject({ enabled: true, flagSource: 'kernel command line', generation: 1 });
      await peer.stop({ remove: true, timeout: 1 });
    },
    3 * MIN,
  );
});

describe('another Debian release than the build machine', () => {
  it(
    'follows a migration with its own glibc in the image, untouched by addrmap',
    async () => {
      const { guest } = await migration(images.other, 'other', 4, NEW + 0x10);
      expect(await mustExec(guest, ['sh', '-c', '. /etc/os-release && echo $VERSION_CODENAME'])).toBe(`${images.otherSuite}\n`);
      const maps = await mustExec(guest, ['cat', `/proc/${await pidOf(guest, '/usr/bin/addrmap watch')}/maps`]);
      // The image's libraries are there, and none of them is in the agent.
      expect((await exec(guest, ['test', '-e', '/lib/x86_64-linux-gnu/libc.so.6'])).code).toBe(0);
      expect(maps).not.toMatch(/ \/(usr\/)?lib\/x86_64-linux-gnu\//);
      expect(maps).toContain('/usr/lib/addrmap/lib/libc.so.6');
    },
    4 * MIN,
  );
});
