// A Debian guest baked in the mode without a resident agent: the .deb, then
// addrmap.service disabled and addrmap-apply.path, addrmap-check.timer
// enabled, as docs/images.md says. Pushes are applied by a one-shot
// `addrmap apply` that the path unit starts; drift is repaired by the timer's
// next apply; between them no addrmap process exists.
import type { StartedTestContainer } from 'testcontainers';
import { afterAll, describe, expect, it } from 'vitest';
import {
  GuestLab,
  guestSetup,
  PORT,
  addrmapTable,
  appLog,
  eventually,
  exec,
  mustExec,
  prepareGuestImages,
  pushMappings,
  status,
  systemdUp,
  unitProps,
  waitForPeer,
  type GuestImages,
} from '../support/guest.js';

const MIN = 60_000;
const STALE = 0x20;
const NEW = 0x21;

let images: GuestImages;
let lab: GuestLab;
let guest: StartedTestContainer;
let peer: StartedTestContainer;

guestSetup(async () => {
  images = await prepareGuestImages();
  lab = await GuestLab.create('idle');
});

afterAll(async () => {
  await lab?.destroy();
}, 2 * MIN);

/** addrmap processes in the guest (its one-shot applies included). */
async function addrmapProcesses(): Promise<string[]> {
  const r = await exec(guest, ['sh', '-c', 'for p in /proc/[0-9]*; do tr "\\0" " " < $p/cmdline 2>/dev/null; echo; done']);
  return r.stdout.split('\n').filter((l) => /\/usr\/bin\/addrmap\b/.test(l));
}

describe('systemd guest without a resident agent: a path unit and a timer', () => {
  it(
    'boots with the mappings applied and no addrmap process left; a push is applied by the path unit; drift by the timer',
    async () => {
      peer = await lab.peer(images.base, 'peer1', STALE);
      guest = await lab.guest('guest', {
        image: images.idle,
        host: 2,
        privileges: 'system',
        files: {
          '/etc/app/peer': `${lab.addr(STALE)} ${PORT}\n`,
          '/etc/platform/cmdline': 'console=ttyS0 quiet addrmap.enabled=1\n',
        },
      });
      await systemdUp(guest);
      expect(await unitProps(guest, 'addrmap.service', ['UnitFileState', 'ActiveState'])).toEqual({
        UnitFileState: 'disabled',
        ActiveState: 'inactive',
      });
      expect((await unitProps(guest, 'addrmap-apply.path', ['ActiveState'])).ActiveState).toBe('active');
      expect((await unitProps(guest, 'addrmap-check.timer', ['ActiveState'])).ActiveState).toBe('active');
      const first = await waitForPeer(guest, 'peer1', 0);
      expect(first.address).toBe(lab.addr(STALE));
      // The boot's apply ran and exited: waiting for the first push, with nothing resident.
      expect(await eventually('the boot apply done', async () => (await addrmapProcesses()).length === 0)).toBe(true);
      expect(await status(guest)).toMatchObject({ enabled: true, flagSource: 'kernel command line' });

      // The peer migrates; the push alone brings it back: the path unit runs apply.
      await peer.stop({ remove: true, timeout: 1 });
      const migrated = Date.now();
      peer = await lab.peer(images.base, 'peer2', NEW);
      await eventually('the stale address failing', async () => (await appLog(guest)).some((e) => e.t > migrated && e.kind === 'fail'));
      const pushed = Date.now();
      await pushMappings(guest, 1, [[lab.addr(STALE), lab.addr(NEW)]]);
      const ok = await waitForPeer(guest, 'peer2', pushed, 20_000);
      expect(ok.address).toBe(lab.addr(NEW));
      expect(await addrmapTable(guest)).toContain(`${lab.addr(STALE)} : ${lab.addr(NEW)}`);
      // No resident agent is the design here, not a problem: healthy.
      expect(await status(guest)).toMatchObject({ generation: 1, health: 'healthy', agent: { running: false, resident: false } });
      expect(await eventually('the apply done', async () => (await addrmapProcesses()).length === 0)).toBe(true);

      // Another tool deletes the table: the timer's next apply (within a minute) puts it back.
      await mustExec(guest, ['nft', 'delete', 'table', 'inet', 'addrmap']);
      const table = await eventually('the table repaired by the timer', async () => (await addrmapTable(guest)) ?? false, 90_000);
      expect(table).toContain(`${lab.addr(STALE)} : ${lab.addr(NEW)}`);
    },
    5 * MIN,
  );
});
