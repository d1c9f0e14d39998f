// The core job on the real kernel: stale literal addresses reach the peer at
// its new address once a mapping is pushed. Each test builds its own guest and
// peer namespaces.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADDR, Lab, logEvents, mappingFile } from '../support/lab.js';

let lab: Lab;
beforeEach(async () => {
  lab = await Lab.create();
  await lab.startPeer();
});
afterEach(async () => {
  await lab?.destroy();
});

describe('addrmap apply', () => {
  it('makes TCP and UDP to a stale IPv6 address reach the peer at its new address', async () => {
    expect((await lab.tcp(ADDR.stale6, lab.guest, 800)).ok).toBe(false);
    expect((await lab.udp(ADDR.stale6, lab.guest, 800)).ok).toBe(false);

    await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
    const r = await lab.addrmap(['apply']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(logEvents(r.stdout).find((e) => e.event === 'applied')).toMatchObject({ generation: 1, mappings: 1, kind: 'full' });

    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
    expect(await lab.udp(ADDR.stale6)).toEqual({ ok: true, reply: 'peer ping' });
  });

  it('does the same for IPv4 mappings in the same file and table', async () => {
    expect((await lab.tcp(ADDR.stale4, lab.guest, 800)).ok).toBe(false);
    await lab.push(
      mappingFile(1, [
        [ADDR.stale4, ADDR.new4],
        [ADDR.stale6, ADDR.new6],
      ]),
    );
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    expect(await lab.tcp(ADDR.stale4)).toEqual({ ok: true, reply: `peer ${ADDR.new4}` });
    expect(await lab.udp(ADDR.stale4)).toEqual({ ok: true, reply: 'peer ping' });
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
  });

  it('reaches a stale address that is outside every route of the guest', async () => {
    // Without addrmap's host route the connect fails before any rule runs.
    expect(await lab.tcp(ADDR.staleUnrouted6)).toEqual({ ok: false, error: 'ENETUNREACH' });
    expect(await lab.tcp(ADDR.staleUnrouted4)).toEqual({ ok: false, error: 'ENETUNREACH' });

    await lab.push(
      mappingFile(1, [
        [ADDR.staleUnrouted6, ADDR.new6],
        [ADDR.staleUnrouted4, ADDR.new4],
      ]),
    );
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    expect(await lab.tcp(ADDR.staleUnrouted6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
    expect(await lab.udp(ADDR.staleUnrouted6)).toEqual({ ok: true, reply: 'peer ping' });
    expect(await lab.tcp(ADDR.staleUnrouted4)).toEqual({ ok: true, reply: `peer ${ADDR.new4}` });

    // The routes follow the target's route and are addrmap's own (proto 173).
    const routes = await lab.routes();
    expect(routes).toContain(`${ADDR.staleUnrouted6} via ${ADDR.peer6} dev gv proto 173`);
    expect(routes).toContain(`${ADDR.staleUnrouted4} via ${ADDR.peer4} dev gv proto 173`);
  });

  it('adds no route for a stale address already routed like its target, and removes routes it no longer needs', async () => {
    const before = await lab.routes();
    await lab.push(
      mappingFile(1, [
        [ADDR.stale6, ADDR.new6],
        [ADDR.stale4, ADDR.new4],
      ]),
    );
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    expect(await lab.routes()).toBe(before);
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });

    await lab.push(
      mappingFile(2, [
        [ADDR.stale6, ADDR.new6],
        [ADDR.staleUnrouted6, ADDR.new6],
      ]),
    );
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    expect(await lab.routes()).toContain(`${ADDR.staleUnrouted6} via ${ADDR.peer6} dev gv proto 173`);
    await lab.push(mappingFile(3, [[ADDR.stale6, ADDR.new6]]));
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    expect(await lab.routes()).toBe(before);
  });

  it('keeps a peer that moved twice reachable at its first address (chains resolve)', async () => {
    await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });

    await lab.setPeerAddresses([ADDR.newer6]);
    expect((await lab.tcp(ADDR.stale6, lab.guest, 800)).ok).toBe(false);
    await lab.push(
      mappingFile(2, [
        [ADDR.stale6, ADDR.new6],
        [ADDR.new6, ADDR.newer6],
      ]),
    );
    const r = await lab.addrmap(['apply']);
    expect(logEvents(r.stdout).find((e) => e.event === 'applied')).toMatchObject({ kind: 'delta', added: 1, retargeted: 1 });
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.newer6}` });
    expect(await lab.tcp(ADDR.new6)).toEqual({ ok: true, reply: `peer ${ADDR.newer6}` });
  });

  it('lets a UDP flow that started before the push recover at once (conntrack cleanup)', async () => {
    // addrmap already runs with another mapping, so conntrack tracks the guest's flows.
    await lab.push(mappingFile(1, [[ADDR.staleUnrouted4, ADDR.new4]]));
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    // One socket, one source port: the flow's conntrack entry exists, untranslated,
    // before the mapping does.
    const stream = await lab.udpStream(ADDR.stale6, 40_000, 3000, 100);
    await new Promise((r) => setTimeout(r, 700));
    await lab.push(
      mappingFile(2, [
        [ADDR.staleUnrouted4, ADDR.new4],
        [ADDR.stale6, ADDR.new6],
      ]),
    );
    const r = await lab.addrmap(['apply']);
    const appliedAt = Date.now() - stream.started;

    const result = await stream.done;
    expect(result.replies.filter((x) => x.t < appliedAt - 150)).toEqual([]);
    const after = result.replies.filter((x) => x.t >= appliedAt - 150);
    // At 10 datagrams a second for the rest of the 3 s, nearly all are answered.
    expect(after.length).toBeGreaterThanOrEqual(Math.floor((3000 - appliedAt) / 100) - 3);
    expect(after[0]!.t - appliedAt).toBeLessThan(500);
    expect(logEvents(r.stdout).find((e) => e.event === 'applied')).toMatchObject({ conntrackQueued: 1 });
    expect(logEvents(r.stdout).find((e) => e.event === 'conntrack_cleaned')).toMatchObject({ targets: 1, removed: 1, via: 'ctnetlink' });
  });

  it('translates traffic from a container routed through the guest (prerouting)', async () => {
    await lab.destroy();
    lab = await Lab.create({ container: true });
    await lab.startPeer();
    expect((await lab.tcp(ADDR.stale6, lab.ctr!, 800)).ok).toBe(false);
    await lab.push(
      mappingFile(1, [
        [ADDR.stale6, ADDR.new6],
        [ADDR.stale4, ADDR.new4],
      ]),
    );
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    expect(await lab.tcp(ADDR.stale6, lab.ctr!)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
    expect(await lab.tcp(ADDR.stale4, lab.ctr!)).toEqual({ ok: true, reply: `peer ${ADDR.new4}` });
  });

  it('refuses an invalid file with exit code 3, naming the entry, and changes nothing', async () => {
    await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    const before = await lab.ruleset();

    await lab.push(
      mappingFile(2, [
        [ADDR.stale6, ADDR.new6],
        [ADDR.new6, ADDR.stale6],
      ]),
    );
    const r = await lab.addrmap(['apply']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/mappings\[\d\]: mappings form a cycle/);
    expect(await lab.ruleset()).toBe(before);
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });

    const status = await lab.addrmap(['status', '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ generation: 1, lastPush: { outcome: 'refused', generation: 2 } });
  });
});
