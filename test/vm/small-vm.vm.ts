// A small guest (run in a 256 MB VM by small-vm.test.ts): a push of 10k
// mappings applies while an application keeps talking through a stale
// address, nothing is killed for memory, and what addrmap costs the guest is
// measured from the guest's own /proc/meminfo at 0, 1k and 10k mappings.
// Prints one line "ADDRMAP_GUEST_MEMORY {json}" for the host to collect.
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADDR, Lab, type AgentProcess } from '../support/lab.js';

let lab: Lab;
let agent: AgentProcess | null = null;

/** kB fields of /proc/meminfo. */
async function meminfo(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const line of (await readFile('/proc/meminfo', 'utf8')).split('\n')) {
    const m = /^(\w+):\s+(\d+)/.exec(line);
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

const oomKills = async () => Number(/oom_kill (\d+)/.exec(await readFile('/proc/vmstat', 'utf8'))?.[1] ?? 0);

/** Anonymous memory of the agent and every process below it (nft children included). */
async function agentAnonKiB(pid: number): Promise<number> {
  let total = 0;
  const walk = async (p: number) => {
    const st = await readFile(`/proc/${p}/status`, 'utf8').catch(() => '');
    total += Number(/RssAnon:\s+(\d+)/.exec(st)?.[1] ?? 0);
    const kids = await readFile(`/proc/${p}/task/${p}/children`, 'utf8').catch(() => '');
    for (const k of kids.split(/\s+/).filter(Boolean)) await walk(Number(k));
  };
  await walk(pid);
  return total;
}

/** n mappings: a stale address per host of one /80, each to the same host in the peer's /80 (one route covers both). */
function mappings(n: number) {
  const out: { from: string; to: string }[] = [{ from: ADDR.stale6, to: ADDR.new6 }];
  for (let i = 1; i < n; i++) out.push({ from: `fdaa:0:18:a7b:7d::1:${i.toString(16)}`, to: `fdaa:0:18:a7b:c2::1:${i.toString(16)}` });
  return out;
}

let generation = 0;
async function pushAndWait(n: number) {
  generation++;
  await lab.push({ version: 1, generation, mappings: n === 0 ? [] : mappings(n) });
  const started = Date.now();
  const e = await agent!.waitFor((x) => x.event === 'applied' && x.generation === generation, 300_000);
  return { pushToAppliedMs: Date.now() - started, durationMs: e.durationMs as number, mappings: e.mappings as number };
}

/** Lets page reclaim and the agent's collector settle, then reads the guest. */
async function settle() {
  await new Promise((r) => setTimeout(r, 5000));
  return meminfo();
}

beforeAll(async () => {
  lab = await Lab.create();
  await lab.startPeer();
});
afterAll(async () => {
  await agent?.stop('SIGKILL');
  await lab?.destroy();
});

describe('a 256 MB guest', () => {
  it('applies 10k mappings while an application stays connected through a stale address, with no OOM kill', async () => {
    const kills = await oomKills();
    const before = await settle();
    // What the packages install runs with these flags (packaging/package.mjs).
    agent = await lab.watch({}, ['--max-semi-space-size=1', '--optimize-for-size']);
    const rows: Record<string, unknown>[] = [];
    const row = async (mappingsNow: number, push: unknown) => {
      const m = await settle();
      rows.push({
        mappings: mappingsNow,
        memAvailableCostKiB: before.MemAvailable! - m.MemAvailable!,
        slabCostKiB: m.Slab! - before.Slab!,
        sunreclaimCostKiB: m.SUnreclaim! - before.SUnreclaim!,
        agentRssAnonKiB: await agentAnonKiB(agent!.child.pid!),
        push,
      });
    };
    await row(0, await pushAndWait(0));
    await row(1000, await pushAndWait(1000));
    const chat = await lab.tcpChat(ADDR.stale6, 100);
    const big = await pushAndWait(10_000);
    await row(10_000, big);
    const talk = await chat.stop();
    const result = { kernel: (await readFile('/proc/sys/kernel/osrelease', 'utf8')).trim(), memTotalKiB: before.MemTotal, memAvailableBeforeKiB: before.MemAvailable, rows, app: talk, oomKills: (await oomKills()) - kills };
    console.log(`ADDRMAP_GUEST_MEMORY ${JSON.stringify(result)}`);

    expect(result.oomKills).toBe(0);
    expect(talk).toMatchObject({ ok: true });
    expect(talk.echoed).toBeGreaterThan(10);
    expect(big.mappings).toBe(10_000);
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
  });
});
