// /metrics cannot hurt the guest: only loopback unless explicitly allowed
// (the config is refused otherwise, kernel state kept), and a flood of idle
// connections neither uses up the agent's file descriptors nor kills it.
import { readdir } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADDR, Lab, mappingFile, type AgentProcess } from '../support/lab.js';

let lab: Lab;
let agent: AgentProcess | null = null;
beforeEach(async () => {
  lab = await Lab.create();
  await lab.startPeer();
  await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
});
afterEach(async () => {
  await agent?.stop('SIGKILL');
  agent = null;
  await lab?.destroy();
});

// From inside the guest: N connections held idle, then a scrape once they are gone.
const FLOOD = `
const net = require('net');
const socks = [];
let closedByServer = 0;
for (let i = 0; i < 300; i++) {
  const s = net.connect(9851, '127.0.0.1');
  s.on('error', () => {});
  s.on('close', () => closedByServer++);
  socks.push(s);
}
setTimeout(() => {
  console.log(JSON.stringify({ closedByServer }));
  for (const s of socks) s.destroy();
  setTimeout(() => require('http').get('http://127.0.0.1:9851/metrics', (r) => { console.log(JSON.stringify({ status: r.statusCode })); process.exit(0); }).on('error', (e) => { console.log(JSON.stringify({ error: e.message })); process.exit(0); }), 300);
}, 2500);
`;

describe('metrics', () => {
  it('a listen address other hosts can reach is refused (kernel state kept) unless metricsListenAnyAddress says so', async () => {
    await lab.writeConfig({ metricsListen: '0.0.0.0:9851' });
    const r = await lab.addrmap(['apply']);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('"metricsListen" 0.0.0.0 is reachable from other hosts');
    expect(await lab.ruleset()).not.toContain('addrmap');
    await lab.writeConfig({ metricsListen: '0.0.0.0:9851', metricsListenAnyAddress: true });
    expect((await lab.addrmap(['apply'])).code).toBe(0);
  });

  it('300 idle connections: at most a few dozen descriptors, the agent lives and serves /metrics afterwards', async () => {
    await lab.writeConfig({ metricsListen: '127.0.0.1:9851' });
    agent = await lab.watch();
    await agent.waitFor((e) => e.event === 'metrics_listening');
    const fds = async () => (await readdir(`/proc/${agent!.child.pid}/fd`)).length;
    const before = await fds();
    const flood = lab.exec(lab.guest, process.execPath, ['-e', FLOOD]);
    await new Promise((r) => setTimeout(r, 1500));
    const during = await fds();
    const lines = (await flood).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(during - before).toBeLessThanOrEqual(20);
    expect(lines[0].closedByServer).toBeGreaterThanOrEqual(280);
    expect(lines[1]).toEqual({ status: 200 });
    expect(agent.child.exitCode).toBeNull();
  });
});
