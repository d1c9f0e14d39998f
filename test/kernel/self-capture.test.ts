// A mapping must never capture the guest itself: one whose stale address is
// an address of the guest, or whose stale prefix holds one, is not installed
// (the rest of the push is), and the guest's own traffic is left alone.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADDR, Lab, logEvents, mappingFile, type AgentProcess } from '../support/lab.js';

let lab: Lab;
let agent: AgentProcess | null = null;
beforeEach(async () => {
  lab = await Lab.create();
  await lab.startPeer();
  await lab.writeConfig({ allowedTargets: ['fc00::/7', '198.51.100.0/24'] });
});
afterEach(async () => {
  await agent?.stop('SIGKILL');
  agent = null;
  await lab?.destroy();
});

const mapped = async () => (await lab.exec(lab.guest, 'nft', ['list', 'table', 'inet', 'addrmap'])).stdout;

describe('self-capture', () => {
  it("a mapping from the guest's own address, or a prefix holding one, is skipped with a warning naming both; the rest applies and inbound traffic still reaches the guest", async () => {
    await lab.serve(lab.guest, 'guest', '::', 7005);
    await lab.push({
      version: 1,
      generation: 1,
      mappings: [
        { from: ADDR.guest6, to: ADDR.new6 },
        { from: ADDR.guest4, to: ADDR.new4 },
        { from: 'fd00:1::/64', to: 'fdaa:0:18:a7b::/64' },
        { from: ADDR.stale6, to: ADDR.new6 },
      ],
    });
    const r = await lab.addrmap(['apply']);
    expect(r.code).toBe(0);
    const degraded = logEvents(r.stdout)
      .filter((e) => e.event === 'degraded')
      .map((e) => e.reason);
    expect(degraded).toEqual(
      expect.arrayContaining([
        `mapping ${ADDR.guest6} -> ${ADDR.new6} not installed: ${ADDR.guest6} is an address of this guest`,
        `mapping ${ADDR.guest4} -> ${ADDR.new4} not installed: ${ADDR.guest4} is an address of this guest`,
        expect.stringMatching(/^mapping fd00:1::\/64 -> fdaa:0:18:a7b::\/64 not installed: it holds fd00:1::1, an address of this guest$/),
      ]),
    );
    const table = await mapped();
    expect(table).not.toContain(`${ADDR.guest6} `);
    expect(table).not.toContain('fd00:1::/64');
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
    // The peer still reaches the guest at its own address.
    expect(await lab.tcp(ADDR.guest6, lab.peer, 1500, 7005)).toEqual({ ok: true, reply: `guest ${ADDR.guest6}` });
  });

  it('an address the guest gains while the agent runs takes its mapping out within seconds', async () => {
    const later = 'fdaa:0:18:a7b:7d::99';
    await lab.push(
      mappingFile(1, [
        [later, ADDR.new6],
        [ADDR.stale6, ADDR.new6],
      ]),
    );
    agent = await lab.watch();
    await agent.waitFor((e) => e.event === 'applied');
    expect(await mapped()).toContain(later);
    // Deprecated, so the kernel does not start using it as the source towards the peer.
    await lab.exec(lab.guest, 'ip', ['-6', 'addr', 'add', `${later}/128`, 'dev', 'gv', 'nodad', 'preferred_lft', '0']);
    await agent.waitFor(
      (e) => e.event === 'degraded' && String(e.reason).startsWith(`mapping ${later} -> ${ADDR.new6} not installed`),
      10_000,
    );
    expect(await mapped()).not.toContain(later);
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
    // No retry loop for what no retry fixes (retries come every 5 s for warnings that can heal).
    const passes = () => agent!.events.filter((e) => e.event === 'applied' || e.event === 'unchanged').length;
    const before = passes();
    await new Promise((r) => setTimeout(r, 6000));
    expect(passes()).toBe(before);
  });
});
