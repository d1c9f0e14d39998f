// Another tool changes addrmap's table: addrmap notices and repairs it within
// 2 seconds, and logs and counts each repair.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADDR, Lab, mappingFile, type AgentProcess } from '../support/lab.js';

let lab: Lab;
let agent: AgentProcess;
let baseline: string;
beforeEach(async () => {
  lab = await Lab.create();
  await lab.startPeer();
  await lab.push(
    mappingFile(1, [
      [ADDR.stale6, ADDR.new6],
      [ADDR.staleUnrouted4, ADDR.new4],
    ]),
  );
  agent = await lab.watch();
  await agent.waitFor((e) => e.event === 'applied' && e.generation === 1);
  baseline = await lab.ruleset();
});
afterEach(async () => {
  await agent?.stop('SIGKILL');
  await lab?.destroy();
});

const repairs = () => agent.events.filter((e) => e.event === 'drift_repaired');

async function expectRepaired(what: string, vandalise: () => Promise<unknown>) {
  const n = repairs().length;
  const start = Date.now();
  await vandalise();
  const event = await agent.waitFor(() => repairs().length > n, 2000);
  const ms = Date.now() - start;
  console.log(`${what}: repaired in ${ms} ms (${String(event.kind)}, drift: ${String(event.drift)})`);
  expect(ms).toBeLessThan(2000);
  expect(await lab.ruleset()).toBe(baseline);
  expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
  return event;
}

describe('drift repair', () => {
  it('restores a deleted table', async () => {
    const e = await expectRepaired('delete table', () => lab.exec(lab.guest, 'nft', ['delete', 'table', 'inet', 'addrmap']));
    expect(e.kind).toBe('full');
  });

  it('restores the table after the whole ruleset is flushed, leaving the other tool its own', async () => {
    await expectRepaired('flush ruleset', () => lab.exec(lab.guest, 'nft', ['flush', 'ruleset']));
  });

  it('undoes edits to the map: a deleted, a retargeted and a foreign element', async () => {
    const e = await expectRepaired('delete element', () =>
      lab.exec(lab.guest, 'nft', ['delete', 'element', 'inet', 'addrmap', 'dnat6', `{ ${ADDR.stale6} }`]),
    );
    expect(e).toMatchObject({ kind: 'delta', added: 1 });
    await expectRepaired('foreign element', () =>
      lab.exec(lab.guest, 'nft', ['add', 'element', 'inet', 'addrmap', 'dnat6', `{ fdaa::99 : ${ADDR.newer6} }`]),
    );
    await expectRepaired('retargeted element', () =>
      lab.exec(
        lab.guest,
        'nft',
        ['-f', '-'],
        `delete element inet addrmap dnat6 { ${ADDR.stale6} }\nadd element inet addrmap dnat6 { ${ADDR.stale6} : ${ADDR.newer6} }\n`,
      ),
    );
  });

  it('rebuilds a table whose rules were edited', async () => {
    const handle = (await lab.exec(lab.guest, 'nft', ['-a', 'list', 'chain', 'inet', 'addrmap', 'dnat_output'])).stdout.match(
      /daddr map @dnat6 # handle (\d+)/,
    )![1]!;
    const e = await expectRepaired('delete rule', () =>
      lab.exec(lab.guest, 'nft', ['delete', 'rule', 'inet', 'addrmap', 'dnat_output', 'handle', handle]),
    );
    expect(e.kind).toBe('full');
  });

  it('does not mistake its own pushes for drift, and counts repairs in status', async () => {
    for (let g = 2; g <= 7; g++) {
      await lab.push(
        mappingFile(g, [
          [ADDR.stale6, g % 2 ? ADDR.new6 : ADDR.newer6],
          [ADDR.staleUnrouted4, ADDR.new4],
        ]),
      );
      await agent.waitFor((e) => e.event === 'applied' && e.generation === g);
    }
    await new Promise((r) => setTimeout(r, 1500));
    expect(repairs()).toEqual([]);
    expect(agent.events.filter((e) => e.event === 'drift_detected')).toEqual([]);

    await expectRepaired('delete table', () => lab.exec(lab.guest, 'nft', ['delete', 'table', 'inet', 'addrmap']));
    const status = JSON.parse((await lab.addrmap(['status', '--json'])).stdout);
    expect(status.driftRepairs).toBe(1);
  });
});
