// The log as documented: the config's logLevel takes effect (the environment's
// ADDRMAP_LOG_LEVEL wins over it), and a refused push is logged once however
// often the same file is read again.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADDR, Lab, logEvents, mappingFile, type AgentProcess } from '../support/lab.js';

let lab: Lab;
let agent: AgentProcess | null = null;
beforeEach(async () => {
  lab = await Lab.create();
});
afterEach(async () => {
  await agent?.stop();
  agent = null;
  await lab?.destroy();
});

describe('logging', () => {
  it("the config's logLevel applies; ADDRMAP_LOG_LEVEL overrides it", async () => {
    await lab.writeConfig({ logLevel: 'warn' });
    await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
    const quiet = await lab.addrmap(['apply']);
    expect(quiet.code).toBe(0);
    expect(logEvents(quiet.stdout).filter((e) => Number(e.level) < 40)).toEqual([]);
    const loud = await lab.addrmap(['apply'], { ADDRMAP_LOG_LEVEL: 'info' });
    expect(logEvents(loud.stdout).map((e) => e.event)).toContain('unchanged');
  });

  it('a refused file is logged once, however often it is read again; the next bad file is logged again', async () => {
    await lab.writeConfig({ logLevel: 'debug' });
    await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
    agent = await lab.watch({ ADDRMAP_LOG_LEVEL: '' });
    await agent.waitFor((e) => e.event === 'applied');
    await lab.push('{"version":1,"generation":2,"mappings":[{"from":"x"}]}');
    await agent.waitFor((e) => e.event === 'refused');
    // Two more reads of the same file: SIGHUP forces a pass each time. The
    // first may land while the agent is still in its start-up passes: it
    // must count as a request for a pass there too, never end the agent.
    for (let i = 0; i < 2; i++) {
      const seen = agent.events.length;
      agent.child.kill('SIGHUP');
      await agent.waitFor((e) => e.event === 'trigger' && agent!.events.indexOf(e) >= seen);
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(agent.events.filter((e) => e.event === 'refused')).toHaveLength(1);
    expect(agent.child.exitCode).toBeNull();
    await lab.push('{"version":1,"generation":3,"mappings":[{"from":"y"}]}');
    await agent.waitFor((e) => e.event === 'refused' && e.generation === 3);
    expect(agent.events.filter((e) => e.event === 'refused')).toHaveLength(2);
  });

  it('a SIGHUP during start-up (while the first pass runs) asks for a pass and does not end the agent', async () => {
    await lab.writeConfig({ logLevel: 'debug' });
    await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
    agent = await lab.watch({ ADDRMAP_LOG_LEVEL: 'debug' });
    // 'watching' is logged just before the first pass starts.
    agent.child.kill('SIGHUP');
    await agent.waitFor((e) => e.event === 'applied');
    await agent.waitFor((e) => e.event === 'trigger' && e.reason === 'SIGHUP');
    await new Promise((r) => setTimeout(r, 300));
    expect(agent.child.exitCode).toBeNull();
    expect(agent.child.signalCode).toBeNull();
  });
});
