// addrmap touches only what it made: a route someone else made for a stale
// address is never replaced or removed, only reported; an address on lo is
// removed only if addrmap recorded adding it.
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADDR, Lab, logEvents, mappingFile } from '../support/lab.js';

let lab: Lab;
beforeEach(async () => {
  lab = await Lab.create();
  await lab.startPeer();
});
afterEach(async () => {
  await lab?.destroy();
});

describe('routes addrmap did not make', () => {
  it("an administrator's route for a stale address stays as it is, through the mapping and after it; the mapping is reported degraded, naming the route", async () => {
    // Not towards the target (which goes via the peer): on-link on gv, with a metric of its own.
    await lab.exec(lab.guest, 'ip', ['-6', 'route', 'add', `${ADDR.staleUnrouted6}/128`, 'dev', 'gv', 'metric', '7']);
    const admin = (await lab.routes()).split('\n').find((l) => l.startsWith(ADDR.staleUnrouted6));
    expect(admin).toBe(`${ADDR.staleUnrouted6} dev gv metric 7 pref medium`);

    await lab.push(mappingFile(1, [[ADDR.staleUnrouted6, ADDR.new6]]));
    const r = await lab.addrmap(['apply']);
    expect(r.code).toBe(0);
    const degraded = logEvents(r.stdout)
      .filter((e) => e.event === 'degraded')
      .map((e) => e.reason);
    expect(degraded.join('\n')).toContain(`route ${ADDR.staleUnrouted6} is not addrmap's and does not lead towards ${ADDR.new6} (dev gv)`);
    expect((await lab.routes()).split('\n').filter((l) => l.startsWith(ADDR.staleUnrouted6))).toEqual([admin]);
    const status = JSON.parse((await lab.addrmap(['status', '--json'])).stdout);
    expect(status.problems.join('\n')).toContain(`route ${ADDR.staleUnrouted6} is not addrmap's`);

    await lab.push(mappingFile(2, []));
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    expect((await lab.routes()).split('\n').filter((l) => l.startsWith(ADDR.staleUnrouted6))).toEqual([admin]);
    // And flag off removes addrmap's table, not the administrator's route.
    expect((await lab.addrmap(['apply'], { ADDRMAP_ENABLED: '0' })).code).toBe(0);
    expect((await lab.routes()).split('\n').filter((l) => l.startsWith(ADDR.staleUnrouted6))).toEqual([admin]);
  });
});

describe("addresses on lo for the guest's own previous address", () => {
  const OLD = 'fdaa:0:18:a7b:7d::77';
  const NEW = 'fdaa:0:18:a7b:c2::77';
  const lo = async () => (await lab.exec(lab.guest, 'ip', ['-6', 'addr', 'show', 'dev', 'lo'])).stdout;
  const selfPush = (generation: number, self: boolean) => ({
    version: 1,
    generation,
    mappings: [],
    ...(self ? { self: [{ from: OLD, to: NEW }] } : {}),
  });

  beforeEach(async () => {
    await lab.exec(lab.guest, 'ip', ['-6', 'addr', 'add', `${NEW}/128`, 'dev', 'gv', 'nodad']);
  });

  it('one an administrator added before addrmap stays when the entry naming it goes', async () => {
    await lab.exec(lab.guest, 'ip', ['-6', 'addr', 'add', `${OLD}/128`, 'dev', 'lo']);
    await lab.push(selfPush(1, true));
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    await lab.push(selfPush(2, false));
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    expect(await lo()).toContain(`inet6 ${OLD}/128`);
    expect((await lab.addrmap(['apply'], { ADDRMAP_ENABLED: '0' })).code).toBe(0);
    expect(await lo()).toContain(`inet6 ${OLD}/128`);
  });

  it('one addrmap added goes with its entry, and one added just before a crash (recorded, never in the table) goes at the next start', async () => {
    await lab.push(selfPush(1, true));
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    expect(await lo()).toContain(`inet6 ${OLD}/128`);
    await lab.push(selfPush(2, false));
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    expect(await lo()).not.toContain(OLD);

    // The state a SIGKILL between recording and committing leaves: on lo and
    // recorded, absent from the table.
    await lab.exec(lab.guest, 'ip', ['-6', 'addr', 'add', `${OLD}/128`, 'dev', 'lo', 'nodad', 'preferred_lft', '0']);
    await writeFile(join(lab.paths.stateDir, 'own-addresses.json'), JSON.stringify({ schema: 1, addresses: [OLD] }));
    await lab.push(selfPush(3, false));
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    expect(await lo()).not.toContain(OLD);
  });

  it('after an upgrade from a release that kept no record: its address (listed in applied self, a deprecated /128) is adopted and goes with its entry; others stay', async () => {
    const OTHER = 'fdaa:0:18:a7b:7d::78';
    await lab.push(selfPush(1, true));
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    // What the earlier release left: the address and applied.json, no record.
    await rm(join(lab.paths.stateDir, 'own-addresses.json'));
    // An administrator's deprecated /128 that no self entry ever named.
    await lab.exec(lab.guest, 'ip', ['-6', 'addr', 'add', `${OTHER}/128`, 'dev', 'lo', 'nodad', 'preferred_lft', '0']);
    await lab.push(selfPush(2, false));
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    expect(await lo()).not.toContain(`${OLD}/128`);
    expect(await lo()).toContain(`inet6 ${OTHER}/128`);
    expect((await lab.addrmap(['apply'], { ADDRMAP_ENABLED: '0' })).code).toBe(0);
    expect(await lo()).toContain(`inet6 ${OTHER}/128`);
  });
});
