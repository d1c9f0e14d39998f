// The agent needs no `ip` and no `conntrack`: routes, addresses on lo and
// conntrack cleanup all go over netlink in-process. Here the agent runs with a
// PATH holding nothing at all (node is started by its absolute path), through
// a push that needs each of them and back out with the flag off.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADDR, ADDRMAP, Lab, logEvents, mappingFile, must, run } from '../support/lab.js';

const OLD = 'fdaa:0:18:a7b:7d::77';
const NEW = 'fdaa:0:18:a7b:c2::77';

let lab: Lab;
let empty: string;
let ip: string;
beforeEach(async () => {
  lab = await Lab.create();
  await lab.startPeer();
  // The guest's current address, which the peer routes back to it.
  await lab.exec(lab.guest, 'ip', ['-6', 'addr', 'add', `${NEW}/128`, 'dev', 'gv', 'nodad']);
  await lab.exec(lab.peer, 'ip', ['-6', 'route', 'add', `${NEW}/128`, 'via', ADDR.guest6]);
  empty = await mkdtemp(join(tmpdir(), 'addrmap-nopath-'));
  // The launcher (`ip netns exec`) is the test's; it is found before PATH is emptied.
  ip = (await must('sh', ['-c', 'command -v ip'])).stdout.trim();
});
afterEach(async () => {
  await lab?.destroy();
  await rm(empty, { recursive: true, force: true });
});

const apply = (env: NodeJS.ProcessEnv = {}) =>
  run(ip, ['netns', 'exec', lab.guest, process.execPath, ADDRMAP, 'apply'], { env: lab.env({ PATH: empty, ...env }) });

describe('with neither ip nor conntrack on its PATH', () => {
  it('the agent adds its host routes and its address on lo, cleans the stale flow, and removes both again with the flag off', async () => {
    await lab.push(mappingFile(1, [[ADDR.staleUnrouted4, ADDR.new4]]));
    expect((await apply()).code).toBe(0);
    // A flow to the stale address before its mapping: its entry stays untranslated until cleaned.
    await lab.udp(ADDR.stale6);

    await lab.push({
      version: 1,
      generation: 2,
      mappings: [
        { from: ADDR.staleUnrouted4, to: ADDR.new4 },
        { from: ADDR.staleUnrouted6, to: ADDR.new6 },
        { from: ADDR.stale6, to: ADDR.new6 },
      ],
      self: [{ from: OLD, to: NEW }],
    });
    const r = await apply();
    expect(r.code).toBe(0);
    const events = logEvents(r.stdout);
    expect(events.filter((e) => e.level !== undefined && Number(e.level) >= 40)).toEqual([]);
    expect(events.find((e) => e.event === 'conntrack_cleaned')).toMatchObject({ targets: 2, removed: 1, via: 'ctnetlink' });
    const routes = await lab.routes();
    expect(routes).toContain(`${ADDR.staleUnrouted6} via ${ADDR.peer6} dev gv proto 173`);
    expect(routes).toContain(`${ADDR.staleUnrouted4} via ${ADDR.peer4} dev gv proto 173`);
    expect((await lab.exec(lab.guest, 'ip', ['-6', 'addr', 'show', 'dev', 'lo'])).stdout).toContain(`inet6 ${OLD}/128`);
    expect(await lab.tcp(ADDR.staleUnrouted6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
    expect(await lab.tcp(ADDR.staleUnrouted4)).toEqual({ ok: true, reply: `peer ${ADDR.new4}` });
    expect(await lab.udp(ADDR.stale6)).toMatchObject({ ok: true });

    expect((await apply({ ADDRMAP_ENABLED: '0' })).code).toBe(0);
    expect(await lab.routes()).not.toContain('proto 173');
    expect((await lab.exec(lab.guest, 'ip', ['-6', 'addr', 'show', 'dev', 'lo'])).stdout).not.toContain(OLD);
  });
});
