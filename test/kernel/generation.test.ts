// The way back from an absurd generation: a control plane that once pushed
// generation 2^53-1 would lock out every later push (they are all "older").
// `addrmap apply --accept-lower-generation` applies the file as it is and
// makes its generation the accepted one, with or without a watching agent.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADDR, Lab, logEvents, mappingFile, type AgentProcess } from '../support/lab.js';

let lab: Lab;
let agent: AgentProcess | null = null;
beforeEach(async () => {
  lab = await Lab.create();
  await lab.setPeerAddresses([ADDR.new6, ADDR.newer6]);
  await lab.startPeer();
});
afterEach(async () => {
  await agent?.stop();
  agent = null;
  await lab?.destroy();
});

const ABSURD = Number.MAX_SAFE_INTEGER;

describe('recovery from an absurd generation', () => {
  it('with a watching agent: lower pushes are refused, apply --accept-lower-generation takes one, and later pushes count from it', async () => {
    agent = await lab.watch();
    await lab.push(mappingFile(ABSURD, [[ADDR.stale6, ADDR.new6]]));
    await agent.waitFor((e) => e.event === 'applied' && e.generation === ABSURD);

    await lab.push(mappingFile(5, [[ADDR.stale6, ADDR.newer6]]));
    const refused = await agent.waitFor((e) => e.event === 'refused' && e.generation === 5);
    expect(refused.reason).toBe(
      `generation 5 is older than the applied generation ${ABSURD} (after a mistaken push: addrmap apply --accept-lower-generation)`,
    );
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });

    const r = await lab.addrmap(['apply', '--accept-lower-generation']);
    expect(r.code).toBe(0);
    await agent.waitFor((e) => e.event === 'generation_lowered' && e.generation === 5 && e.previous === ABSURD);
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.newer6}` });

    // From now on generation 5 is the bar: 4 is refused, 6 applies.
    await lab.push(mappingFile(4, [[ADDR.stale6, ADDR.new6]]));
    await agent.waitFor((e) => e.event === 'refused' && e.generation === 4);
    await lab.push(mappingFile(6, [[ADDR.stale6, ADDR.new6]]));
    await agent.waitFor((e) => e.event === 'applied' && e.generation === 6);
    const status = JSON.parse((await lab.addrmap(['status', '--json'])).stdout);
    expect(status.generation).toBe(6);
  });

  it('without an agent: the same through apply alone; watch refuses the option', async () => {
    await lab.push(mappingFile(ABSURD, [[ADDR.stale6, ADDR.new6]]));
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    await lab.push(mappingFile(5, [[ADDR.stale6, ADDR.newer6]]));
    expect((await lab.addrmap(['apply'])).code).toBe(3);
    const r = await lab.addrmap(['apply', '--accept-lower-generation']);
    expect(r.code).toBe(0);
    expect(logEvents(r.stdout).find((e) => e.event === 'generation_lowered')).toMatchObject({ generation: 5, previous: ABSURD });
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.newer6}` });
    // Once only: the next lower file is refused again.
    await lab.push(mappingFile(4, [[ADDR.stale6, ADDR.new6]]));
    expect((await lab.addrmap(['apply'])).code).toBe(3);
    expect((await lab.addrmap(['watch', '--accept-lower-generation'])).code).toBe(2);
  });
});
