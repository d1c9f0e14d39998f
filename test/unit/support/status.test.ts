// Status, explain and metrics over the state files and the nft fake.
import { readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { explain, parseAddressInput } from '../../../src/support/explain.js';
import { AgentStats, renderMetrics } from '../../../src/agent/metrics.js';
import { Transaction } from '../../../src/kernel/nft/index.js';
import { FakeNft } from '../../fakes/nft.js';
import { EMPTY_VIEW, planSync } from '../../../src/kernel/plan.js';
import { APPLIED_FILE, USAGE_FILE, writeSnapshot, writeState, type AppliedState, type Snapshot } from '../../../src/state/state-file.js';
import { collectStatus, STATUS_EXIT } from '../../../src/support/status.js';
import { formatStatus } from '../../../src/support/status-format.js';
import { UsageTracker } from '../../../src/agent/usage.js';
import { HISTORY_FILE } from '../../../src/agent/usage-history.js';
import { desired, tempDir } from '../fakes.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(async () => {
  await cleanup();
});

const NOW = new Date('2026-01-01T01:00:00.000Z');
const snap: Snapshot = {
  schema: 1,
  pid: process.pid,
  startedAt: '2026-01-01T00:00:00.000Z',
  updatedAt: '2026-01-01T00:30:00.000Z',
  flag: { enabled: true, source: 'kernel command line' },
  mappingsFile: '/etc/addrmap/mappings.json',
  applied: { generation: 12, at: '2026-01-01T00:30:00.000Z', mappings: 3 },
  lastPush: { at: '2026-01-01T00:30:00.000Z', outcome: 'applied', generation: 12 },
  warnings: [],
};
const applied: AppliedState = {
  schema: 1,
  generation: 12,
  at: '2026-01-01T00:30:00.000Z',
  file: '/etc/addrmap/mappings.json',
  entries: [
    { from: 'fd00::1', to: 'fd00::2' },
    { from: 'fd00::2', to: 'fdaa::2' },
    { from: '10.0.0.1', to: '10.9.0.1' },
  ],
  resolved: [
    { family: 4, from: '10.0.0.1', to: '10.9.0.1' },
    { family: 6, from: 'fd00::1', to: 'fdaa::2' },
    { family: 6, from: 'fd00::2', to: 'fdaa::2' },
  ],
};
const KERNEL = desired({ 'fd00::1': 'fdaa::2', 'fd00::2': 'fdaa::2' }, { '10.0.0.1': '10.9.0.1' });

async function setup(s: Snapshot = snap, kernel = KERNEL): Promise<FakeNft> {
  await writeSnapshot(dir, s);
  await writeState(dir, APPLIED_FILE, applied);
  const nft = new FakeNft();
  await nft.run(planSync(EMPTY_VIEW, kernel).tx);
  return nft;
}

describe('collectStatus', () => {
  test('state files of different generations are not joined: a problem names both, no mappings or drift from them', async () => {
    const nft = await setup();
    const applied = JSON.parse(await readFile(join(dir, APPLIED_FILE), 'utf8')) as AppliedState;
    await writeState(dir, APPLIED_FILE, { ...applied, generation: applied.generation - 1 });
    const r = await collectStatus({ stateDir: dir, nft, conntrack: null, now: NOW });
    expect(r.problems).toContain(
      `state files disagree: status.json says generation ${applied.generation} is applied, applied.json holds generation ${applied.generation - 1}; its mappings are not shown`,
    );
    expect(r.mappings).toEqual([]);
    expect(r.drift).toBeNull();
    expect(r.health).toBe('degraded');
  });

  test('a push the agent has not answered (the file changed after its last state, longer ago than a pass takes): degraded, saying so', async () => {
    const file = join(dir, 'mappings.json');
    await writeFile(file, '{}');
    const nft = await setup({ ...snap, mappingsFile: file });
    const changed = new Date(Date.parse(snap.updatedAt) + 60_000);
    await utimes(file, changed, changed);
    const soon = await collectStatus({ stateDir: dir, nft, conntrack: null, now: new Date(changed.getTime() + 5_000) });
    expect(soon.health).toBe('healthy'); // a pass may still be under way
    const later = await collectStatus({ stateDir: dir, nft, conntrack: null, now: new Date(changed.getTime() + 20_000) });
    expect(later.health).toBe('degraded');
    expect(later.problems).toEqual([
      `push not answered: the mapping file changed 20s ago (${changed.toISOString()}) and the agent has not written its state since; it is not known to be applied (the agent's log says why: out of descriptors, state not writable, or stuck)`,
    ]);
    // Answered: a file older than the agent's last state is no problem.
    const before = new Date(Date.parse(snap.updatedAt) - 1_000);
    await utimes(file, before, before);
    expect((await collectStatus({ stateDir: dir, nft, conntrack: null, now: NOW })).health).toBe('healthy');
  });

  test('healthy: live counters per mapping, no drift, exit code 0', async () => {
    const nft = await setup();
    nft.hit('inet', 'addrmap', 'dnat6', 'fd00::1', 10, 1500);
    const r = await collectStatus({ stateDir: dir, nft, conntrack: null, now: NOW });
    expect(r).toMatchObject({
      schema: 1,
      health: 'healthy',
      problems: [],
      enabled: true,
      flagSource: 'kernel command line',
      generation: 12,
      source: 'kernel',
      drift: [],
    });
    expect(r.agent).toEqual({ running: true, resident: true, pid: process.pid, since: snap.startedAt, uptimeSeconds: 3600 });
    expect(r.mappings).toContainEqual({
      from: 'fd00::1',
      to: 'fdaa::2',
      packets: 10,
      bytes: 1500,
      // No sample has seen these packets yet: used since the last one, so now.
      lastSeen: NOW.toISOString(),
      flows: null,
      inKernel: true,
      expires: null,
      usedBy: [],
    });
    expect(r.mappings.find((m) => m.from === 'fd00::2')).toMatchObject({ packets: 0, lastSeen: null });
    expect(STATUS_EXIT[r.health]).toBe(0);
    const text = formatStatus(r, { now: NOW });
    expect(text).toContain('addrmap HEALTHY');
    expect(text).toContain('enabled:      yes (from kernel command line)');
    expect(text).toContain('agent:        running, pid');
    expect(text).toMatch(/fd00::1\s+fdaa::2\s+10\s+1\.5 KiB\s+0s ago\s+-\s+ok/);
  });

  test('packets counted before sampling began: last seen is the first sample at the latest, never "never"', async () => {
    await setup();
    await writeState(dir, USAGE_FILE, {
      schema: 1,
      sampledAt: '2026-01-01T00:59:00.000Z',
      mappings: { 'fd00::1': { packets: 5, bytes: 500, lastSeen: null, since: '2026-01-01T00:40:00.000Z' } },
    });
    const r = await collectStatus({ stateDir: dir, nft: null, conntrack: null, now: NOW });
    expect(r.mappings.find((m) => m.from === 'fd00::1')).toMatchObject({ packets: 5, lastSeen: '2026-01-01T00:40:00.000Z' });
  });

  test('STILL USED BY: the programs the history saw, with their pid and unit, per stale address', async () => {
    await setup();
    await writeState(dir, HISTORY_FILE, {
      schema: 1,
      updatedAt: '2026-01-01T00:59:00.000Z',
      addresses: {
        'fd00::1': [
          {
            command: 'psql -h fd00::1',
            pid: 4242,
            unit: 'app.service',
            firstSeen: '2026-01-01T00:00:00.000Z',
            lastSeen: '2026-01-01T00:58:00.000Z',
          },
          { command: 'pg_dump', pid: 77, firstSeen: '2026-01-01T00:00:00.000Z', lastSeen: '2026-01-01T00:57:00.000Z' },
          { user: 'postgres', uid: 999, firstSeen: '2026-01-01T00:00:00.000Z', lastSeen: '2026-01-01T00:56:00.000Z' },
          { uid: 1001, firstSeen: '2026-01-01T00:00:00.000Z', lastSeen: '2026-01-01T00:55:00.000Z' },
        ],
        '10.0.0.1': [{ src: '198.18.0.2', firstSeen: '2026-01-01T00:00:00.000Z', lastSeen: '2026-01-01T00:50:00.000Z' }],
      },
    });
    const r = await collectStatus({ stateDir: dir, nft: null, conntrack: null, now: NOW });
    expect(r.mappings.find((m) => m.from === 'fd00::1')!.usedBy).toEqual([
      { command: 'psql -h fd00::1', pid: 4242, unit: 'app.service', lastSeen: '2026-01-01T00:58:00.000Z' },
      { command: 'pg_dump', pid: 77, lastSeen: '2026-01-01T00:57:00.000Z' },
      { user: 'postgres', uid: 999, lastSeen: '2026-01-01T00:56:00.000Z' },
      { uid: 1001, lastSeen: '2026-01-01T00:55:00.000Z' },
    ]);
    // --json carries the pid as it is.
    expect(JSON.parse(JSON.stringify(r)).mappings[1].usedBy[0].pid).toBe(4242);
    // The history is evidence of use too: last seen is never older than it.
    expect(r.mappings.find((m) => m.from === 'fd00::1')!.lastSeen).toBe('2026-01-01T00:58:00.000Z');
    const text = formatStatus(r, { now: NOW });
    expect(text).toContain('STILL USED BY (programs seen over the retirement period: the configs to rewrite)');
    expect(text).toContain('  fd00::1 (now fdaa::2): psql -h fd00::1 (pid 4242, app.service), last 2m00s ago');
    expect(text).toContain('  fd00::1 (now fdaa::2): pg_dump (pid 77), last 3m00s ago');
    // A program the agent may not see (the systemd unit's sandbox): named by the socket's owner.
    expect(text).toContain(
      "  fd00::1 (now fdaa::2): a program of user postgres (its process is not visible to the agent: another user's, under the service's sandbox), last 4m00s ago",
    );
    expect(text).toContain('  fd00::1 (now fdaa::2): a program of uid 1001 (its process');
    expect(text).toContain('  10.0.0.1 (now 10.9.0.1): forwarded from 198.18.0.2, last 10m00s ago');
  });

  test('addresses used inside a prefix mapping: a row each with its own hits (flows counted by the agent), target and flows now', async () => {
    await setup();
    const r = await collectStatus({ stateDir: dir, nft: null, conntrack: null, now: NOW });
    r.mappings.push({
      from: 'fdaa:0:30::/64',
      to: 'fdaa:0:31::/64',
      packets: 40,
      bytes: 4000,
      lastSeen: '2026-01-01T00:59:00.000Z',
      flows: null,
      inKernel: null,
      expires: null,
      usedBy: [],
      inside: [
        { address: 'fdaa:0:30::7', to: 'fdaa:0:31::7', hits: 3, flows: null, lastSeen: '2026-01-01T00:59:00.000Z', usedBy: [] },
        { address: 'fdaa:0:30::9', to: 'fdaa:0:31::9', hits: null, flows: null, lastSeen: null, usedBy: [] },
      ],
    });
    const lines = formatStatus(r, { now: NOW }).split('\n');
    const at = lines.indexOf("INSIDE PREFIX MAPPINGS (2 address(es) used; hits: flows seen by the agent's samples)");
    expect(at).toBeGreaterThan(0);
    expect(lines[at + 1]).toMatch(/^ {2}ADDRESS \(stale\)\s+TO \(now\)\s+PREFIX\s+HITS\s+LAST SEEN\s+FLOWS$/);
    expect(lines[at + 2]).toMatch(/^ {2}fdaa:0:30::7\s+fdaa:0:31::7\s+fdaa:0:30::\/64\s+3\s+1m00s ago\s+-$/);
    expect(lines[at + 3]).toMatch(/^ {2}fdaa:0:30::9\s+fdaa:0:31::9\s+fdaa:0:30::\/64\s+-\s+never\s+-$/);
  });

  test('without kernel access: the agent sample gives hits and last seen', async () => {
    await setup();
    await writeState(dir, USAGE_FILE, {
      schema: 1,
      sampledAt: '2026-01-01T00:59:00.000Z',
      mappings: { 'fd00::2': { packets: 4, bytes: 400, lastSeen: '2026-01-01T00:58:00.000Z' } },
    });
    const r = await collectStatus({ stateDir: dir, nft: null, conntrack: null, now: NOW });
    expect(r).toMatchObject({ health: 'healthy', source: 'snapshot', drift: null, usageSampledAt: '2026-01-01T00:59:00.000Z' });
    expect(r.mappings.find((m) => m.from === 'fd00::2')).toEqual({
      from: 'fd00::2',
      to: 'fdaa::2',
      packets: 4,
      bytes: 400,
      lastSeen: '2026-01-01T00:58:00.000Z',
      flows: null,
      inKernel: null,
      expires: null,
      usedBy: [],
    });
    const text = formatStatus(r, { now: NOW });
    expect(text).toContain('kernel:       not read; run as root');
    expect(text).toMatch(/MAPPINGS \(3; hits sampled 1m00s ago\)/);
    // Used mappings are listed first.
    expect(text.indexOf('fd00::2 ')).toBeLessThan(text.indexOf('fd00::1 '));
  });

  test('drift: a missing, a retargeted and a foreign element are each named; exit code 1', async () => {
    const nft = await setup(snap, desired({ 'fd00::1': 'fdaa::9', 'fd00::7': 'fdaa::7' }, { '10.0.0.1': '10.9.0.1' }));
    const r = await collectStatus({ stateDir: dir, nft, conntrack: null, now: NOW });
    expect(r.health).toBe('degraded');
    expect(r.drift).toEqual([
      'fd00::1 goes to fdaa::9 in the kernel, not fdaa::2',
      'fd00::2 -> fdaa::2 is missing from the kernel',
      'fd00::7 -> fdaa::7 is in the kernel but not in the applied mappings',
    ]);
    expect(STATUS_EXIT[r.health]).toBe(1);
    expect(formatStatus(r, { now: NOW })).toContain('PROBLEMS\n  drift: fd00::1 goes to fdaa::9 in the kernel, not fdaa::2');
  });

  test('drift: the table missing, or altered', async () => {
    await setup();
    const missing = await collectStatus({ stateDir: dir, nft: new FakeNft(), conntrack: null, now: NOW });
    expect(missing.drift).toEqual(['table inet addrmap is missing']);
    const nft = await setup();
    const listing = (await nft.listTable('inet', 'addrmap'))!;
    await nft.run(new Transaction().delete({ rule: listing.rules[0]! }));
    const altered = await collectStatus({ stateDir: dir, nft, conntrack: null, now: NOW });
    expect(altered.drift![0]).toMatch(/has been altered/);
  });

  test('a refused push makes it degraded, with the entry and reason', async () => {
    const nft = await setup({
      ...snap,
      lastPush: {
        at: '2026-01-01T00:59:00.000Z',
        outcome: 'refused',
        generation: 13,
        entry: 'mappings[4]',
        reason: 'mappings form a cycle: a -> b -> a',
      },
    });
    const r = await collectStatus({ stateDir: dir, nft, conntrack: null, now: NOW });
    expect(r.health).toBe('degraded');
    expect(r.problems).toEqual(['last push refused: mappings[4]: mappings form a cycle: a -> b -> a']);
    expect(formatStatus(r, { now: NOW })).toContain(
      'last push:    refused generation 13 at 2026-01-01T00:59:00.000Z (1m00s ago): mappings[4]: mappings form a cycle',
    );
  });

  test('no resident agent by design (one-shot applies): none running is healthy, and the agent line says why', async () => {
    const nft = await setup({ ...snap, pid: null, startedAt: null, resident: false });
    const r = await collectStatus({ stateDir: dir, nft, conntrack: null, now: NOW });
    expect(r).toMatchObject({ health: 'healthy', agent: { running: false, resident: false } });
    expect(STATUS_EXIT[r.health]).toBe(0);
    expect(formatStatus(r, { now: NOW })).toContain(
      'agent:        none resident by design (one-shot applies: addrmap-apply.path, addrmap-check.timer)',
    );
  });

  test('agent not running (exit 3) and disabled (exit 4)', async () => {
    const nft = await setup({ ...snap, pid: 2 ** 22 + 12345 });
    const down = await collectStatus({ stateDir: dir, nft, conntrack: null, now: NOW });
    expect(down.health).toBe('agent-not-running');
    expect(STATUS_EXIT[down.health]).toBe(3);
    expect(down.agent).toEqual({ running: false, resident: true, pid: null, since: null, uptimeSeconds: null });

    await writeSnapshot(dir, { ...snap, flag: { enabled: false, source: 'environment' }, applied: null });
    const off = await collectStatus({ stateDir: dir, nft: new FakeNft(), conntrack: null, now: NOW });
    expect(off).toMatchObject({ health: 'disabled', enabled: false, generation: null, mappings: [], drift: [] });
    expect(STATUS_EXIT[off.health]).toBe(4);
    expect(formatStatus(off, { now: NOW })).toContain('addrmap DISABLED');
  });

  test('the agent never ran: no files at all; the verdict says so, names the directory and the flag as its sources read now', async () => {
    const stateDir = join(dir, 'none');
    const flag = { enabled: true, source: 'config file' } as const;
    const r = await collectStatus({ stateDir, nft: null, conntrack: null, now: NOW, flag });
    expect(r).toMatchObject({ health: 'no-state', enabled: true, flagSource: 'config file', mappings: [], lastPush: null });
    expect(STATUS_EXIT[r.health]).toBe(5);
    expect(r.problems[0]).toBe(
      `no addrmap agent has run with state directory ${stateDir} (the flag reads on (from the config file)); is the agent installed and started, and is this its state directory?`,
    );
    expect(formatStatus(r, { now: NOW }).split('\n')[0]).toBe(
      'addrmap NO STATE HERE: no addrmap agent has written to this state directory; see problems below',
    );
    const unread = await collectStatus({ stateDir, nft: null, conntrack: null, now: NOW });
    expect(unread).toMatchObject({ health: 'no-state', flagSource: 'unknown (the agent has never run)' });
    expect(unread.problems[0]).toContain('(the flag could not be read)');
  });

  test('waiting for the first push: on and running with nothing applied is not degraded (exit 0), and says so', async () => {
    await writeSnapshot(dir, { ...snap, applied: null, lastPush: null });
    const r = await collectStatus({ stateDir: dir, nft: new FakeNft(), conntrack: null, now: NOW });
    expect(r).toMatchObject({ health: 'waiting', problems: [], source: 'kernel', generation: null });
    expect(STATUS_EXIT[r.health]).toBe(0);
    expect(formatStatus(r, { now: NOW }).split('\n')[0]).toBe(
      'addrmap WAITING FOR THE FIRST PUSH: the bridge is on; no mapping file has been applied yet',
    );
    const unprivileged = await collectStatus({ stateDir: dir, nft: null, conntrack: null, now: NOW });
    expect(formatStatus(unprivileged, { now: NOW }).split('\n')[0]).toBe(
      'addrmap WAITING FOR THE FIRST PUSH: the bridge is on; no mapping file has been applied yet (snapshot only; the kernel was not read)',
    );
  });

  test('unprivileged, the verdict line itself says the kernel was not read', async () => {
    await setup();
    const r = await collectStatus({ stateDir: dir, nft: null, conntrack: null, now: NOW });
    expect(r).toMatchObject({ health: 'healthy', source: 'snapshot' });
    expect(formatStatus(r, { now: NOW }).split('\n')[0]).toBe(
      "addrmap HEALTHY (SNAPSHOT ONLY): the agent's files say the bridge is on and applied; the kernel was not read (run as root to check it)",
    );
  });

  test('unprivileged, a degraded or disabled verdict read from the files says SNAPSHOT ONLY on its line too; read live it does not', async () => {
    const nft = await setup({ ...snap, warnings: ['routes: cannot add a route for fd00::1'] });
    const first = async (n: FakeNft | null) =>
      formatStatus(await collectStatus({ stateDir: dir, nft: n, conntrack: null, now: NOW }), { now: NOW }).split('\n')[0];
    expect(await first(null)).toBe(
      "addrmap DEGRADED (SNAPSHOT ONLY): the agent's files report the problems below; the kernel was not read (run as root to check it)",
    );
    expect(await first(nft)).toBe('addrmap DEGRADED: see problems below');

    await writeSnapshot(dir, { ...snap, flag: { enabled: false, source: 'environment' }, applied: null });
    expect(await first(null)).toBe(
      "addrmap DISABLED (SNAPSHOT ONLY): the agent's files say the feature flag is off; the kernel was not read (run as root to check that nothing is translated)",
    );
    expect(await first(new FakeNft())).toBe('addrmap DISABLED: the feature flag is off; no addresses are translated');
  });

  test('more than 50 mappings: the table is cut unless --all', async () => {
    const many: AppliedState = {
      ...applied,
      resolved: Array.from({ length: 60 }, (_, i) => ({ family: 6 as const, from: `fd00::${i + 1}`, to: 'fdaa::2' })),
    };
    await writeSnapshot(dir, snap);
    await writeState(dir, APPLIED_FILE, many);
    const r = await collectStatus({ stateDir: dir, nft: null, conntrack: null, now: NOW });
    expect(formatStatus(r, { now: NOW })).toContain('... and 10 more (--all, or --json)');
    expect(formatStatus(r, { now: NOW, all: true })).not.toContain('more (--all');
  });
});

describe('explain', () => {
  test('any textual form of a mapped address, with the chain it resolved through', () => {
    for (const input of ['fd00::1', 'FD00:0:0:0:0:0:0:1', '[fd00::1]:5432', 'fd00::1%eth0', ' fd00::0001 ']) {
      const e = explain(input, applied);
      expect(e).toMatchObject({ address: 'fd00::1', translated: true, to: 'fdaa::2', generation: 12 });
      expect(e.chain).toEqual([
        { from: 'fd00::1', to: 'fd00::2' },
        { from: 'fd00::2', to: 'fdaa::2' },
      ]);
      expect(e.lines.join('\n')).toContain('chains fd00::1 -> fd00::2 -> fdaa::2; DNAT applies once');
    }
  });

  test('IPv4 with a port; a direct mapping', () => {
    const e = explain('10.0.0.1:5432', applied);
    expect(e).toMatchObject({ address: '10.0.0.1', translated: true, to: '10.9.0.1' });
    expect(e.lines[1]).toBe('The mapping file maps 10.0.0.1 -> 10.9.0.1 directly.');
  });

  test('a target and an unmapped address are not translated; the target names its stale addresses', () => {
    const t = explain('fdaa::2', applied);
    expect(t).toMatchObject({ translated: false, targetOf: ['fd00::1', 'fd00::2'] });
    expect(t.lines.join('\n')).toContain('fdaa::2 is the current address behind: fd00::1, fd00::2.');
    expect(explain('fd00::99', applied).lines[0]).toBe('fd00::99 is not translated: no mapping in generation 12 has it as "from".');
  });

  test('compares with the kernel when given it, naming drift', () => {
    expect(explain('fd00::1', applied, new Map([['fd00::1', 'fdaa::2']])).lines.join('\n')).toContain('The kernel agrees');
    expect(explain('fd00::1', applied, new Map()).lines.join('\n')).toContain('DRIFT: the kernel has no entry for fd00::1');
    expect(explain('fd00::99', applied, new Map([['fd00::99', 'fdaa::1']])).lines.join('\n')).toContain(
      'DRIFT: the kernel still sends fd00::99 to fdaa::1',
    );
  });

  test('an IPv4-mapped IPv6 spelling is explained as the IPv4 address the kernel sees', () => {
    expect(parseAddressInput('::ffff:198.51.100.10')).toBe('198.51.100.10');
    expect(parseAddressInput('[::FFFF:c633:640a]:5432')).toBe('198.51.100.10');
    expect(parseAddressInput('::ffff:0:c633:640a')).toBe('::ffff:0:c633:640a');
  });

  test('bad input is a usage error', () => {
    expect(() => parseAddressInput('db.example.com')).toThrow(/is not an IP address/);
    expect(explain('fd00::1', null).lines[0]).toMatch(/no mappings have been applied/);
  });
});

describe('usage sampling', () => {
  test('last seen moves only when counters grow, or restart after a rebuild', async () => {
    const nft = new FakeNft();
    await nft.run(planSync(EMPTY_VIEW, desired({ 'fd00::1': 'fdaa::1', 'fd00::2': 'fdaa::2' })).tx);
    const u = new UsageTracker(nft);
    const t = (m: number) => new Date(Date.UTC(2026, 0, 1, 0, m));
    expect((await u.sample(t(0))).mappings['fd00::1']).toEqual({ packets: 0, bytes: 0, lastSeen: null, since: t(0).toISOString() });
    nft.hit('inet', 'addrmap', 'dnat6', 'fd00::1', 3, 300);
    expect((await u.sample(t(1))).mappings['fd00::1']).toEqual({
      packets: 3,
      bytes: 300,
      lastSeen: t(1).toISOString(),
      since: t(0).toISOString(),
    });
    const s2 = await u.sample(t(2));
    expect(s2.mappings['fd00::1']!.lastSeen).toBe(t(1).toISOString());
    expect(s2.mappings['fd00::2']!.lastSeen).toBeNull();

    // A rebuild resets counters; traffic after it still counts as use.
    await nft.run(planSync(EMPTY_VIEW, desired({ 'fd00::1': 'fdaa::1', 'fd00::2': 'fdaa::2' }), true).tx);
    nft.hit('inet', 'addrmap', 'dnat6', 'fd00::1', 1, 100);
    expect((await u.sample(t(3))).mappings['fd00::1']).toEqual({
      packets: 1,
      bytes: 100,
      lastSeen: t(3).toISOString(),
      since: t(0).toISOString(),
    });

    // A restarted agent continues from the previous sample.
    const again = new UsageTracker(nft);
    again.restore(await u.sample(t(4)));
    expect((await again.sample(t(5))).mappings['fd00::1']!.lastSeen).toBe(t(3).toISOString());
  });
});

describe('metrics', () => {
  test('Prometheus text with every series', () => {
    const s = new AgentStats();
    s.enabled = true;
    s.generation = 7;
    s.mappings = 2;
    s.recordSync(0.05);
    s.recordSync(0.15);
    s.syncFailures = 1;
    s.refusedPushes = 3;
    s.driftRepairs = 2;
    s.perMapping = [{ from: 'fd00::1', to: 'fdaa::1', packets: 10, bytes: 1000 }];
    const text = renderMetrics(s);
    for (const line of [
      'addrmap_enabled 1',
      'addrmap_mappings 2',
      'addrmap_applied_generation 7',
      'addrmap_sync_duration_seconds_sum 0.2',
      'addrmap_sync_duration_seconds_count 2',
      'addrmap_last_sync_duration_seconds 0.15',
      'addrmap_sync_failures_total 1',
      'addrmap_refused_pushes_total 3',
      'addrmap_drift_repairs_total 2',
      'addrmap_mapping_packets_total{from="fd00::1",to="fdaa::1"} 10',
      'addrmap_mapping_bytes_total{from="fd00::1",to="fdaa::1"} 1000',
      '# TYPE addrmap_sync_duration_seconds summary',
    ]) {
      expect(text.split('\n')).toContain(line);
    }
  });
});

describe('expiry and retirement in status', () => {
  test('upcoming expiries soonest first; mappings idle past the threshold are safe to retire', async () => {
    await writeSnapshot(dir, snap);
    await writeState(dir, APPLIED_FILE, {
      ...applied,
      entries: [
        { from: 'fd00::1', to: 'fd00::2', expires: '2026-01-02T00:00:00.000Z' },
        { from: 'fd00::2', to: 'fdaa::2', expires: '2026-01-01T02:00:00.000Z' },
        { from: '10.0.0.1', to: '10.9.0.1' },
      ],
    } satisfies AppliedState);
    await writeState(dir, USAGE_FILE, {
      schema: 1,
      sampledAt: '2026-01-01T00:59:00.000Z',
      mappings: {
        'fd00::1': { packets: 0, bytes: 0, lastSeen: null, since: '2025-12-01T00:00:00.000Z' },
        'fd00::2': { packets: 9, bytes: 900, lastSeen: '2026-01-01T00:50:00.000Z', since: '2025-12-01T00:00:00.000Z' },
        '10.0.0.1': { packets: 5, bytes: 500, lastSeen: '2025-12-20T00:00:00.000Z', since: '2025-12-01T00:00:00.000Z' },
      },
    });
    const r = await collectStatus({ stateDir: dir, nft: null, conntrack: null, now: NOW, retireAfterSeconds: 7 * 24 * 3600 });
    expect(r.expiring).toEqual([
      { from: 'fd00::2', to: 'fdaa::2', expires: '2026-01-01T02:00:00.000Z' },
      { from: 'fd00::1', to: 'fdaa::2', expires: '2026-01-02T00:00:00.000Z' },
    ]);
    expect(r.safeToRetire).toEqual({ afterSeconds: 604800, mappings: ['10.0.0.1', 'fd00::1'] });
    const text = formatStatus(r, { now: NOW });
    expect(text).toContain('EXPIRING (2)\n  fd00::2 -> fdaa::2 at 2026-01-01T02:00:00.000Z (in 1h00m)');
    expect(text).toContain('SAFE TO RETIRE (2; no traffic for 7d00h or longer)\n  10.0.0.1\n  fd00::1');
  });
});
