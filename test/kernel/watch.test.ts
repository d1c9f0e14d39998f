// addrmap watch on the real kernel: pushes take effect while it runs, bad
// pushes change nothing, and restarts do not interrupt traffic.
import { rm, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADDR, Lab, mappingFile, type AgentProcess } from '../support/lab.js';

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

const applied = (generation: number) => (e: Record<string, unknown>) => e.event === 'applied' && e.generation === generation;

describe('addrmap watch', () => {
  it('applies a push within milliseconds and the stale address reaches the peer', async () => {
    agent = await lab.watch();
    expect((await lab.tcp(ADDR.stale6, lab.guest, 800)).ok).toBe(false);

    await lab.push(
      mappingFile(1, [
        [ADDR.stale6, ADDR.new6],
        [ADDR.stale4, ADDR.new4],
      ]),
    );
    await agent.waitFor(applied(1), 5000);
    const reach = await lab.waitReachable(ADDR.stale6, 5000);
    expect(reach.reply).toBe(`peer ${ADDR.new6}`);
    expect(await lab.udp(ADDR.stale6)).toEqual({ ok: true, reply: 'peer ping' });
    expect(await lab.tcp(ADDR.stale4)).toEqual({ ok: true, reply: `peer ${ADDR.new4}` });
  });

  it('follows a peer that migrates again: retarget without a gap, then a chain', async () => {
    agent = await lab.watch();
    await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
    await agent.waitFor(applied(1));
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });

    await lab.setPeerAddresses([ADDR.newer6]);
    await lab.push(
      mappingFile(2, [
        [ADDR.stale6, ADDR.new6],
        [ADDR.new6, ADDR.newer6],
      ]),
    );
    expect(await agent.waitFor(applied(2))).toMatchObject({ kind: 'delta', retargeted: 1, added: 1, removed: 0 });
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.newer6}` });
    expect(await lab.tcp(ADDR.new6)).toEqual({ ok: true, reply: `peer ${ADDR.newer6}` });
  });

  it('keeps traffic flowing and the kernel unchanged through invalid, partial, older and deleted files', async () => {
    agent = await lab.watch();
    await lab.push(mappingFile(5, [[ADDR.stale6, ADDR.new6]]));
    await agent.waitFor(applied(5));
    const ruleset = await lab.ruleset();
    const routes = await lab.routes();
    const refusals = () => agent!.events.filter((e) => e.event === 'refused').length;

    const bad: [string, RegExp][] = [
      ['{"version":1,"generation":6,"mappings":[{"from":"fdaa::1",', /invalid JSON/],
      [JSON.stringify(mappingFile(6, [[ADDR.stale6, 'fdaa::zz']])), /^mappings\[0\]: to: not a valid IPv6 address$/],
      [
        JSON.stringify(
          mappingFile(6, [
            [ADDR.stale6, ADDR.new6],
            [ADDR.new6, ADDR.stale6],
          ]),
        ),
        /cycle/,
      ],
      [JSON.stringify(mappingFile(4, [[ADDR.stale6, ADDR.newer6]])), /generation 4 is older than the applied generation 5/],
      [JSON.stringify({ version: 2, generation: 9, mappings: [] }), /unsupported version 2/],
    ];
    for (const [text, reason] of bad) {
      const n = refusals();
      await lab.push(text);
      await agent.waitFor(() => refusals() > n);
      const last = agent.events.filter((e) => e.event === 'refused').at(-1)!;
      expect(`${String(last.entry)}: ${String(last.reason)}`).toMatch(reason);
      expect(await lab.ruleset()).toBe(ruleset);
      expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
    }

    // Written in place (not renamed) and caught half-way: refused, then applied once complete.
    await writeFile(lab.paths.mappings, '{"version":1,"generation":7,');
    await agent.waitFor((e) => e.event === 'refused' && /invalid JSON/.test(String(e.reason)) && refusals() > bad.length);
    await writeFile(lab.paths.mappings, JSON.stringify(mappingFile(7, [[ADDR.stale6, ADDR.new6]])));
    await agent.waitFor(applied(7));

    await rm(lab.paths.mappings);
    await agent.waitFor((e) => e.event === 'no_mapping_file');
    expect(await lab.ruleset()).toBe(ruleset);
    expect(await lab.routes()).toBe(routes);
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });

    const status = JSON.parse((await lab.addrmap(['status', '--json'])).stdout);
    expect(status).toMatchObject({
      enabled: true,
      generation: 7,
      agent: { running: true },
      lastPush: { outcome: 'applied', generation: 7 },
    });
    expect(status.mappings).toEqual([expect.objectContaining({ from: ADDR.stale6, to: ADDR.new6, inKernel: true })]);
  });

  it('retries while degraded: a target whose route appears later (network up after addrmap) becomes reachable without a push', async () => {
    await lab.exec(lab.guest, 'ip', ['-6', 'route', 'del', 'fdaa::/16']);
    await lab.push(mappingFile(1, [[ADDR.staleUnrouted6, ADDR.new6]]));
    agent = await lab.watch();
    await agent.waitFor((e) => e.event === 'degraded' && /no route to target/.test(String(e.reason)));
    expect((await lab.tcp(ADDR.staleUnrouted6, lab.guest, 500)).ok).toBe(false);
    await lab.exec(lab.guest, 'ip', ['-6', 'route', 'add', 'fdaa::/16', 'via', ADDR.peer6]);
    const reach = await lab.waitReachable(ADDR.staleUnrouted6, 10_000);
    expect(reach.reply).toBe(`peer ${ADDR.new6}`);
  });

  it('coalesces a burst of pushes and ends on the last file', async () => {
    agent = await lab.watch();
    for (let g = 1; g <= 50; g++) {
      const to = g % 2 ? ADDR.new6 : ADDR.newer6;
      await lab.push(mappingFile(g, [[ADDR.stale6, to]]));
    }
    await agent.waitFor(applied(50), 10_000);
    const passes = agent.events.filter((e) => e.event === 'applied').length;
    expect(passes).toBeLessThan(50);
    expect(await lab.ruleset()).toContain(`${ADDR.stale6} counter packets - bytes - : ${ADDR.newer6}`);
  });

  it('restarts after SIGKILL by adopting the table: no rebuild and no failed connection', async () => {
    await lab.push(
      mappingFile(1, [
        [ADDR.stale6, ADDR.new6],
        [ADDR.staleUnrouted6, ADDR.new6],
      ]),
    );
    agent = await lab.watch();
    await agent.waitFor(applied(1));
    const handle = async () =>
      (await lab.exec(lab.guest, 'nft', ['-a', 'list', 'table', 'inet', 'addrmap'])).stdout.match(/# handle (\d+)/)![1];
    const before = await handle();

    // Probe continuously while the agent dies and comes back.
    let stop = false;
    const failures: unknown[] = [];
    let probes = 0;
    const prober = (async () => {
      while (!stop) {
        const r = await lab.tcp(ADDR.staleUnrouted6, lab.guest, 1000);
        probes++;
        if (!r.ok) failures.push(r);
      }
    })();
    await agent.stop('SIGKILL');
    agent = await lab.watch();
    const event = await agent.waitFor((e) => e.generation === 1 && (e.event === 'unchanged' || e.event === 'applied'));
    stop = true;
    await prober;

    expect(event).toMatchObject({ event: 'unchanged', kind: 'none', added: 0, removed: 0, routesAdded: 0 });
    expect(await handle()).toBe(before);
    expect(probes).toBeGreaterThan(0);
    expect(failures).toEqual([]);
  });
});

describe('feature flag', () => {
  it('flipping "enabled" in the config file at runtime takes effect both ways, and off leaves everything else as it was', async () => {
    // Another tool's table and route exist before addrmap and must survive it.
    await lab.exec(
      lab.guest,
      'nft',
      ['-f', '-'],
      'table inet other { chain c { type filter hook output priority 0; policy accept; counter; } }\n',
    );
    await lab.exec(lab.guest, 'ip', ['-6', 'route', 'add', 'fdcc::/64', 'via', ADDR.peer6]);
    await lab.writeConfig({ enabled: false });
    await lab.push(
      mappingFile(1, [
        [ADDR.staleUnrouted6, ADDR.new6],
        [ADDR.staleUnrouted4, ADDR.new4],
      ]),
    );
    const rulesetBefore = await lab.ruleset();
    const routesBefore = await lab.routes();

    agent = await lab.watch({ ADDRMAP_ENABLED: '' });
    await agent.waitFor((e) => e.event === 'watching');
    expect(await lab.ruleset()).not.toContain('addrmap');

    await lab.writeConfig({ enabled: true });
    await agent.waitFor(applied(1));
    expect(await lab.tcp(ADDR.staleUnrouted6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
    expect(await lab.routes()).not.toBe(routesBefore);

    await lab.writeConfig({ enabled: false });
    await agent.waitFor((e) => e.event === 'disabled');
    expect(await lab.ruleset()).toBe(rulesetBefore);
    expect(await lab.routes()).toBe(routesBefore);
    expect(await lab.tcp(ADDR.staleUnrouted6)).toEqual({ ok: false, error: 'ENETUNREACH' });
    const status = JSON.parse((await lab.addrmap(['status', '--json'], { ADDRMAP_ENABLED: '' })).stdout);
    expect(status).toMatchObject({ enabled: false, flagSource: 'config file' });
  });

  it('reads addrmap.enabled from the kernel command line, over the config file and under the environment', async () => {
    await lab.writeConfig({ enabled: false });
    await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
    await writeFile(lab.paths.cmdline, 'console=ttyS0 addrmap.enabled=1 quiet\n');
    expect((await lab.addrmap(['apply'], { ADDRMAP_ENABLED: '' })).code).toBe(0);
    expect(await lab.ruleset()).toContain('table inet addrmap');
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });

    // The environment wins over the kernel command line.
    expect((await lab.addrmap(['apply'], { ADDRMAP_ENABLED: '0' })).code).toBe(0);
    expect(await lab.ruleset()).not.toContain('addrmap');

    await writeFile(lab.paths.cmdline, 'addrmap.enabled=0\n');
    await lab.writeConfig({ enabled: true });
    expect((await lab.addrmap(['apply'], { ADDRMAP_ENABLED: '' })).code).toBe(0);
    expect(await lab.ruleset()).not.toContain('addrmap');
    const status = JSON.parse((await lab.addrmap(['status', '--json'], { ADDRMAP_ENABLED: '' })).stdout);
    expect(status).toMatchObject({ enabled: false, flagSource: 'kernel command line' });

    // As the kernel reads it: quotes, its boolean spellings, nothing after "--".
    for (const [cmdline, on] of [
      ['root=/dev/vda1 "addrmap.enabled=1" quiet', true],
      ['addrmap.enabled="0"', false],
      ['addrmap.enabled=on', true],
      ['addrmap.enabled=off -- addrmap.enabled=1', false],
    ] as const) {
      await writeFile(lab.paths.cmdline, `${cmdline}\n`);
      expect((await lab.addrmap(['apply'], { ADDRMAP_ENABLED: '' })).code).toBe(0);
      expect(await lab.ruleset(), cmdline).toContain(on ? 'table inet addrmap' : '');
      if (!on) expect(await lab.ruleset(), cmdline).not.toContain('addrmap');
    }
    // A value it cannot read is a refusal naming it, never a silent off.
    await writeFile(lab.paths.cmdline, 'addrmap.enabled=maybe\n');
    const r = await lab.addrmap(['apply'], { ADDRMAP_ENABLED: '' });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('addrmap.enabled on the kernel command line must be 1 or 0 (or y/n, on/off, true/false), not "maybe"');
  });
});
