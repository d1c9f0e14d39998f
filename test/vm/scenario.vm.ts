// The core scenario, run inside a VM on each kernel of the matrix (see
// matrix.test.ts): one guest namespace with a watching agent, one peer, each
// step building on the one before, as a guest lives through a migration.
// Also valid on the host kernel: `npx vitest run --config test/vm/vitest.config.ts`.
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from '../../src/kernel/exec.js';
import { ADDR, Lab, type AgentProcess } from '../support/lab.js';

/** A chain A -> B -> C: A was migrated to B, which then moved on to C (the peer now). */
const A = ADDR.stale6;
const B = 'fdaa:0:18:a7b:7e:f066:b83b:2';
/** A prefix whose host bits land on the peer's address. */
const PREFIX_FROM = 'fdaa:0:18:a7b:99::';
const IN_PREFIX = 'fdaa:0:18:a7b:99:f066:b83b:2';
/** This guest's own previous address and its address now. */
const OLD = 'fdaa:0:18:a7b:7d::77';
const NOW = 'fdaa:0:18:a7b:c2::77';

let lab: Lab;
let agent: AgentProcess;
let generation = 0;

const push = async (extra: Record<string, unknown> = {}) => {
  generation++;
  await lab.push({
    version: 1,
    generation,
    mappings: [
      { from: A, to: B },
      { from: B, to: ADDR.new6 },
      { from: ADDR.stale4, to: ADDR.new4 },
      { from: `${PREFIX_FROM}/80`, to: 'fdaa:0:18:a7b:c2::/80' },
      { from: OLD, to: NOW },
    ],
    self: [{ from: OLD, to: NOW }],
    ...extra,
  });
  return agent.waitFor((e) => e.event === 'applied' && e.generation === generation, 60_000);
};

beforeAll(async () => {
  lab = await Lab.create();
  await lab.startPeer();
  // The guest migrated too: it has NOW, and the peer reaches it there.
  await lab.exec(lab.guest, 'ip', ['-6', 'addr', 'add', `${NOW}/128`, 'dev', 'gv', 'nodad']);
  await lab.exec(lab.peer, 'ip', ['-6', 'route', 'add', `${NOW}/128`, 'via', ADDR.guest6]);
  console.log(`kernel ${(await readFile('/proc/sys/kernel/osrelease', 'utf8')).trim()}`);
});
afterAll(async () => {
  await agent?.stop('SIGKILL');
  await lab?.destroy();
});

describe('a guest on this kernel', () => {
  it('cannot reach a stale address before any mapping', async () => {
    expect((await lab.tcp(A, lab.guest, 800)).ok).toBe(false);
    expect((await lab.tcp(ADDR.stale4, lab.guest, 800)).ok).toBe(false);
  });

  it('reaches stale addresses after a push: a chain, IPv4, a prefix; a UDP flow started before the push recovers', async () => {
    agent = await lab.watch();
    const stream = await lab.udpStream(A, 40_000, 6000, 100);
    await new Promise((r) => setTimeout(r, 700));
    // The push's time, not when this process reads the applied line: under
    // emulation the log reaches it seconds late.
    const pushedAt = Date.now() - stream.started;
    const applied = await push();
    console.log(`applied: ${JSON.stringify(applied)}`);

    expect(await lab.tcp(A)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
    expect(await lab.tcp(B)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
    expect(await lab.tcp(ADDR.stale4)).toEqual({ ok: true, reply: `peer ${ADDR.new4}` });
    expect(await lab.tcp(IN_PREFIX)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
    const result = await stream.done;
    // Nothing answered before the mapping existed; the same flow (one socket) is answered after.
    expect(result.replies.filter((x) => x.t < pushedAt)).toEqual([]);
    expect(result.replies.length).toBeGreaterThan(0);
  });

  it('counts every packet of a translated flow, not only the first', async () => {
    expect((await lab.tcpSend(A, 200_000)).ok).toBe(true);
    const report = JSON.parse((await lab.addrmap(['status', '--json'])).stdout);
    console.log(`kernel capabilities: ${JSON.stringify(report.kernelCapabilities)}`);
    expect(report.drift).toEqual([]);
    expect(report.kernelCapabilities.missing).toEqual([]);
    const row = report.mappings.find((m: { from: string }) => m.from === A);
    expect(row.bytes).toBeGreaterThan(100_000);
  });

  it("applies the guest's own previous address: bindable, and reached at the address now", async () => {
    const lo = (await lab.exec(lab.guest, 'ip', ['-6', 'addr', 'show', 'dev', 'lo'])).stdout;
    expect(lo).toContain(`inet6 ${OLD}/128`);
    await lab.serve(lab.guest, 'app-on-old', OLD, 7003);
    expect(await lab.tcp(NOW, lab.peer, 1500, 7003)).toEqual({ ok: true, reply: `app-on-old ${OLD}` });
  });

  it('repairs its table when another tool deletes it', async () => {
    await lab.exec(lab.guest, 'nft', ['delete', 'table', 'inet', 'addrmap']);
    await agent.waitFor((e) => e.event === 'drift_repaired', 30_000);
    expect(await lab.tcp(A)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
  });

  it('leaves nothing behind when the flag goes off', async () => {
    await lab.writeConfig({ enabled: false });
    // The watching agent was started with the flag from the environment; a
    // second one reads it from the config file, as a guest's init would.
    await agent.stop('SIGTERM');
    const off = await lab.addrmap(['apply'], { ADDRMAP_ENABLED: '' });
    expect(off.code).toBe(0);
    expect(await lab.ruleset()).not.toContain('addrmap');
    expect((await lab.routes()).split('\n').filter((l) => l.includes('proto 173'))).toEqual([]);
    const lo = (await execFile('ip', ['-n', lab.guest, '-6', 'addr', 'show', 'dev', 'lo'])).stdout;
    expect(lo).not.toContain(OLD);
    expect((await lab.tcp(A, lab.guest, 800)).ok).toBe(false);
  });
});
