// A Debian guest with systemd as PID 1 and addrmap installed from the .deb,
// enabled by the platform on the kernel command line. Its application
// connects to a peer by literal address; the peer migrates twice, the control
// plane pushes the mapping each time, the guest reboots, and finally the
// package is removed and installed again.
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
  pushMappings,
  sinceLastStart,
  status,
  systemdUp,
  unitProps,
  waitForPeer,
  type GuestImages,
} from '../support/guest.js';

const MIN = 60_000;
// Last groups of the addresses on the lab network: the peer's first address
// (the stale literal in the application's config), then where it migrates.
const STALE = 0x10;
const NEW = 0x11;
const NEWER = 0x12;

let images: GuestImages;
let lab: GuestLab;
let guest: StartedTestContainer;
let peer: StartedTestContainer;

guestSetup(async () => {
  images = await prepareGuestImages();
  lab = await GuestLab.create('systemd');
});

afterAll(async () => {
  await lab?.destroy();
}, 2 * MIN);

/** The peer is destroyed and comes back as a new container on a new address. */
async function migratePeer(name: string, to: number): Promise<number> {
  await peer.stop({ remove: true, timeout: 1 });
  const at = Date.now();
  peer = await lab.peer(images.base, name, to);
  return at;
}

describe('systemd guest: the .deb, systemd as PID 1, flag on the kernel command line', () => {
  it(
    'boots: addrmap is enabled from the kernel command line and started before the application, which reaches its peer',
    async () => {
      peer = await lab.peer(images.base, 'peer1', STALE);
      guest = await lab.guest('guest', {
        image: images.deb,
        host: 2,
        privileges: 'system',
        files: {
          '/etc/app/peer': `${lab.addr(STALE)} ${PORT}\n`,
          '/etc/platform/cmdline': 'console=ttyS0 quiet addrmap.enabled=1\n',
        },
      });
      await systemdUp(guest);

      // The package's config file keeps the feature off; the platform's kernel command line wins.
      expect(JSON.parse(await mustExec(guest, ['cat', '/etc/addrmap/config.json']))).toMatchObject({ enabled: false });
      const s = await eventually('status', async () => {
        const st = await status(guest);
        return st.agent.running && st;
      });
      expect(s).toMatchObject({ enabled: true, flagSource: 'kernel command line' });

      const first = await waitForPeer(guest, 'peer1', 0);
      expect(first.address).toBe(lab.addr(STALE));

      // addrmap's start (apply, then the watcher) completed before the application started.
      const am = await unitProps(guest, 'addrmap.service', ['ActiveEnterTimestampMonotonic', 'ActiveState', 'ExecMainPID']);
      const app = await unitProps(guest, 'app.service', ['ExecMainStartTimestampMonotonic']);
      expect(am.ActiveState).toBe('active');
      expect(Number(am.ActiveEnterTimestampMonotonic)).toBeGreaterThan(0);
      expect(Number(am.ActiveEnterTimestampMonotonic)).toBeLessThanOrEqual(Number(app.ExecMainStartTimestampMonotonic));
    },
    3 * MIN,
  );

  it(
    'the peer migrates: the stale address fails until the push, then works again without restarting the application',
    async () => {
      const appBefore = await unitProps(guest, 'app.service', ['MainPID', 'NRestarts']);
      const migrated = await migratePeer('peer2', NEW);
      await eventually('the stale address failing', async () => (await appLog(guest)).some((e) => e.t > migrated && e.kind === 'fail'));

      const pushed = Date.now();
      await pushMappings(guest, 1, [[lab.addr(STALE), lab.addr(NEW)]]);
      const ok = await waitForPeer(guest, 'peer2', pushed);
      // The application connected to the stale address; the migrated peer answered on its new one.
      expect(ok.address).toBe(lab.addr(NEW));

      const appAfter = await unitProps(guest, 'app.service', ['MainPID', 'NRestarts']);
      expect(appAfter).toEqual(appBefore);
      expect(ok.pid).toBe(Number(appBefore.MainPID));
      expect(await status(guest)).toMatchObject({ enabled: true, generation: 1 });
      expect(await addrmapTable(guest)).toContain(`${lab.addr(STALE)} : ${lab.addr(NEW)}`);
    },
    2 * MIN,
  );

  it(
    'the peer migrates a second time: the next push retargets the stale address, still without a restart',
    async () => {
      const appBefore = await unitProps(guest, 'app.service', ['MainPID', 'NRestarts']);
      const migrated = await migratePeer('peer3', NEWER);
      await eventually('the stale address failing', async () => (await appLog(guest)).some((e) => e.t > migrated && e.kind === 'fail'));

      const pushed = Date.now();
      await pushMappings(guest, 2, [
        [lab.addr(STALE), lab.addr(NEWER)],
        [lab.addr(NEW), lab.addr(NEWER)],
        // A stale address outside the guest's subnet (its host left the network).
        [lab.offNet(STALE), lab.addr(NEWER)],
      ]);
      const ok = await waitForPeer(guest, 'peer3', pushed);
      expect(ok.address).toBe(lab.addr(NEWER));
      expect(await unitProps(guest, 'app.service', ['MainPID', 'NRestarts'])).toEqual(appBefore);
      expect(await status(guest)).toMatchObject({ generation: 2 });
      // The chain resolves to the final address, and the off-subnet stale address
      // gets a host route that follows its target's, so it works as well.
      const table = await addrmapTable(guest);
      expect(table).toContain(`${lab.addr(STALE)} : ${lab.addr(NEWER)}`);
      expect(table).toContain(`${lab.addr(NEW)} : ${lab.addr(NEWER)}`);
      expect(await addrmapRoutes(guest)).toContain(lab.offNet(STALE));
      expect(await connect(guest, lab.offNet(STALE))).toEqual({ ok: true, peer: 'peer3', address: lab.addr(NEWER) });
      expect(await connect(guest, lab.addr(NEW))).toEqual({ ok: true, peer: 'peer3', address: lab.addr(NEWER) });
    },
    2 * MIN,
  );

  it(
    'the guest reboots: a fresh network namespace, and the mapping is in place before the application first connects',
    async () => {
      // A marker in the kernel's network state: a reboot must lose it (and the table with it).
      await mustExec(guest, ['nft', 'add', 'table', 'inet', 'boot_marker']);
      const rebooted = Date.now();
      await guest.restart({ timeout: 20 });
      await systemdUp(guest);
      expect((await exec(guest, ['nft', 'list', 'table', 'inet', 'boot_marker'])).code).not.toBe(0);

      const events = await eventually('the application starting and connecting after the reboot', async () => {
        const ev = sinceLastStart(await appLog(guest));
        return ev.length >= 2 && ev[0]!.t > rebooted && ev;
      });
      // Its very first connection after boot already reached the migrated peer.
      expect(events[1]).toMatchObject({ kind: 'ok', text: 'peer3', address: lab.addr(NEWER) });

      const am = await unitProps(guest, 'addrmap.service', ['ActiveEnterTimestampMonotonic']);
      const app = await unitProps(guest, 'app.service', ['ExecMainStartTimestampMonotonic']);
      expect(Number(am.ActiveEnterTimestampMonotonic)).toBeLessThanOrEqual(Number(app.ExecMainStartTimestampMonotonic));
      expect(await status(guest)).toMatchObject({ enabled: true, flagSource: 'kernel command line', generation: 2 });
    },
    3 * MIN,
  );

  it(
    'the watcher is restarted when it dies, and the mapping stays in place meanwhile',
    async () => {
      const before = await unitProps(guest, 'addrmap.service', ['MainPID', 'NRestarts']);
      const killed = Date.now();
      await mustExec(guest, ['kill', '-KILL', before.MainPID!]);
      const after = await eventually('systemd restarting addrmap', async () => {
        const p = await unitProps(guest, 'addrmap.service', ['MainPID', 'NRestarts', 'ActiveState']);
        return p.ActiveState === 'active' && p.MainPID !== '0' && p.MainPID !== before.MainPID && p;
      });
      expect(Number(after.NRestarts)).toBe(Number(before.NRestarts) + 1);
      // The kernel state did not depend on the process: the application never failed.
      await waitForPeer(guest, 'peer3', Date.now());
      expect((await appLog(guest)).filter((e) => e.t > killed && e.kind === 'fail')).toEqual([]);
      // And the new watcher follows pushes: the same mappings, a new generation.
      await pushMappings(guest, 3, [[lab.addr(STALE), lab.addr(NEWER)]]);
      await eventually('generation 3 applied', async () => (await status(guest)).generation === 3);
      expect(await addrmapTable(guest)).not.toContain(`${lab.addr(NEW)} : `);
    },
    2 * MIN,
  );

  it(
    'runs sandboxed with CAP_NET_ADMIN only; the unit passes systemd-analyze verify',
    async () => {
      const verify = await exec(guest, ['systemd-analyze', 'verify', '/lib/systemd/system/addrmap.service']);
      expect(verify.stderr + verify.stdout).toBe('');
      expect(verify.code).toBe(0);

      const { MainPID } = await unitProps(guest, 'addrmap.service', ['MainPID']);
      const caps = await mustExec(guest, ['grep', '^Cap', `/proc/${MainPID}/status`]);
      // CAP_NET_ADMIN is bit 12, and it is all the watcher has.
      expect(caps).toMatch(/CapEff:\s+0+1000\n/);
      expect(caps).toMatch(/CapBnd:\s+0+1000\n/);
      const nnp = await mustExec(guest, ['grep', '^NoNewPrivs', `/proc/${MainPID}/status`]);
      expect(nnp).toMatch(/NoNewPrivs:\s+1/);

      const security = await exec(guest, ['systemd-analyze', 'security', '--no-pager', 'addrmap.service']);
      const overall = /Overall exposure level for addrmap\.service: ([\d.]+) (\w+)/.exec(security.stdout);
      console.log(`systemd-analyze security: ${overall?.[0]}`);
      expect(overall?.[2]).toMatch(/^(SAFE|OK)$/);
    },
    MIN,
  );

  it(
    'removing the package stops the agent and leaves no table or route behind; purge removes its files; installing starts it; an upgrade causes no gap',
    async () => {
      await pushMappings(guest, 4, [
        [lab.addr(STALE), lab.addr(NEWER)],
        [lab.offNet(STALE), lab.addr(NEWER)],
      ]);
      await eventually('generation 4 applied', async () => (await status(guest)).generation === 4);
      expect(await addrmapTable(guest)).not.toBeNull();
      expect(await addrmapRoutes(guest)).toContain(lab.offNet(STALE));

      const removed = await exec(guest, ['dpkg', '--remove', 'addrmap']);
      expect(removed.code, removed.stderr).toBe(0);
      expect((await exec(guest, ['systemctl', 'is-active', 'addrmap.service'])).stdout.trim()).not.toBe('active');
      expect(await addrmapTable(guest)).toBeNull();
      expect((await addrmapRoutes(guest)).trim()).toBe('');
      expect((await exec(guest, ['test', '-e', '/usr/bin/addrmap'])).code).not.toBe(0);
      // The stale address is just stale again.
      const gone = Date.now();
      await eventually('the stale address failing', async () => (await appLog(guest)).some((e) => e.t > gone && e.kind === 'fail'));
      // The conffile stays until purge.
      expect((await exec(guest, ['test', '-e', '/etc/addrmap/config.json'])).code).toBe(0);

      const purged = await exec(guest, ['dpkg', '--purge', 'addrmap']);
      expect(purged.code, purged.stderr).toBe(0);
      expect((await exec(guest, ['test', '-e', '/etc/addrmap'])).code).not.toBe(0);
      expect((await exec(guest, ['dpkg-query', '-W', '-f', '${db:Status-Status}', 'addrmap'])).stdout).not.toBe('installed');
      expect((await mustExec(guest, ['dpkg', '--audit'])).trim()).toBe('');

      // Installing it on a running system enables and starts the unit.
      await guest.copyFilesToContainer([
        { source: `${images.artifacts.dir}/${images.artifacts.deb}`, target: `/tmp/${images.artifacts.deb}` },
      ]);
      const installed = await exec(guest, ['dpkg', '--install', `/tmp/${images.artifacts.deb}`]);
      expect(installed.code, installed.stderr).toBe(0);
      expect((await exec(guest, ['systemctl', 'is-enabled', 'addrmap.service'])).stdout.trim()).toBe('enabled');
      await eventually(
        'addrmap active again',
        async () => (await exec(guest, ['systemctl', 'is-active', 'addrmap.service'])).stdout.trim() === 'active',
      );
      const pushed = Date.now();
      await pushMappings(guest, 1, [[lab.addr(STALE), lab.addr(NEWER)]]);
      await waitForPeer(guest, 'peer3', pushed);

      // Installing over the installed package (what an upgrade does) restarts the
      // agent, which adopts the table: the application sees no gap.
      const before = await unitProps(guest, 'addrmap.service', ['MainPID']);
      const table = await addrmapTable(guest);
      const upgrading = Date.now();
      const upgrade = await exec(guest, ['dpkg', '--install', `/tmp/${images.artifacts.deb}`]);
      expect(upgrade.code, upgrade.stderr).toBe(0);
      const after = await eventually('addrmap restarted', async () => {
        const p = await unitProps(guest, 'addrmap.service', ['MainPID', 'ActiveState']);
        return p.ActiveState === 'active' && p.MainPID !== before.MainPID && p.MainPID !== '0' && p;
      });
      expect(after.MainPID).not.toBe(before.MainPID);
      await waitForPeer(guest, 'peer3', Date.now());
      expect((await appLog(guest)).filter((e) => e.t > upgrading && e.kind === 'fail')).toEqual([]);
      expect(await addrmapTable(guest)).toBe(table);
    },
    3 * MIN,
  );
});
