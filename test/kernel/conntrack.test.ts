// Conntrack cleanup on the real kernel: after a push, exactly the tracked
// flows that still go where the mappings no longer send them are deleted
// (over ctnetlink in-process; there is no fallback to the conntrack program),
// and nothing else. The conntrack tool is the oracle. Where ctnetlink cannot
// be had, the cleanup says why and the pushes apply regardless.
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFile } from '../../src/kernel/exec.js';
import { ADDR, ADDRMAP, Lab, ROOT, logEvents, mappingFile } from '../support/lab.js';

/** Routed towards the peer like stale6, and nobody has it. */
const STALE_B = 'fdaa:0:18:a7b:7d:f066:b83b:3';

let lab: Lab;
beforeEach(async () => {
  lab = await Lab.create();
  await lab.setPeerAddresses([ADDR.new6, ADDR.newer6]);
  await lab.startPeer();
});
afterEach(async () => {
  await lab?.destroy();
});

const env = () => Object.entries(lab.env()).map(([k, v]) => `${k}=${v}`);

/** The guest's tracked IPv6 UDP flows towards the peer's side (fdaa::/16) as the conntrack tool lists them: "dst answered-by". */
async function tracked(): Promise<string[]> {
  const r = await lab.exec(lab.guest, 'conntrack', ['-L', '-f', 'ipv6', '-p', 'udp']);
  const flows = [...r.stdout.matchAll(/src=\S+ dst=(\S+) .*?src=(\S+) dst=/g)].map((m) => `${m[1]} ${m[2]}`);
  return flows.filter((f) => f.startsWith('fdaa:')).sort();
}

/** Flows of three kinds, then a push that retargets one mapping and adds another. */
async function scenario(apply: (args: string[]) => Promise<{ code: number; stdout: string }>) {
  await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
  expect((await apply(['apply'])).code).toBe(0);
  expect(await lab.udp(ADDR.stale6)).toMatchObject({ ok: true }); // translated, answered by new6: stale after the retarget
  await lab.udp(STALE_B); // untranslated, unanswered: stale once STALE_B is mapped
  expect(await lab.udp(ADDR.newer6)).toMatchObject({ ok: true }); // straight to a target: no mapping covers it
  expect(await tracked()).toEqual([`${ADDR.stale6} ${ADDR.new6}`, `${ADDR.newer6} ${ADDR.newer6}`, `${STALE_B} ${STALE_B}`].sort());

  await lab.push(
    mappingFile(2, [
      [ADDR.stale6, ADDR.newer6],
      [STALE_B, ADDR.new6],
    ]),
  );
  const r = await apply(['apply']);
  expect(r.code).toBe(0);
  expect(await tracked()).toEqual([`${ADDR.newer6} ${ADDR.newer6}`]);
  // The next datagrams are translated to the new targets, and answered from there.
  expect(await lab.udp(ADDR.stale6)).toMatchObject({ ok: true });
  expect(await lab.udp(STALE_B)).toMatchObject({ ok: true });
  expect(await tracked()).toEqual([`${ADDR.stale6} ${ADDR.newer6}`, `${ADDR.newer6} ${ADDR.newer6}`, `${STALE_B} ${ADDR.new6}`].sort());
  return logEvents(r.stdout);
}

describe('conntrack cleanup', () => {
  it('over ctnetlink: deletes the stale flows of the changed mappings, and only those', async () => {
    const events = await scenario((args) => lab.addrmap(args));
    expect(events.find((e) => e.event === 'applied')).toMatchObject({ conntrackQueued: 2 });
    expect(events.find((e) => e.event === 'conntrack_cleaned')).toMatchObject({ targets: 2, removed: 2, via: 'ctnetlink' });
  });

  it('runs behind the pass: with 50k stale flows being cleaned, the next push is applied before the cleanup ends', async () => {
    const agent = await lab.watch();
    try {
      await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
      await agent.waitFor((e) => e.event === 'conntrack_cleaned');
      // Unanswered UDP flows would expire after 30 s.
      await lab.exec(lab.guest, 'sysctl', ['-q', '-w', 'net.netfilter.nf_conntrack_udp_timeout=600']);
      const flows = await lab.exec(lab.guest, process.execPath, [join(ROOT, 'test/bench/flows.mjs'), '1000', '50', '9']);
      expect(flows.stdout.trim()).toBe('done 50000');
      const many: [string, string][] = Array.from({ length: 1000 }, (_, i) => [
        `fdaa:0:18:a7b:7d:0:0:${i.toString(16)}`,
        `fdaa:0:18:a7b:c2:0:0:${i.toString(16)}`,
      ]);
      await lab.push(mappingFile(2, [...many, [ADDR.stale6, ADDR.new6]]));
      await agent.waitFor((e) => e.event === 'applied' && e.generation === 2);
      await lab.push(mappingFile(3, [...many, [ADDR.stale6, ADDR.newer6]]));
      await agent.waitFor((e) => e.event === 'applied' && e.generation === 3);
      const big = await agent.waitFor((e) => e.event === 'conntrack_cleaned' && Number(e.targets) >= 1000, 60_000);
      expect(big).toMatchObject({ removed: 50000, via: 'ctnetlink' });
      const order = agent.events
        .map((e) => (e.event === 'applied' && e.generation === 3 ? 'applied 3' : e === big ? 'cleaned' : null))
        .filter(Boolean);
      expect(order).toEqual(['applied 3', 'cleaned']);
      expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.newer6}` });
    } finally {
      await agent.stop();
    }
  });

  it('where ctnetlink is refused: the push applies and new flows are translated; the log says why the stale flows stay', async () => {
    // The FFI loads, but no NETLINK_NETFILTER socket can be opened in the agent.
    const refuse = join(ROOT, 'test/support/refuse-ctnetlink.cjs');
    const apply = (args: string[]) =>
      execFile('ip', ['netns', 'exec', lab.guest, 'env', ...env(), process.execPath, '--require', refuse, ADDRMAP, ...args]);
    await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
    expect((await apply(['apply'])).code).toBe(0);
    expect(await lab.udp(ADDR.stale6)).toMatchObject({ ok: true });

    await lab.push(mappingFile(2, [[ADDR.stale6, ADDR.newer6]]));
    const r = await apply(['apply']);
    expect(r.code).toBe(0);
    const events = logEvents(r.stdout);
    expect(events.find((e) => e.event === 'applied')).toMatchObject({ generation: 2, retargeted: 1, conntrackQueued: 1 });
    expect(events.find((e) => e.event === 'conntrack_cleanup_incomplete')).toMatchObject({
      targets: 1,
      removed: 0,
      reason: 'conntrack cleanup incomplete: netlink socket: errno 93',
    });
    expect(events.some((e) => e.event === 'conntrack_cleaned')).toBe(false);
    // The old flow keeps its entry (to new6) until it times out; a new connection goes to newer6.
    expect(await tracked()).toEqual([`${ADDR.stale6} ${ADDR.new6}`]);
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.newer6}` });
  });

  it('where the FFI addon cannot load: no program is tried in its place; the agent says which addon it lacks', async () => {
    // The bundle alone in a directory with no node_modules above it, run from there.
    const dir = await mkdtemp(join(tmpdir(), 'addrmap-noffi-'));
    try {
      await copyFile(ADDRMAP, join(dir, 'addrmap.mjs'));
      await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
      const r = await execFile('ip', [
        'netns',
        'exec',
        lab.guest,
        'env',
        '-C',
        dir,
        ...env(),
        process.execPath,
        join(dir, 'addrmap.mjs'),
        'apply',
      ]);
      expect(r.code).toBe(4);
      expect(r.stderr).toMatch(/koffi/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
