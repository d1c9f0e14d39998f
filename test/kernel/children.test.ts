// Nothing addrmap starts outlives it: its `nft monitor` dies with it, even on
// SIGKILL (setpriv --pdeathsig), and where the image has no setpriv the next
// agent kills the one a killed agent left behind.
import { mkdir, readFile, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFile } from '../../src/kernel/exec.js';
import { ADDR, Lab, mappingFile, type AgentProcess } from '../support/lab.js';

let lab: Lab;
let agents: AgentProcess[];
beforeEach(async () => {
  lab = await Lab.create();
  agents = [];
  await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
});
afterEach(async () => {
  for (const a of agents) await a.stop('SIGKILL');
  await lab?.destroy();
});

const children = async (pid: number) =>
  (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')).split(/\s+/).filter(Boolean).map(Number);
/** Running or able to run: a zombie (dead, not yet reaped by whoever inherited it) is not alive. */
const alive = (pid: number) =>
  readFile(`/proc/${pid}/stat`, 'utf8').then(
    (stat) => !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)),
    () => false,
  );
const cmdline = async (pid: number) => (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').filter(Boolean);

async function start(env: NodeJS.ProcessEnv = {}) {
  const a = await lab.watch(env);
  agents.push(a);
  await a.waitFor((e) => e.event === 'applied' || e.event === 'unchanged');
  const monitor = (await Promise.all((await children(a.child.pid!)).map(async (p) => ({ p, argv: await cmdline(p) })))).find((c) =>
    c.argv.includes('monitor'),
  );
  expect(monitor).toBeDefined();
  return { agent: a, monitor: monitor!.p };
}

async function gone(pid: number, withinMs: number) {
  const until = Date.now() + withinMs;
  while (Date.now() < until) {
    if (!(await alive(pid))) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

describe("the agent's children", () => {
  it('the monitor dies with an agent killed by SIGKILL', async () => {
    const { agent, monitor } = await start();
    expect(await cmdline(monitor)).toEqual(['nft', '-j', 'monitor']); // setpriv exec'd it
    await agent.stop('SIGKILL');
    expect(await gone(monitor, 2000)).toBe(true);
  });

  it('without setpriv in the image, the next agent kills the monitor a killed agent left behind, and nothing else', async () => {
    // A PATH with the tools addrmap runs and no setpriv.
    const bin = join(lab.dir, 'bin');
    await mkdir(bin);
    for (const tool of ['nft', 'ip', 'conntrack'])
      await symlink((await execFile('bash', ['-c', `command -v ${tool}`])).stdout.trim(), join(bin, tool));
    const env = { PATH: bin };
    const first = await start(env);
    await first.agent.stop('SIGKILL');
    await new Promise((r) => setTimeout(r, 500));
    expect(await alive(first.monitor)).toBe(true); // the orphan
    const bystander = await lab.exec(lab.guest, 'sh', ['-c', 'nft -j monitor >/dev/null 2>&1 & echo $!']);
    const other = Number(bystander.stdout.trim());

    const second = await start(env);
    expect(await gone(first.monitor, 2000)).toBe(true);
    expect(second.agent.events.find((e) => e.event === 'orphans_killed')).toMatchObject({ pids: [first.monitor] });
    expect(await alive(other)).toBe(true); // someone else's monitor is not ours to kill
    process.kill(other, 'SIGKILL');
    // A stopped agent takes its monitor along (afterEach's SIGKILL would leave it, with no setpriv here).
    await second.agent.stop('SIGTERM');
    expect(await gone(second.monitor, 2000)).toBe(true);
  });
});
