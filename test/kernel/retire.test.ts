// Retiring mappings: a mapping with "expires" is removed at that time by the
// running agent, without a push; status shows what expires next and what has
// gone unused long enough to retire.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADDR, Lab, type AgentProcess } from '../support/lab.js';

let lab: Lab;
let agent: AgentProcess | null;
beforeEach(async () => {
  lab = await Lab.create();
  await lab.startPeer();
  agent = null;
});
afterEach(async () => {
  await agent?.stop('SIGKILL');
  await lab?.destroy();
});

describe('expiring mappings', () => {
  it('are removed at their expiry time, not at the next push; status lists them before', async () => {
    // Far enough ahead that start-up and the samples below end before it, even on a busy machine.
    const expires = new Date(Date.now() + 10_000);
    await lab.push({
      version: 1,
      generation: 1,
      mappings: [
        { from: ADDR.stale6, to: ADDR.new6, expires: expires.toISOString() },
        { from: ADDR.staleUnrouted6, to: ADDR.new6 },
        { from: 'fdaa:0:18:a7b:7d::99', to: ADDR.new6, expires: '2020-01-01T00:00:00Z' },
      ],
    });
    await lab.writeConfig({ retireAfterSeconds: 2, usageIntervalSeconds: 1 });
    agent = await lab.watch();
    expect(await agent.waitFor((e) => e.event === 'applied')).toMatchObject({ mappings: 2, expired: 1 });
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });

    // Traffic to one mapping, none to the other, over a few usage samples.
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 500));
      await lab.tcp(ADDR.stale6);
    }
    const status = JSON.parse((await lab.addrmap(['status', '--json'])).stdout);
    expect(status.expiring).toEqual([{ from: ADDR.stale6, to: ADDR.new6, expires: expires.toISOString() }]);
    expect(status.safeToRetire).toEqual({ afterSeconds: 2, mappings: [ADDR.staleUnrouted6] });
    expect((await lab.addrmap(['status'])).stdout).toContain(`SAFE TO RETIRE (1; no traffic for 2s or longer)\n  ${ADDR.staleUnrouted6}`);

    const event = await agent.waitFor((e) => e.event === 'expired', 10_000);
    const late = Date.now() - expires.getTime();
    expect(late).toBeLessThan(1000);
    expect(event).toMatchObject({
      removed: 1,
      mappings: 1,
      expired: [{ from: ADDR.stale6, to: ADDR.new6, expires: expires.toISOString() }],
    });
    expect((await lab.tcp(ADDR.stale6, lab.guest, 800)).ok).toBe(false);
    expect(await lab.tcp(ADDR.staleUnrouted6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
    expect(await lab.ruleset()).not.toContain(ADDR.stale6);
  });

  it('expire at start: apply leaves out what has expired already', async () => {
    await lab.push({
      version: 1,
      generation: 1,
      mappings: [{ from: ADDR.stale6, to: ADDR.new6, expires: new Date(Date.now() - 1000).toISOString() }],
    });
    const r = await lab.addrmap(['apply']);
    expect(r.code).toBe(0);
    expect((await lab.tcp(ADDR.stale6, lab.guest, 800)).ok).toBe(false);
    expect(await lab.ruleset()).not.toContain(ADDR.stale6);
  });
});
