// addrmap touches only what it made: a route someone else made for a stale
// address is never replaced or removed, only reported.
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
    const degraded = logEvents(r.stdout).filter((e) => e.event === 'degraded').map((e) => e.reason);
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
