// Another tool changes addrmap's table: addrmap notices and repairs it within
// 2 seconds, and logs and counts each repair. It learns of changes from the
// kernel's nf_tables notifications, one drift_detected per incident naming
// who did it, and none for its own transactions.
import { readdir, readFile } from 'node:fs/promises';
import { once } from 'node:events';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADDR, Lab, mappingFile, mappingText, type AgentProcess } from '../support/lab.js';

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
const detected = () => agent.events.filter((e) => e.event === 'drift_detected');

async function expectRepaired(what: string, vandalise: () => Promise<unknown>) {
  const n = repairs().length;
  const start = Date.now();
  await vandalise();
  // The repair may be logged before the other tool's process is reaped.
  const event = await agent.waitFor((e) => e.event === 'drift_repaired' && repairs().indexOf(e) >= n, 2000);
  const ms = Date.now() - start;
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

/** Runs nft in the guest as another tool would; its pid. */
async function foreignNft(args: string[]): Promise<number> {
  const child = lab.spawnIn(lab.guest, 'nft', args);
  const [code] = (await once(child, 'exit')) as [number | null];
  expect(code).toBe(0);
  return child.pid!;
}

/**
 * Another tool's change and its repair: the one drift_detected it causes is
 * also the proof that every notification before it was read (they arrive in
 * order), so counting lines up to it is exact.
 */
const sentinel = () =>
  expectRepaired('sentinel', () => foreignNft(['add', 'element', 'inet', 'addrmap', 'dnat6', `{ fdaa::98 : ${ADDR.newer6} }`]));

const hex = (n: number) => n.toString(16);
const many = (n: number): [string, string][] =>
  Array.from({ length: n }, (_, i) => [`fdaa:0:18:a7b:7d:2:${hex(i >>> 16)}:${hex(i & 0xffff)}`, ADDR.new6]);

describe('drift from the kernel’s notifications', () => {
  it('logs one drift_detected per incident, naming the other tool’s pid and name', async () => {
    let table = 0;
    let element = 0;
    await expectRepaired('delete table', async () => (table = await foreignNft(['delete', 'table', 'inet', 'addrmap'])));
    await expectRepaired('delete element', async () => {
      element = await foreignNft(['delete', 'element', 'inet', 'addrmap', 'dnat6', `{ ${ADDR.stale6} }`]);
    });
    await sentinel();
    const lines = detected();
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatchObject({ byPid: table, byName: 'nft' });
    expect(String(lines[0]!.drift)).toContain(`delete table inet addrmap`);
    expect(lines[1]).toMatchObject({ byPid: element, byName: 'nft' });
    expect(String(lines[1]!.drift)).toBe(`delete element ${ADDR.stale6} in dnat6 by nft (pid ${element})`);
  });

  it('takes none of its own transactions for drift: 10k mappings added and removed', async () => {
    const small: [string, string][] = [
      [ADDR.stale6, ADDR.new6],
      [ADDR.staleUnrouted4, ADDR.new4],
    ];
    await lab.push(mappingText(2, '', [...small, ...many(10_000)]));
    await agent.waitFor((e) => e.event === 'applied' && e.generation === 2, 60_000);
    await lab.push(mappingFile(3, small));
    await agent.waitFor((e) => e.event === 'applied' && e.generation === 3, 60_000);
    await sentinel();
    expect(detected()).toHaveLength(1);
    expect(repairs()).toHaveLength(1);
    expect(agent.events.filter((e) => e.event === 'events_lost')).toEqual([]);
  });

  it('repairs within 2 s while a large push (10k mappings) is being applied', async () => {
    const small: [string, string][] = [
      [ADDR.stale6, ADDR.new6],
      [ADDR.staleUnrouted4, ADDR.new4],
    ];
    // 10k: the pass and then the repair's re-read of the whole table fit 2 s
    // with room on a loaded machine; at 20k they took 1.6-1.8 s on a quiet one
    // and more than 2 s once in CI, beside the guest tests (guarantees.md).
    await lab.push(mappingText(2, '', [...small, ...many(10_000)]));
    await new Promise((r) => setTimeout(r, 150)); // the pass has begun: reading, checking, planning 10k
    const start = Date.now();
    await foreignNft(['delete', 'element', 'inet', 'addrmap', 'dnat6', `{ ${ADDR.stale6} }`]);
    await agent.waitFor((e) => e.event === 'drift_repaired', 2000);
    expect(Date.now() - start).toBeLessThan(2000);
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
    expect(await agent.waitFor((e) => e.event === 'applied' && e.generation === 2, 60_000)).toMatchObject({ mappings: 10_002 });
  });

  it('verifies the table once when notifications were lost while it was stopped', async () => {
    await agent.stop('SIGKILL');
    agent = await lab.watch({ ADDRMAP_LOG_LEVEL: 'debug' });
    await agent.waitFor((e) => e.event === 'unchanged' || e.event === 'applied');
    const looks = () => agent.events.filter((e) => e.event === 'drift_repaired' || e.event === 'drift_checked');
    const before = looks().length;
    process.kill(agent.child.pid!, 'SIGSTOP');
    try {
      // 100k element events (17-32 MB of kernel buffers) overflow the agent's 8 MB; its own table's change comes after.
      const flood = many(100_000).map(([k, v]) => `${k} : ${v}`);
      await lab.exec(
        lab.guest,
        'nft',
        ['-f', '-'],
        `add table inet flood\nadd map inet flood m { type ipv6_addr : ipv6_addr; counter; }\nadd element inet flood m { ${flood.join(', ')} }\n`,
      );
      await foreignNft(['delete', 'element', 'inet', 'addrmap', 'dnat6', `{ ${ADDR.stale6} }`]);
    } finally {
      process.kill(agent.child.pid!, 'SIGCONT');
    }
    const lost = await agent.waitFor((e) => e.event === 'events_lost');
    expect(lost).toMatchObject({ ownCommit: false });
    await agent.waitFor((e) => e.event === 'drift_repaired' && String(e.drift).startsWith('notifications lost'), 2000);
    await lab.exec(lab.guest, 'nft', ['delete', 'table', 'inet', 'flood']);
    expect(await lab.ruleset()).toBe(baseline);
    expect(detected()).toEqual([]);
    await sentinel();
    expect(agent.events.filter((e) => e.event === 'events_lost')).toHaveLength(1);
    expect(looks().length - before).toBe(2); // the verification and the sentinel's repair
    expect(detected()).toHaveLength(1);
  });

  it('runs no child process while it watches', async () => {
    const pid = agent.child.pid!;
    const tasks = await readdir(`/proc/${pid}/task`);
    const children = await Promise.all(tasks.map((t) => readFile(`/proc/${pid}/task/${t}/children`, 'utf8')));
    expect(children.join(' ').trim()).toBe('');
  });
});
