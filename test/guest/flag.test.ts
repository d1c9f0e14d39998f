// The feature flag end to end in a systemd guest with the .deb: off by
// default (no table, even with a mapping pushed); flipped in the config file
// at run time, both ways, without a restart; overridden by the environment
// (/etc/default/addrmap) and by the kernel command line at boot.
import type { StartedTestContainer } from 'testcontainers';
import { afterAll, describe, expect, it } from 'vitest';
import {
  GuestLab,
  guestSetup,
  PORT,
  addrmapRoutes,
  addrmapTable,
  appLog,
  connect,
  eventually,
  exec,
  mustExec,
  prepareGuestImages,
  pushFile,
  pushMappings,
  status,
  systemdUp,
  unitProps,
  waitForPeer,
  type GuestImages,
} from '../support/guest.js';

const MIN = 60_000;
const STALE = 0x10;
const NEW = 0x11;

let images: GuestImages;
let lab: GuestLab;
let guest: StartedTestContainer;

guestSetup(async () => {
  images = await prepareGuestImages();
  lab = await GuestLab.create('flag');
});

afterAll(async () => {
  await lab?.destroy();
}, 2 * MIN);

const config = (enabled: boolean) => JSON.stringify({ enabled, logLevel: 'info' }) + '\n';

async function failsSince(t: number) {
  await eventually('the stale address failing', async () => (await appLog(guest)).some((e) => e.t > t && e.kind === 'fail'));
}

describe('the feature flag in a systemd guest', () => {
  it(
    'is off by default: no table, even with a mapping pushed',
    async () => {
      await lab.peer(images.base, 'peer', NEW); // migrated already; nobody has the stale address
      guest = await lab.guest('guest', {
        image: images.deb,
        host: 2,
        privileges: 'system',
        // The platform did not set the flag on this VM's command line.
        files: { '/etc/app/peer': `${lab.addr(STALE)} ${PORT}\n`, '/etc/platform/cmdline': 'console=ttyS0 quiet\n' },
      });
      await systemdUp(guest);
      await pushMappings(guest, 1, [
        [lab.addr(STALE), lab.addr(NEW)],
        [lab.offNet(STALE), lab.addr(NEW)],
      ]);
      const s = await eventually('the agent seeing the push', async () => {
        const st = await status(guest);
        return st.agent.running && st;
      });
      expect(s).toMatchObject({ enabled: false, flagSource: 'config file' });
      // Give the watcher time to act on the push, were it (wrongly) enabled.
      await failsSince(Date.now() + 1000);
      expect(await addrmapTable(guest)).toBeNull();
      expect((await addrmapRoutes(guest)).trim()).toBe('');
      expect(await connect(guest, lab.addr(STALE))).toMatchObject({ ok: false });
    },
    3 * MIN,
  );

  it(
    'flipping "enabled" in the config file takes effect at once, both ways, without a restart',
    async () => {
      const agent = await unitProps(guest, 'addrmap.service', ['MainPID', 'NRestarts']);

      const t = Date.now();
      await pushFile(guest, '/etc/addrmap/config.json', config(true));
      const on = await waitForPeer(guest, 'peer', t);
      expect(on.address).toBe(lab.addr(NEW));
      expect(await addrmapTable(guest)).toContain(`${lab.addr(STALE)} : ${lab.addr(NEW)}`);
      expect(await addrmapRoutes(guest)).toContain(lab.offNet(STALE));
      expect(await status(guest)).toMatchObject({ enabled: true, flagSource: 'config file', generation: 1 });

      await pushFile(guest, '/etc/addrmap/config.json', config(false));
      await eventually('the table removed', async () => (await addrmapTable(guest)) === null);
      expect((await addrmapRoutes(guest)).trim()).toBe('');
      await failsSince(Date.now());
      expect(await status(guest)).toMatchObject({ enabled: false, flagSource: 'config file' });

      const again = Date.now();
      await pushFile(guest, '/etc/addrmap/config.json', config(true));
      await waitForPeer(guest, 'peer', again);

      // All of it without restarting the agent.
      expect(await unitProps(guest, 'addrmap.service', ['MainPID', 'NRestarts'])).toEqual(agent);
    },
    2 * MIN,
  );

  it(
    'the environment (/etc/default/addrmap) wins over the config file',
    async () => {
      await pushFile(guest, '/etc/default/addrmap', 'ADDRMAP_ENABLED=0\n');
      await mustExec(guest, ['systemctl', 'restart', 'addrmap.service']);
      await eventually('the table removed', async () => (await addrmapTable(guest)) === null);
      expect(await status(guest)).toMatchObject({ enabled: false, flagSource: 'environment' });
      expect(JSON.parse(await mustExec(guest, ['cat', '/etc/addrmap/config.json']))).toMatchObject({ enabled: true });

      await pushFile(guest, '/etc/default/addrmap', '# ADDRMAP_ENABLED=1\n');
      const t = Date.now();
      await mustExec(guest, ['systemctl', 'restart', 'addrmap.service']);
      await waitForPeer(guest, 'peer', t);
      expect(await status(guest)).toMatchObject({ enabled: true, flagSource: 'config file' });
    },
    2 * MIN,
  );

  it(
    'the kernel command line wins over the config file: addrmap.enabled=0 at boot means no table',
    async () => {
      await pushFile(guest, '/etc/platform/cmdline', 'console=ttyS0 quiet addrmap.enabled=0\n');
      await guest.restart({ timeout: 20 });
      await systemdUp(guest);
      const s = await eventually('the agent running', async () => {
        const st = await status(guest);
        return st.agent.running && st;
      });
      expect(s).toMatchObject({ enabled: false, flagSource: 'kernel command line' });
      expect(await addrmapTable(guest)).toBeNull();
      expect((await exec(guest, ['cat', '/etc/addrmap/config.json'])).stdout).toContain('true');
      await failsSince(Date.now());
    },
    3 * MIN,
  );
});
