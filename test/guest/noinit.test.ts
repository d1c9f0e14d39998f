// A guest image with no init system and no Node: the tarball unpacked at /,
// `addrmap run --` as the image's entrypoint and the application as its
// command (a container image booted as a VM whose init runs the entrypoint).
// The kernel command line case starts it through addrmap-entrypoint, the
// shell alias older images were baked with.
import type { StartedTestContainer } from 'testcontainers';
import { afterAll, describe, expect, it } from 'vitest';
import {
  GuestLab,
  guestSetup,
  PORT,
  addrmapTable,
  appLog,
  containerState,
  eventually,
  exec,
  mappingFile,
  mustExec,
  mustHost,
  parseAppLog,
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
/** The application's exit status when it is told to stop (SIGTERM). */
const TERM_STATUS = 7;

let images: GuestImages;
let lab: GuestLab;
let guest: StartedTestContainer;
let peer: StartedTestContainer;

guestSetup(async () => {
  images = await prepareGuestImages();
  lab = await GuestLab.create('noinit');
});

afterAll(async () => {
  await lab?.destroy();
}, 2 * MIN);

async function migratePeer(name: string, to: number): Promise<number> {
  await peer.stop({ remove: true, timeout: 1 });
  const at = Date.now();
  peer = await lab.peer(images.base, name, to);
  return at;
}

/** Processes in the guest: pid, parent pid, command line. */
async function processes(c: StartedTestContainer): Promise<{ pid: number; ppid: number; args: string }[]> {
  const out = await mustExec(c, ['ps', '-e', '-o', 'pid=,ppid=,args=']);
  return out
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(l)!;
      return { pid: Number(m[1]), ppid: Number(m[2]), args: m[3]! };
    });
}

const watchers = async (c: StartedTestContainer) => (await processes(c)).filter((p) => /addrmap watch$/.test(p.args));

describe('no-init guest: the tarball, addrmap run in front of the application', () => {
  it(
    'has no Node and no init; addrmap run is PID 1 and runs the watcher and the application',
    async () => {
      peer = await lab.peer(images.base, 'peer1', STALE);
      guest = await lab.guest('guest', {
        image: images.noinit,
        host: 2,
        privileges: 'net',
        env: { ADDRMAP_ENABLED: '1', APP_TERM_STATUS: String(TERM_STATUS) },
        files: { '/etc/app/peer': `${lab.addr(STALE)} ${PORT}\n` },
      });
      await waitForPeer(guest, 'peer1', 0);

      expect((await exec(guest, ['sh', '-c', 'command -v node || command -v nodejs'])).code).not.toBe(0);
      expect((await mustExec(guest, ['find', '/', '-xdev', '(', '-name', 'node', '-o', '-name', 'nodejs', ')', '-type', 'f'])).trim()).toBe(
        '',
      );
      expect((await exec(guest, ['test', '-e', '/sbin/init'])).code).not.toBe(0);
      expect((await exec(guest, ['test', '-e', '/usr/bin/systemctl'])).code).not.toBe(0);

      const ps = await processes(guest);
      expect(ps.find((p) => p.pid === 1)?.args).toBe('/usr/bin/addrmap run -- /usr/local/bin/app');
      expect(ps.find((p) => p.args.endsWith('/usr/local/bin/app') && p.pid !== 1)?.ppid).toBe(1);
      expect(await watchers(guest)).toHaveLength(1);
      expect(await status(guest)).toMatchObject({ enabled: true, flagSource: 'environment' });
      expect((await mustExec(guest, ['addrmap', 'version'])).trim()).toMatch(/^\d+\.\d+\.\d+/);
    },
    3 * MIN,
  );

  it(
    'follows two migrations with pushes, without restarting the application',
    async () => {
      const appPid = sinceLastStart(await appLog(guest))[0]!.pid;

      let migrated = await migratePeer('peer2', NEW);
      await eventually('the stale address failing', async () => (await appLog(guest)).some((e) => e.t > migrated && e.kind === 'fail'));
      let pushed = Date.now();
      await pushMappings(guest, 1, [[lab.addr(STALE), lab.addr(NEW)]]);
      const ok = await waitForPeer(guest, 'peer2', pushed);
      expect(ok).toMatchObject({ pid: appPid, address: lab.addr(NEW) });

      migrated = await migratePeer('peer3', NEWER);
      await eventually('the stale address failing', async () => (await appLog(guest)).some((e) => e.t > migrated && e.kind === 'fail'));
      pushed = Date.now();
      await pushMappings(guest, 2, [
        [lab.addr(STALE), lab.addr(NEWER)],
        [lab.addr(NEW), lab.addr(NEWER)],
      ]);
      expect(await waitForPeer(guest, 'peer3', pushed)).toMatchObject({ pid: appPid, address: lab.addr(NEWER) });
      expect(sinceLastStart(await appLog(guest))[0]!.pid).toBe(appPid);
      expect(await status(guest)).toMatchObject({ generation: 2 });
    },
    2 * MIN,
  );

  it(
    'reboots: the entrypoint applies the mapping before it starts the application',
    async () => {
      await mustExec(guest, ['nft', 'add', 'table', 'inet', 'boot_marker']);
      const rebooted = Date.now();
      await guest.restart({ timeout: 20 });
      expect((await exec(guest, ['nft', 'list', 'table', 'inet', 'boot_marker'])).code).not.toBe(0);
      const events = await eventually('the application starting and connecting after the reboot', async () => {
        const ev = sinceLastStart(await appLog(guest));
        return ev.length >= 2 && ev[0]!.t > rebooted && ev;
      });
      expect(events[1]).toMatchObject({ kind: 'ok', text: 'peer3', address: lab.addr(NEWER) });
      expect(await watchers(guest)).toHaveLength(1);
    },
    2 * MIN,
  );

  it(
    'starts the watcher again when it dies; pushes keep working',
    async () => {
      const [before] = await watchers(guest);
      await mustExec(guest, ['kill', '-KILL', String(before!.pid)]);
      const [after] = await eventually('a new watcher', async () => {
        const w = await watchers(guest);
        return w.length === 1 && w[0]!.pid !== before!.pid && w;
      });
      expect(after!.ppid).toBe(before!.ppid);
      const pushed = Date.now();
      await pushMappings(guest, 3, [[lab.addr(STALE), lab.addr(NEWER)]]);
      await eventually('generation 3 applied', async () => (await status(guest)).generation === 3);
      expect(await addrmapTable(guest)).not.toContain(`${lab.addr(NEW)} : `);
      await waitForPeer(guest, 'peer3', pushed);
    },
    2 * MIN,
  );

  it(
    'reaps orphaned processes as PID 1',
    async () => {
      // A process whose parent exits is handed to PID 1; it must not stay a zombie when it ends.
      await mustExec(guest, ['sh', '-c', 'sleep 0.5 & exit 0']);
      const ps = await eventually(
        'the orphan ended and reaped (no zombie left)',
        async () => {
          const now = await mustExec(guest, ['ps', '-e', '-o', 'stat=,args=']);
          return !/sleep 0\.5|<defunct>/.test(now) && now;
        },
        5000,
      );
      expect(ps).not.toMatch(/^\s*Z/m);
    },
    MIN,
  );

  it(
    'forwards signals to the application and exits with its status',
    async () => {
      const appPid = sinceLastStart(await appLog(guest))[0]!.pid;
      let t = Date.now();
      await mustHost('docker', ['kill', '--signal', 'USR1', guest.getId()]);
      await eventually('USR1 reaching the application', async () =>
        (await appLog(guest)).find((e) => e.t > t && e.kind === 'signal' && e.text === 'USR1'),
      );
      // USR1 does not stop it.
      await waitForPeer(guest, 'peer3', Date.now());
      expect(sinceLastStart(await appLog(guest))[0]!.pid).toBe(appPid);

      t = Date.now();
      await mustHost('docker', ['stop', '--time', '20', guest.getId()]);
      expect(await containerState(guest)).toEqual({ running: false, exitCode: TERM_STATUS });
      // (The log survives in the stopped container's file system.)
      const tail = sinceLastStart(await readStoppedLog(guest)).filter((e) => e.t > t);
      expect(tail.find((e) => e.kind === 'signal')).toMatchObject({ pid: appPid, text: 'TERM' });
    },
    2 * MIN,
  );

  it(
    'an application that exits ends the guest with its status; apply ran before it started',
    async () => {
      const oneShot = await lab.guest('one-shot', {
        image: images.noinit,
        host: 3,
        privileges: 'net',
        env: { ADDRMAP_ENABLED: '1' },
        files: { '/etc/addrmap/mappings.json': mappingFile(1, [[lab.addr(STALE), lab.addr(NEWER)]]) },
        // The table is there when the application runs: status 5; otherwise 9.
        command: ['sh', '-c', 'nft list table inet addrmap | grep -q "elements = " && exit 5; exit 9'],
      });
      const state = await eventually('the guest exiting', async () => {
        const s = await containerState(oneShot);
        return !s.running && s;
      });
      expect(state.exitCode).toBe(5);
    },
    2 * MIN,
  );

  it(
    'an application without signal handlers is ended by a forwarded SIGINT (128+2)',
    async () => {
      // A shell leaves SIGINT ignored in background processes; the entrypoint restores the default.
      const sleeper = await lab.guest('sleeper', {
        image: images.noinit,
        host: 5,
        privileges: 'net',
        env: { ADDRMAP_ENABLED: '0' },
        command: ['sleep', '600'],
      });
      await eventually('the application running', async () => (await exec(sleeper, ['pgrep', '-x', 'sleep'])).code === 0);
      await mustHost('docker', ['kill', '--signal', 'INT', sleeper.getId()]);
      const state = await eventually('the guest exiting', async () => {
        const s = await containerState(sleeper);
        return !s.running && s;
      });
      expect(state.exitCode).toBe(130);
    },
    2 * MIN,
  );

  it(
    'with ADDRMAP_REQUIRED=1, a refused mapping file keeps the application from starting',
    async () => {
      const strict = await lab.guest('strict', {
        image: images.noinit,
        host: 6,
        privileges: 'net',
        env: { ADDRMAP_ENABLED: '1', ADDRMAP_REQUIRED: '1' },
        files: { '/etc/addrmap/mappings.json': '{"version": 1, "generation": 1, "mappings": [{"from": "fdaa::1", "to": "fdaa::zz"}]}' },
        // Had the application run, the guest would exit with 5.
        command: ['sh', '-c', 'exit 5'],
      });
      const state = await eventually('the guest exiting', async () => {
        const s = await containerState(strict);
        return !s.running && s;
      });
      // apply's "refused" status.
      expect(state.exitCode).toBe(3);
    },
    2 * MIN,
  );

  it(
    'reads the flag from the kernel command line (/proc/cmdline) when the platform sets it there',
    async () => {
      const cmdlineGuest = await lab.guest('cmdline', {
        image: images.noinit,
        host: 4,
        // Mounting a stand-in over /proc/cmdline needs CAP_SYS_ADMIN.
        privileges: 'system',
        entrypoint: ['/usr/local/bin/guest-boot', '/usr/bin/addrmap-entrypoint'],
        command: ['/usr/local/bin/app'],
        files: {
          '/etc/platform/cmdline': 'console=ttyS0 quiet addrmap.enabled=1\n',
          '/etc/app/peer': `${lab.addr(STALE)} ${PORT}\n`,
          '/etc/addrmap/mappings.json': mappingFile(1, [[lab.addr(STALE), lab.addr(NEWER)]]),
        },
      });
      const events = await eventually('the application connecting', async () => {
        const ev = sinceLastStart(await appLog(cmdlineGuest));
        return ev.length >= 2 && ev;
      });
      expect(events[1]).toMatchObject({ kind: 'ok', text: 'peer3' });
      expect(await status(cmdlineGuest)).toMatchObject({ enabled: true, flagSource: 'kernel command line' });
      expect(await mustExec(cmdlineGuest, ['cat', '/proc/cmdline'])).toContain('addrmap.enabled=1');
    },
    2 * MIN,
  );
});

/** The application's log from a stopped container (docker cp writes a tar archive). */
async function readStoppedLog(c: StartedTestContainer) {
  const tar = await mustHost('docker', ['cp', `${c.getId()}:/var/log/app.log`, '-']);
  return parseAppLog(tar.slice(512, tar.indexOf('\0', 512)));
}
