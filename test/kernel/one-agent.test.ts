// One agent per table: a second watcher exits at once naming the first, an
// apply during watch is carried out by the watching agent (which would
// otherwise undo it), and a killed agent's socket does not block the next.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADDR, Lab, logEvents, mappingFile, type AgentProcess } from '../support/lab.js';

let lab: Lab;
let agents: AgentProcess[];
beforeEach(async () => {
  lab = await Lab.create();
  await lab.startPeer();
  agents = [];
});
afterEach(async () => {
  for (const a of agents) await a.stop('SIGKILL');
  await lab?.destroy();
});

async function watch() {
  const a = await lab.watch();
  agents.push(a);
  return a;
}

describe('one agent per table', () => {
  it('a second watch exits 1 at once, naming the running agent’s pid; the first keeps working', async () => {
    await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
    const first = await watch();
    await first.waitFor((e) => e.event === 'applied');
    const started = Date.now();
    const second = await lab.addrmap(['watch']);
    expect(second.code).toBe(1);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(second.stderr).toBe(
      `addrmap: another agent (pid ${first.child.pid}) already watches this table (state directory ${lab.paths.stateDir})\n`,
    );
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
  });

  it('apply during watch hands the pass to the watching agent, with its outcome and exit code', async () => {
    await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
    const agent = await watch();
    await agent.waitFor((e) => e.event === 'applied');
    // Written in place, which the watcher may not notice at once: apply makes it look now.
    await lab.push(mappingFile(2, [[ADDR.stale6, ADDR.newer6]]));
    const r = await lab.addrmap(['apply']);
    expect(r.code).toBe(0);
    expect(logEvents(r.stdout).find((e) => e.event === 'handed_over')).toMatchObject({ pid: agent.child.pid });
    await agent.waitFor((e) => e.event === 'applied' && e.generation === 2);
    const status = JSON.parse((await lab.addrmap(['status', '--json'])).stdout);
    expect(status).toMatchObject({ health: 'healthy', generation: 2, agent: { running: true, pid: agent.child.pid } });

    await lab.push('{"version": 1, "generation": 3, "mappings": [{"from": "nonsense"}]}');
    const refused = await lab.addrmap(['apply']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(new RegExp(`^addrmap: refused \\(by the running agent, pid ${agent.child.pid}\\): `));
  });

  it('the socket of an agent killed by SIGKILL does not keep the next one from starting', async () => {
    await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
    const first = await watch();
    await first.waitFor((e) => e.event === 'applied');
    await first.stop('SIGKILL');
    const next = await watch();
    await next.waitFor((e) => e.event === 'unchanged' || e.event === 'applied');
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
  });
});
