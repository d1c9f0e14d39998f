import { describe, expect, test } from 'vitest';
import { describeCgroup, UsageHistory } from '../../../src/agent/usage-history.js';
import type { Flow } from '../../../src/support/flows.js';

const flow = (dst: string, extra: Partial<Flow> = {}): Flow => ({
  proto: 'tcp',
  src: 'fd00:1::1',
  sport: 40000,
  dst,
  dport: 5432,
  answeredBy: 'fdaa::9',
  translated: true,
  ...extra,
});
const T0 = new Date('2026-01-01T00:00:00.000Z');
const at = (s: number) => new Date(T0.getTime() + s * 1000);
const DAY = 24 * 3600;

describe('UsageHistory', () => {
  test('one record per program per address: first and last seen, unit or container from the cgroup; forwarded traffic by source', () => {
    const h = new UsageHistory();
    const psql = flow('fdaa::1', { pid: 10, command: 'psql -h fdaa::1', cgroup: '/system.slice/app.service' });
    h.record(
      [psql, flow('fdaa::1', { pid: 11, command: 'psql -h fdaa::1', cgroup: '/system.slice/app.service', sport: 40001 })],
      DAY,
      at(0),
    );
    const state = h.record([psql, flow('fdaa::2', { src: '198.18.0.2' })], DAY, at(30));
    expect(state.addresses).toEqual({
      'fdaa::1': [
        { command: 'psql -h fdaa::1', pid: 10, unit: 'app.service', firstSeen: at(0).toISOString(), lastSeen: at(30).toISOString() },
      ],
      'fdaa::2': [{ src: '198.18.0.2', firstSeen: at(30).toISOString(), lastSeen: at(30).toISOString() }],
    });
  });

  test("a live socket whose process the agent may not see (another user's, under the sandbox) is recorded by its user", () => {
    const h = new UsageHistory();
    const local = new Set(['fd00:1::1']);
    h.record([flow('fdaa::1', { uid: 999, user: 'postgres' }), flow('fdaa::1', { uid: 1001 })], DAY, at(0), local);
    const state = h.record([flow('fdaa::1', { uid: 999, user: 'postgres', sport: 40001 })], DAY, at(30), local);
    expect(state.addresses['fdaa::1']).toEqual([
      { user: 'postgres', uid: 999, firstSeen: at(0).toISOString(), lastSeen: at(30).toISOString() },
      { uid: 1001, firstSeen: at(0).toISOString(), lastSeen: at(0).toISOString() },
    ]);
    // Where the process is visible too, its record names both.
    expect(h.record([flow('fdaa::2', { pid: 7, command: 'psql', uid: 999, user: 'postgres' })], DAY, at(60)).addresses['fdaa::2']).toEqual([
      { command: 'psql', user: 'postgres', uid: 999, pid: 7, firstSeen: at(60).toISOString(), lastSeen: at(60).toISOString() },
    ]);
  });

  test("an ownerless flow from one of the guest's own addresses is a closed socket, not forwarded traffic: not recorded", () => {
    const h = new UsageHistory();
    const state = h.record(
      [flow('fdaa::1', { src: 'fd00:1::1' }), flow('fdaa::1', { src: '198.18.0.2' })],
      DAY,
      at(0),
      new Set(['fd00:1::1']),
    );
    expect(state.addresses['fdaa::1']!.map((r) => r.src)).toEqual(['198.18.0.2']);
  });

  test('forgets what was last seen longer ago than the retirement period; survives a restart through restore', () => {
    const h = new UsageHistory();
    h.record([flow('fdaa::1', { command: 'old' })], DAY, at(0));
    const state = h.record([flow('fdaa::1', { command: 'new' })], DAY, at(DAY - 10));
    const again = new UsageHistory();
    again.restore(state);
    expect(
      Object.values(again.record([], DAY, at(DAY + 10)).addresses)
        .flat()
        .map((r) => r.command),
    ).toEqual(['new']);
  });

  test('a program keeps its one record across restarts, with the pid it had last', () => {
    const h = new UsageHistory();
    h.record([flow('fdaa::1', { pid: 10, command: 'app' })], DAY, at(0));
    const state = h.record([flow('fdaa::1', { pid: 99, command: 'app' })], DAY, at(30));
    expect(state.addresses['fdaa::1']).toEqual([
      { command: 'app', pid: 99, firstSeen: at(0).toISOString(), lastSeen: at(30).toISOString() },
    ]);
  });

  test('bounded: at most 4,000 records in all, the oldest dropped first, whatever the addresses', () => {
    const h = new UsageHistory();
    // 500 addresses, 10 programs each (under the per-address bound): 5,000 records, seen one second apart.
    for (let a = 0; a < 500; a++)
      h.record(
        Array.from({ length: 10 }, (_, p) => flow(`fdaa::${(a + 1).toString(16)}`, { command: `p${p}` })),
        DAY,
        at(a),
      );
    const state = h.record([], DAY, at(600));
    const kept = Object.values(state.addresses).flat();
    expect(kept).toHaveLength(4000);
    // The 100 oldest addresses' records went; every newer one kept all of its own.
    expect(state.addresses['fdaa::64']).toBeUndefined();
    expect(state.addresses['fdaa::65']).toHaveLength(10);
    expect(Object.keys(state.addresses)).toHaveLength(400);
    expect(Math.min(...kept.map((r) => Date.parse(r.lastSeen)))).toBe(at(100).getTime());
  });

  test('bounded: 16 programs per address even when one sample sees more', () => {
    const h = new UsageHistory();
    const state = h.record(
      Array.from({ length: 40 }, (_, p) => flow('fdaa::1', { command: `p${p}`, sport: 40000 + p })),
      DAY,
      at(0),
    );
    expect(state.addresses['fdaa::1']).toHaveLength(16);
    expect(Object.values(state.addresses).flat()).toHaveLength(16);
  });

  test('bounded: at most 16 programs per address, the most recent kept', () => {
    const h = new UsageHistory();
    for (let i = 0; i < 20; i++) h.record([flow('fdaa::1', { command: `p${i}` })], DAY, at(i));
    const list = h.record([], DAY, at(21)).addresses['fdaa::1']!;
    expect(list).toHaveLength(16);
    expect(list[0]!.command).toBe('p19');
    expect(list.at(-1)!.command).toBe('p4');
  });
});

describe('UsageHistory hits inside prefix mappings', () => {
  const inPrefix = (dst: string, sport: number, extra: Partial<Flow> = {}) => flow(dst, { sport, prefix: 'fdaa::/64', ...extra });

  test('each flow counts once however many samples see it; a new tuple is a new flow; addresses with a mapping of their own get none', () => {
    const h = new UsageHistory();
    h.record([inPrefix('fdaa::7', 40000), inPrefix('fdaa::7', 40001), flow('fdaa::1')], DAY, at(0));
    h.record([inPrefix('fdaa::7', 40000), inPrefix('fdaa::7', 40001)], DAY, at(30));
    const state = h.record([inPrefix('fdaa::7', 40001), inPrefix('fdaa::7', 40002), inPrefix('fdaa::8', 40000)], DAY, at(60));
    expect(state.hits).toEqual({
      'fdaa::7': { flows: 3, firstSeen: at(0).toISOString(), lastSeen: at(60).toISOString() },
      'fdaa::8': { flows: 1, firstSeen: at(60).toISOString(), lastSeen: at(60).toISOString() },
    });
  });

  test("a flow no process owns any more (a closed socket's TIME_WAIT) is still a hit: it is not in the program records, but it was traffic", () => {
    const h = new UsageHistory();
    const state = h.record([inPrefix('fdaa::7', 40000, { src: 'fd00:1::1' })], DAY, at(0), new Set(['fd00:1::1']));
    expect(state.addresses).toEqual({});
    expect(state.hits!['fdaa::7']!.flows).toBe(1);
  });

  test('hits last seen longer ago than the retirement period are forgotten; they survive a restart through restore', () => {
    const h = new UsageHistory();
    h.record([inPrefix('fdaa::7', 40000)], DAY, at(0));
    const state = h.record([inPrefix('fdaa::8', 40000)], DAY, at(DAY - 10));
    const again = new UsageHistory();
    again.restore(state);
    expect(again.record([], DAY, at(DAY + 10)).hits).toEqual({
      'fdaa::8': { flows: 1, firstSeen: at(DAY - 10).toISOString(), lastSeen: at(DAY - 10).toISOString() },
    });
    // A history written before hits were kept restores with none.
    const old = new UsageHistory();
    old.restore({ schema: 1, updatedAt: at(0).toISOString(), addresses: {} });
    expect(old.record([], DAY, at(1)).hits).toEqual({});
  });
});

describe('describeCgroup', () => {
  test.each([
    ['/system.slice/postgresql.service', { unit: 'postgresql.service' }],
    ['/user.slice/user-1000.slice/session-2.scope', { unit: 'session-2.scope' }],
    ['/system.slice/docker-0123456789abcdef0123456789abcdef.scope', { container: '0123456789ab' }],
    ['/docker/0123456789abcdef0123', { container: '0123456789ab' }],
    ['/machine.slice', {}],
  ])('%s', (path, want) => {
    expect(describeCgroup(path)).toEqual(want);
  });
});
