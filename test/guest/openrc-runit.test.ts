// The other init systems, each as PID 1 of its own guest built from the .deb
// image with the init files put in place as README.md says: OpenRC
// (openrc-init, the service under supervise-daemon) and runit (runsvdir).
// In both, the application's service waits for addrmap, and the mapping is in
// place before its first connection.
import type { StartedTestContainer } from 'testcontainers';
import { afterAll, describe, expect, it } from 'vitest';
import {
  GuestLab,
  guestSetup,
  PORT,
  addrmapTable,
  appLog,
  connect,
  eventually,
  exec,
  mappingFile,
  mustExec,
  prepareGuestImages,
  pushMappings,
  sinceLastStart,
  status,
  waitForPeer,
  type GuestImages,
} from '../support/guest.js';

const MIN = 60_000;
const STALE = 0x10;
const NEW = 0x11;
const NEWER = 0x12;

let images: GuestImages;
let lab: GuestLab;

guestSetup(async () => {
  images = await prepareGuestImages();
  lab = await GuestLab.create('openrc-runit');
  // The peer has migrated twice already; the guests boot with the mapping.
  await lab.peer(images.base, 'peer', NEWER);
});

afterAll(async () => {
  await lab?.destroy();
}, 2 * MIN);

const bootFiles = () => ({
  '/etc/app/peer': `${lab.addr(STALE)} ${PORT}\n`,
  '/etc/addrmap/mappings.json': mappingFile(2, [
    [lab.addr(STALE), lab.addr(NEWER)],
    [lab.addr(NEW), lab.addr(NEWER)],
  ]),
});

/** The first connection of the application since it started, once there is one. */
const firstConnection = (c: StartedTestContainer) =>
  eventually(
    'the application connecting',
    async () => {
      const ev = sinceLastStart(await appLog(c));
      return ev.length >= 2 && ev[1];
    },
    30_000,
  );

describe('OpenRC guest', () => {
  let guest: StartedTestContainer;

  it(
    'boots with openrc-init: addrmap (flag on the kernel command line) is in place before the application that needs it',
    async () => {
      guest = await lab.guest('openrc', {
        image: images.openrc,
        host: 2,
        privileges: 'system',
        files: { ...bootFiles(), '/etc/platform/cmdline': 'console=ttyS0 quiet addrmap.enabled=1\n' },
      });
      expect(await firstConnection(guest)).toMatchObject({ kind: 'ok', text: 'peer', address: lab.addr(NEWER) });
      // Here nothing stands between /proc/cmdline and addrmap: the real path is read.
      expect(await status(guest)).toMatchObject({ enabled: true, flagSource: 'kernel command line', generation: 2 });
      expect(await mustExec(guest, ['rc-status', 'default'])).toMatch(/addrmap\s+\[\s+started/);
    },
    3 * MIN,
  );

  it(
    "passes OpenRC's own checks: dependency cache, describe, status",
    async () => {
      const update = await exec(guest, ['rc-update', '--update']);
      expect(update.code).toBe(0);
      // Complaints about Debian's own scripts are not ours; none may name addrmap.
      expect(update.stdout + update.stderr).not.toMatch(/addrmap/);
      const describe = await mustExec(guest, ['/etc/init.d/addrmap', 'describe']);
      expect(describe).toMatch(/Keep stale literal IP addresses reachable/);
      expect(describe).toMatch(/reload: /);
      expect((await mustExec(guest, ['/etc/init.d/app', 'ineed'])).trim()).toBe('addrmap');
      expect(await mustExec(guest, ['rc-service', 'addrmap', 'status'])).toMatch(/status: started/);
      expect(await mustExec(guest, ['sh', '-n', '/etc/init.d/addrmap'])).toBe('');
    },
    MIN,
  );

  it(
    'supervise-daemon starts the watcher again when it dies; reload forces a pass; stop leaves the table',
    async () => {
      const supervisor = (await mustExec(guest, ['cat', '/run/addrmap.pid'])).trim();
      const watcher = (await mustExec(guest, ['pgrep', '-P', supervisor])).trim();
      await mustExec(guest, ['kill', '-KILL', watcher]);
      await eventually('a new watcher under supervise-daemon', async () => {
        const now = (await exec(guest, ['pgrep', '-P', supervisor])).stdout.trim();
        return now !== '' && now !== watcher;
      });
      await pushMappings(guest, 3, [[lab.addr(STALE), lab.addr(NEWER)]]);
      await eventually('generation 3 applied', async () => (await status(guest)).generation === 3);
      const t = Date.now();
      await waitForPeer(guest, 'peer', t);

      await mustExec(guest, ['rc-service', 'addrmap', 'reload']);
      // Stopping addrmap stops the application that needs it first.
      await mustExec(guest, ['rc-service', 'addrmap', 'stop']);
      expect((await exec(guest, ['pgrep', '-f', 'addrmap watch'])).code).not.toBe(0);
      expect(await addrmapTable(guest)).toContain(`${lab.addr(STALE)} : ${lab.addr(NEWER)}`);
      expect(await connect(guest, lab.addr(STALE))).toEqual({ ok: true, peer: 'peer', address: lab.addr(NEWER) });
    },
    2 * MIN,
  );
});

describe('runit guest', () => {
  let guest: StartedTestContainer;

  it(
    'boots with runsvdir: the application waits for `sv start addrmap` (./check); settings come from ./conf',
    async () => {
      guest = await lab.guest('runit', {
        image: images.runit,
        host: 3,
        privileges: 'system',
        files: { ...bootFiles(), '/etc/sv/addrmap/conf': 'ADDRMAP_ENABLED=1\n' },
      });
      expect(await firstConnection(guest)).toMatchObject({ kind: 'ok', text: 'peer', address: lab.addr(NEWER) });
      expect(await status(guest)).toMatchObject({ enabled: true, flagSource: 'environment', generation: 2 });
      expect(await mustExec(guest, ['sv', 'check', '/etc/service/addrmap'])).toMatch(/^ok: run:/);
    },
    3 * MIN,
  );

  it(
    'runsv starts the watcher again when it dies; pushes keep working',
    async () => {
      const pidOf = async () => /\(pid (\d+)\)/.exec(await mustExec(guest, ['sv', 'status', '/etc/service/addrmap']))?.[1];
      const before = await pidOf();
      expect(before).toBeDefined();
      await mustExec(guest, ['kill', '-KILL', before!]);
      await eventually('runsv restarting addrmap', async () => {
        const now = await pidOf();
        return now !== undefined && now !== before;
      });
      await pushMappings(guest, 3, [[lab.addr(STALE), lab.addr(NEWER)]]);
      await eventually('generation 3 applied', async () => (await status(guest)).generation === 3);
      expect(await addrmapTable(guest)).not.toContain(`${lab.addr(NEW)} : `);
      await waitForPeer(guest, 'peer', Date.now());
    },
    2 * MIN,
  );
});
