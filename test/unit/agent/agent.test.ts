import { chmod, mkdir, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { Agent } from '../../../src/agent/agent.js';
import { Transaction } from '../../../src/kernel/nft/index.js';
import { FakeNft } from '../../fakes/nft.js';
import { Reconciler } from '../../../src/kernel/reconciler.js';
import type { Paths } from '../../../src/input/settings.js';
import { readSnapshot } from '../../../src/state/state-file.js';
import { FakeConntrack } from '../../fakes/conntrack.js';
import { FakeRoutes } from '../../fakes/routes.js';
import { elementsOf, mappingFileText, memoryLogger, opCounts, tempDir } from '../fakes.js';

let dir: string;
let cleanup: () => Promise<void>;
let paths: Paths;
let cmdlineFile: string;
let env: NodeJS.ProcessEnv;
let nft: FakeNft;
let routes: FakeRoutes;
let conntrack: FakeConntrack;
let logger: ReturnType<typeof memoryLogger>;

const BOOT_CMDLINE = 'BOOT_IMAGE=/boot/vmlinuz-6.1.0 root=/dev/vda1 ro console=ttyS0 quiet\n';

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
  paths = { config: join(dir, 'config.json'), mappings: join(dir, 'mappings.json'), stateDir: join(dir, 'state') };
  cmdlineFile = join(dir, 'cmdline');
  await writeFile(cmdlineFile, BOOT_CMDLINE);
  env = { ADDRMAP_ENABLED: '1', ADDRMAP_CMDLINE_FILE: cmdlineFile };
  nft = new FakeNft();
  routes = new FakeRoutes();
  for (const t of ['fdaa::1', 'fdaa::2', 'fdaa::3', 'fdbb::1']) routes.reachable.set(t, { dev: 'eth0', gateway: 'fe80::1' });
  routes.reachable.set('10.9.0.1', { dev: 'eth0' });
  conntrack = new FakeConntrack();
  logger = memoryLogger();
});

afterEach(async () => {
  await cleanup();
});

/** A fresh agent (as after a restart) over the shared fake kernel, state dir and files. */
async function newAgent(opts: { daemon?: boolean } = {}): Promise<Agent> {
  const agent = new Agent({
    paths,
    env,
    reconciler: new Reconciler({ nft, routes, conntrack }),
    log: logger.log,
    daemon: opts.daemon ?? false,
  });
  await agent.init();
  return agent;
}

const push = (generation: number, mappings: [string, string][]) => writeFile(paths.mappings, mappingFileText(generation, mappings));
/** A generation-1 file with entries written out (for fields beyond from and to). */
const pushEntries = (mappings: Record<string, string>[]) =>
  writeFile(paths.mappings, JSON.stringify({ version: 1, generation: 1, mappings }));
const kernel = () => nft.listTable('inet', 'addrmap');
const snapshot = async () => (await readSnapshot(paths.stateDir))!;
const lastEvent = () => logger.records.at(-1)!;
const committedOps = () => nft.history.filter((h) => h.committed).reduce((n, h) => n + h.tx.size, 0);

describe('Agent.pass: applying', () => {
  test('a valid file is applied, logged and recorded', async () => {
    await writeFile(paths.config, JSON.stringify({ allowedTargets: ['fc00::/7', '10.9.0.0/16'] }));
    await push(3, [
      ['fd00::1', 'fdaa::1'],
      ['10.0.0.1', '10.9.0.1'],
    ]);
    const agent = await newAgent();
    const r = await agent.pass();
    expect(r.outcome).toBe('applied');
    expect(r.flag).toEqual({ enabled: true, source: 'environment' });
    expect(r.sync).toMatchObject({ kind: 'full', added: 2 });
    expect(elementsOf(await kernel())).toEqual({ dnat4: ['10.0.0.1 -> 10.9.0.1'], dnat6: ['fd00::1 -> fdaa::1'] });

    expect(logger.events()).toEqual(['applied']);
    expect(lastEvent()).toMatchObject({
      event: 'applied',
      generation: 3,
      mappings: 2,
      kind: 'full',
      added: 2,
      removed: 0,
      retargeted: 0,
      routesAdded: 2,
    });
    expect(typeof lastEvent().durationMs).toBe('number');

    const snap = await snapshot();
    expect(snap).toMatchObject({
      schema: 1,
      pid: null,
      flag: { enabled: true, source: 'environment' },
      mappingsFile: paths.mappings,
      applied: { generation: 3, mappings: 2 },
      lastPush: { outcome: 'applied', generation: 3 },
      warnings: [],
    });
  });

  test('appliedPairs: every applied pair, prefixes as net/len, one view per applied state (no copy)', async () => {
    await writeFile(paths.config, JSON.stringify({ allowedTargets: ['fc00::/7', '10.9.0.0/16'] }));
    await pushEntries([
      { from: 'fd00::1', to: 'fdaa::1' },
      { from: '10.0.0.1', to: '10.9.0.1' },
      { from: 'fd00:5::/64', to: 'fdbb::/64' },
    ]);
    const agent = await newAgent();
    expect(agent.appliedPairs().size).toBe(0);
    await agent.pass();
    const pairs = agent.appliedPairs();
    expect(new Map(pairs)).toEqual(
      new Map([
        ['10.0.0.1', '10.9.0.1'],
        ['fd00::1', 'fdaa::1'],
        ['fd00:5::/64', 'fdbb::/64'],
      ]),
    );
    expect(pairs.size).toBe(3);
    expect([pairs.has('fd00::1'), pairs.get('10.0.0.1'), pairs.has('fd00::9')]).toEqual([true, '10.9.0.1', false]);
    expect(agent.appliedPairs()).toBe(pairs);
    await push(2, [['fd00::1', 'fdaa::2']]);
    await agent.pass();
    expect(agent.appliedPairs()).not.toBe(pairs);
    expect([...agent.appliedPairs()]).toEqual([['fd00::1', 'fdaa::2']]);
  });

  test('IPv4 targets are refused unless the config allows their range', async () => {
    await push(1, [['10.0.0.1', '10.9.0.1']]);
    const agent = await newAgent();
    const r = await agent.pass();
    expect(r.outcome).toBe('refused');
    expect(lastEvent()).toMatchObject({
      event: 'refused',
      entry: 'mappings[0]',
      reason: expect.stringMatching(/outside the allowed target ranges \(fc00::\/7\)/),
    });
    expect(await kernel()).toBeNull();

    await writeFile(paths.config, JSON.stringify({ allowedTargets: ['10.9.0.0/16'] }));
    expect((await agent.pass()).outcome).toBe('applied');
    expect(elementsOf(await kernel()).dnat4).toEqual(['10.0.0.1 -> 10.9.0.1']);
  });

  test('chains in the file are installed resolved', async () => {
    await push(1, [
      ['fd00::a', 'fd00::b'],
      ['fd00::b', 'fdaa::1'],
    ]);
    await (await newAgent()).pass();
    expect(elementsOf(await kernel()).dnat6).toEqual(['fd00::a -> fdaa::1', 'fd00::b -> fdaa::1']);
  });

  test('re-applying the same generation is unchanged, with no nft operations', async () => {
    await push(4, [['fd00::1', 'fdaa::1']]);
    const agent = await newAgent();
    await agent.pass();
    const ops = committedOps();
    const r = await agent.pass();
    expect(r.outcome).toBe('unchanged');
    expect(committedOps()).toBe(ops);
    expect(logger.events()).toEqual(['applied', 'unchanged']);
    expect(lastEvent()).toMatchObject({ generation: 4, kind: 'none', mappings: 1 });
    // Re-reading an unchanged file is not news: the snapshot keeps the push that mattered.
    const snap = await snapshot();
    expect(snap.lastPush).toMatchObject({ outcome: 'applied', generation: 4 });
    expect(snap.applied).toMatchObject({ generation: 4, mappings: 1 });
  });

  test('after a restart, the same generation over an intact kernel is unchanged and keeps counters', async () => {
    await push(4, [['fd00::1', 'fdaa::1']]);
    await (await newAgent()).pass();
    nft.hit('inet', 'addrmap', 'dnat6', 'fd00::1', 9, 900);
    const runs = nft.history.length;
    const r = await (await newAgent()).pass();
    expect(r.outcome).toBe('unchanged');
    expect(opCounts(nft).slice(runs)).toEqual([0]);
    expect((await kernel())!.maps.find((m) => m.name === 'dnat6')!.elements[0]!.counter).toEqual({ packets: 9, bytes: 900 });
  });

  test('a higher generation with the same content is applied (nothing to send)', async () => {
    await push(4, [['fd00::1', 'fdaa::1']]);
    const agent = await newAgent();
    await agent.pass();
    await push(5, [['fd00::1', 'fdaa::1']]);
    const r = await agent.pass();
    expect(r.outcome).toBe('applied');
    expect(r.sync?.kind).toBe('none');
    expect((await snapshot()).applied?.generation).toBe(5);
  });

  test('the same generation with different content is applied as a delta', async () => {
    await push(4, [['fd00::1', 'fdaa::1']]);
    const agent = await newAgent();
    await agent.pass();
    await push(4, [['fd00::1', 'fdaa::2']]);
    const r = await agent.pass();
    expect(r.outcome).toBe('applied');
    expect(r.sync).toMatchObject({ kind: 'delta', retargeted: 1 });
    expect(elementsOf(await kernel()).dnat6).toEqual(['fd00::1 -> fdaa::2']);
  });

  test('warnings from the sync are logged as degraded and recorded', async () => {
    await push(1, [['fd00::9', 'fdcc::9']]);
    const r = await (await newAgent()).pass();
    expect(r.outcome).toBe('applied');
    expect(logger.events()).toEqual(['applied', 'degraded']);
    expect(lastEvent()).toMatchObject({ event: 'degraded', generation: 1, reason: expect.stringMatching(/no route to target fdcc::9/) });
    expect((await snapshot()).warnings).toEqual([expect.stringMatching(/no route to target fdcc::9 of fd00::9/)]);
  });

  test('a daemon records its pid, and stopped() clears it', async () => {
    await push(1, [['fd00::1', 'fdaa::1']]);
    const agent = await newAgent({ daemon: true });
    await agent.pass();
    expect((await snapshot()).pid).toBe(process.pid);
    expect((await snapshot()).startedAt).toEqual(expect.any(String));
    await agent.stopped();
    expect((await snapshot()).pid).toBeNull();
  });

  test('a snapshot that cannot be written is logged, and the pass still applies', async () => {
    await writeFile(paths.stateDir, 'not a directory');
    await push(1, [['fd00::1', 'fdaa::1']]);
    const r = await (await newAgent()).pass();
    expect(r.outcome).toBe('applied');
    // The unreadable previous snapshot is reported too: the generation check starts afresh.
    expect(logger.events()).toEqual(['snapshot_unreadable', 'state_write_failed', 'applied', 'state_write_failed']);
    expect(elementsOf(await kernel()).dnat6).toEqual(['fd00::1 -> fdaa::1']);
  });
});

describe('Agent.pass: the feature flag', () => {
  const cases: { name: string; env?: string; cmdline?: string; config?: boolean; enabled: boolean; source: string }[] = [
    {
      name: 'environment beats kernel command line and config (off)',
      env: '0',
      cmdline: '1',
      config: true,
      enabled: false,
      source: 'environment',
    },
    {
      name: 'environment beats kernel command line and config (on)',
      env: 'true',
      cmdline: '0',
      config: false,
      enabled: true,
      source: 'environment',
    },
    { name: 'kernel command line beats config (on)', cmdline: '1', config: false, enabled: true, source: 'kernel command line' },
    { name: 'kernel command line beats config (off)', cmdline: 'false', config: true, enabled: false, source: 'kernel command line' },
    { name: 'config alone (on)', config: true, enabled: true, source: 'config file' },
    { name: 'config alone (off)', config: false, enabled: false, source: 'config file' },
    { name: 'nothing set: default off', enabled: false, source: 'default' },
    { name: 'an empty environment variable counts as unset', env: '', cmdline: '1', enabled: true, source: 'kernel command line' },
  ];
  test.each(cases)('$name', async (c) => {
    env = { ADDRMAP_CMDLINE_FILE: cmdlineFile, ...(c.env === undefined ? {} : { ADDRMAP_ENABLED: c.env }) };
    if (c.cmdline !== undefined) await writeFile(cmdlineFile, `root=/dev/vda1 addrmap.enabled=${c.cmdline} quiet\n`);
    if (c.config !== undefined) await writeFile(paths.config, JSON.stringify({ enabled: c.config }));
    await push(1, [['fd00::1', 'fdaa::1']]);
    const r = await (await newAgent()).pass();
    expect(r.flag).toEqual({ enabled: c.enabled, source: c.source });
    expect(r.outcome).toBe(c.enabled ? 'applied' : 'disabled');
    expect((await kernel()) !== null).toBe(c.enabled);
    expect((await snapshot()).flag).toEqual({ enabled: c.enabled, source: c.source });
  });

  test('with the feature off from the start, nothing is sent to nft and nothing is logged', async () => {
    env = { ADDRMAP_CMDLINE_FILE: cmdlineFile };
    await push(1, [['fd00::1', 'fdaa::1']]);
    const r = await (await newAgent()).pass();
    expect(r.outcome).toBe('disabled');
    expect(nft.history).toEqual([]);
    expect(logger.events()).toEqual([]);
    expect((await snapshot()).applied).toBeNull();
  });

  test("switching the flag off removes the table and addrmap's routes", async () => {
    routes.table.push({ family: 6, dst: 'fd00:99::1', dev: 'eth0', proto: 4 });
    await push(1, [['fd00::1', 'fdaa::1']]);
    const agent = await newAgent();
    await agent.pass();
    expect(routes.ours()).toHaveLength(1);

    env.ADDRMAP_ENABLED = '0';
    const r = await agent.pass();
    expect(r).toEqual({ outcome: 'disabled', flag: { enabled: false, source: 'environment' } });
    expect(await kernel()).toBeNull();
    expect(routes.ours()).toEqual([]);
    expect(routes.table).toEqual([{ family: 6, dst: 'fd00:99::1', dev: 'eth0', proto: 4 }]);
    expect(lastEvent()).toMatchObject({ event: 'disabled', flagSource: 'environment', removedTable: true, routesRemoved: 1 });
    const snap = await snapshot();
    expect(snap.flag).toEqual({ enabled: false, source: 'environment' });
    expect(snap.applied).toBeNull();
  });

  test('an older generation stays refused after the flag was off and on again', async () => {
    await push(5, [['fd00::1', 'fdaa::1']]);
    const agent = await newAgent();
    await agent.pass();
    env.ADDRMAP_ENABLED = '0';
    await agent.pass();
    env.ADDRMAP_ENABLED = '1';
    await push(4, [['fd00::1', 'fdaa::2']]);
    const r = await (await newAgent()).pass();
    expect(r.outcome).toBe('refused');
    expect(r.message).toMatch(/generation 4 is older than the applied generation 5/);
    expect(await kernel()).toBeNull();
  });

  test('switching the flag off on the kernel command line also removes the table', async () => {
    await push(1, [['fd00::1', 'fdaa::1']]);
    delete env.ADDRMAP_ENABLED;
    await writeFile(cmdlineFile, 'addrmap.enabled=1 quiet addrmap.enabled=0\n'); // the last occurrence wins
    const r = await (await newAgent()).pass();
    expect(r.flag).toEqual({ enabled: false, source: 'kernel command line' });
    expect(await kernel()).toBeNull();
  });

  test.each([
    ['ADDRMAP_ENABLED=yes', { ADDRMAP_ENABLED: 'yes' }, undefined, /ADDRMAP_ENABLED must be 1 or 0 \(or true\/false\), not "yes"/],
    ['ADDRMAP_ENABLED=TRUE', { ADDRMAP_ENABLED: 'TRUE' }, undefined, /ADDRMAP_ENABLED .*not "TRUE"/],
    [
      'addrmap.enabled=maybe',
      {},
      'root=/dev/vda1 addrmap.enabled=maybe\n',
      /addrmap\.enabled on the kernel command line must be 1 or 0 .*not "maybe"/,
    ],
    ['addrmap.enabled= (empty)', {}, 'addrmap.enabled= quiet\n', /kernel command line .*not ""/],
  ])(
    'an invalid flag value (%s) is refused with a clear error and leaves the kernel as it was',
    async (_name, envFlag, cmdline, message) => {
      await push(1, [['fd00::1', 'fdaa::1']]);
      const agent = await newAgent();
      await agent.pass();
      const before = await kernel();
      const runs = nft.history.length;

      env = { ADDRMAP_CMDLINE_FILE: cmdlineFile, ...envFlag };
      if (cmdline) await writeFile(cmdlineFile, cmdline);
      // The agent reads env through the object it was given: rebuild it with the new env.
      const again = await newAgent();
      const r = await again.pass();
      expect(r.outcome).toBe('refused');
      expect(r.message).toMatch(message);
      // The previous flag stays in force: the feature is not flipped by a typo.
      expect(r.flag).toEqual({ enabled: true, source: 'environment' });
      expect(await kernel()).toEqual(before);
      expect(nft.history).toHaveLength(runs);
      expect(lastEvent()).toMatchObject({ event: 'config_refused', reason: expect.stringMatching(message) });
      expect((await snapshot()).lastPush).toMatchObject({ outcome: 'refused', reason: expect.stringMatching(message) });
      expect((await snapshot()).applied?.generation).toBe(1);
    },
  );

  test('a config file with an unknown key is refused; the kernel is untouched', async () => {
    await push(1, [['fd00::1', 'fdaa::1']]);
    const agent = await newAgent();
    await agent.pass();
    const before = await kernel();
    await writeFile(paths.config, JSON.stringify({ enable: true }));
    const r = await agent.pass();
    expect(r.outcome).toBe('refused');
    // The setting is described by what is known, not quoted (it is the file's bytes).
    expect(r.message).toBe(
      `${paths.config}: an unknown setting (known: enabled, logLevel, allowedTargets, metricsFile, metricsListen, metricsListenAnyAddress, usageIntervalSeconds, retireAfterSeconds)`,
    );
    expect((r.message ?? '').slice(paths.config.length)).not.toContain('enable"');
    expect((r.message ?? '').slice(paths.config.length)).not.toMatch(/\benable\b/);
    expect(await kernel()).toEqual(before);
    expect(lastEvent().event).toBe('config_refused');
  });
});

describe('Agent.pass: refusals leave the kernel exactly as it was', () => {
  let agent: Agent;
  let before: Awaited<ReturnType<typeof kernel>>;

  beforeEach(async () => {
    await push(5, [
      ['fd00::1', 'fdaa::1'],
      ['fd00::2', 'fdaa::2'],
    ]);
    agent = await newAgent();
    expect((await agent.pass()).outcome).toBe('applied');
    nft.hit('inet', 'addrmap', 'dnat6', 'fd00::1', 3, 300);
    before = await kernel();
  });

  async function expectRefused(entry: string | null, reason: RegExp, generation?: number) {
    const runs = nft.history.length;
    const routeCalls = routes.calls.apply.length;
    const r = await agent.pass();
    expect(r.outcome).toBe('refused');
    expect(r.message).toBe(entry ? `${entry}: ${String(lastEvent().reason)}` : lastEvent().reason);
    expect(await kernel()).toEqual(before);
    expect(nft.history).toHaveLength(runs);
    expect(routes.calls.apply).toHaveLength(routeCalls);
    expect(routes.ours().map((x) => x.dst)).toEqual(['fd00::1', 'fd00::2']);

    expect(lastEvent()).toMatchObject({ event: 'refused', entry, reason: expect.stringMatching(reason), file: paths.mappings });
    if (generation !== undefined) expect(lastEvent().generation).toBe(generation);
    const snap = await snapshot();
    expect(snap.lastPush).toMatchObject({ outcome: 'refused', entry, reason: expect.stringMatching(reason) });
    if (generation !== undefined) expect(snap.lastPush?.generation).toBe(generation);
    expect(snap.applied).toMatchObject({ generation: 5, mappings: 2 });
  }

  test('invalid JSON', async () => {
    await writeFile(paths.mappings, '{"version": 1, "generation": 6, "mappings": [');
    await expectRefused(null, /^invalid JSON/);
  });

  test('an invalid entry', async () => {
    await push(6, [
      ['fd00::1', 'fdaa::1'],
      ['fd00::3', 'not-an-address'],
    ]);
    await expectRefused('mappings[1]', /^to: not a valid IP address$/);
    expect(String(lastEvent().reason)).not.toContain('not-an-address');
    expect((await snapshot()).lastPush?.reason).not.toContain('not-an-address');
  });

  test('a cycle', async () => {
    await push(6, [
      ['fd00::1', 'fdaa::1'],
      ['fd00::a', 'fd00::b'],
      ['fd00::b', 'fd00::a'],
    ]);
    await expectRefused('mappings[1]', /mappings form a cycle: fd00::a -> fd00::b -> fd00::a/, 6);
  });

  test('a lower generation', async () => {
    await push(4, [['fd00::1', 'fdaa::3']]);
    await expectRefused(
      'generation',
      /^generation 4 is older than the applied generation 5 \(after a mistaken push: addrmap apply --accept-lower-generation\)$/,
      4,
    );
  });

  test('a lower generation is still refused by a new Agent over the same state dir', async () => {
    await push(4, [['fd00::1', 'fdaa::3']]);
    agent = await newAgent();
    await expectRefused(
      'generation',
      /^generation 4 is older than the applied generation 5 \(after a mistaken push: addrmap apply --accept-lower-generation\)$/,
      4,
    );
    // ...while a higher one goes through.
    await push(6, [['fd00::1', 'fdaa::3']]);
    const r = await agent.pass();
    expect(r.outcome).toBe('applied');
    expect(elementsOf(await kernel()).dnat6).toEqual(['fd00::1 -> fdaa::3']);
  });

  test('after a refusal the next good file applies as a delta from the last good state', async () => {
    await push(6, [['fd00::1', 'fd00::1']]);
    expect((await agent.pass()).outcome).toBe('refused');
    await push(7, [['fd00::1', 'fdaa::1']]);
    const r = await agent.pass();
    expect(r.outcome).toBe('applied');
    expect(r.sync).toMatchObject({ kind: 'delta', removed: 1, added: 0 });
    expect(logger.events()).toEqual(['applied', 'refused', 'applied']);
    expect((await snapshot()).lastPush).toMatchObject({ outcome: 'applied', generation: 7 });
  });

  test('a mapping file writable by others is refused', async () => {
    await push(6, [['fd00::1', 'fdaa::3']]);
    await chmod(paths.mappings, 0o666);
    await expectRefused(null, /writable by group or others \(mode 0666\)/);
  });

  test('a mapping file that is a symlink is refused', async () => {
    const real = join(dir, 'elsewhere.json');
    await writeFile(real, mappingFileText(6, [['fd00::1', 'fdaa::3']]));
    await unlink(paths.mappings);
    await symlink(real, paths.mappings);
    await expectRefused(null, /is a symlink/);
  });

  test('a missing mapping file keeps the current mappings', async () => {
    await unlink(paths.mappings);
    const runs = nft.history.length;
    const r = await agent.pass();
    expect(r.outcome).toBe('no-file');
    expect(await kernel()).toEqual(before);
    expect(nft.history).toHaveLength(runs);
    expect(lastEvent()).toMatchObject({ event: 'no_mapping_file', file: paths.mappings });
    const snap = await snapshot();
    expect(snap.applied).toMatchObject({ generation: 5 });
    expect(snap.warnings).toEqual([`mapping file ${paths.mappings} is absent; current mappings kept`]);
  });

  test('an nft failure is reported as failed, changes nothing, and the next pass rebuilds', async () => {
    await push(6, [['fd00::1', 'fdbb::1']]);
    nft.failNextRun('Operation not permitted');
    const r = await agent.pass();
    expect(r.outcome).toBe('failed');
    expect(r.message).toMatch(/Operation not permitted/);
    expect(await kernel()).toEqual(before);
    expect(lastEvent()).toMatchObject({ event: 'apply_failed', generation: 6, reason: expect.stringMatching(/Operation not permitted/) });
    const snap = await snapshot();
    expect(snap.lastPush).toMatchObject({ outcome: 'failed', generation: 6 });
    expect(snap.applied?.generation).toBe(5);

    const again = await agent.pass();
    expect(again.outcome).toBe('applied');
    expect(again.sync?.kind).toBe('full');
    expect(elementsOf(await kernel()).dnat6).toEqual(['fd00::1 -> fdbb::1']);
  });
});

describe('Agent.pass: first boot', () => {
  test('no mapping file and nothing installed: nothing to do', async () => {
    const r = await (await newAgent()).pass();
    expect(r.outcome).toBe('no-file');
    expect(await kernel()).toBeNull();
    expect(nft.history).toEqual([]);
    expect((await snapshot()).applied).toBeNull();
  });

  test('an unreadable snapshot is ignored on init', async () => {
    await mkdir(paths.stateDir, { recursive: true });
    await writeFile(join(paths.stateDir, 'status.json'), '{ torn');
    await push(1, [['fd00::1', 'fdaa::1']]);
    const r = await (await newAgent()).pass();
    expect(r.outcome).toBe('applied');
  });
});

// Routes and conntrack run after the nft commit; their failures must not be
// reported as "failed" (which promises an unchanged kernel). The pass is
// applied, degraded, with the reason among its warnings.
describe('a helper failing after the nft commit', () => {
  test('a routes lookup that throws: applied with a warning, generation recorded', async () => {
    await push(1, [['fd00::1', 'fdaa::1']]);
    const agent = await newAgent();
    await agent.pass();

    routes.throwOnLookup = new Error('ip: command not found (is it installed and on PATH?)');
    await push(2, [
      ['fd00::1', 'fdaa::1'],
      ['fd00::2', 'fdaa::2'],
    ]);
    const r = await agent.pass();
    expect(r.outcome).toBe('applied');
    expect(r.sync?.warnings.join('\n')).toMatch(/routes not updated: ip: command not found/);
    expect(logger.events()).toContain('degraded');
    expect((await snapshot()).applied?.generation).toBe(2);
  });
});

describe('Agent.repair', () => {
  /** An agent that applied generation 1 and then failed to apply generation 2. */
  async function afterFailedPush(): Promise<Agent> {
    await push(1, [['fd00::1', 'fdaa::1']]);
    const agent = await newAgent({ daemon: true });
    await agent.pass();
    await push(2, [['fd00::1', 'fdaa::2']]);
    nft.failNextRun();
    expect((await agent.pass()).outcome).toBe('failed');
    return agent;
  }

  test('after a failed push, a check that finds the kernel as it should be rebuilds whole but is not drift', async () => {
    const agent = await afterFailedPush();
    const sync = await agent.repair('verification after a table rebuild');
    expect(sync).toMatchObject({ kind: 'full', forcedOnly: true });
    expect(lastEvent()).toMatchObject({ event: 'rebuilt', reason: 'the transaction before failed' });
    expect(logger.events()).not.toContain('drift_repaired');
    expect(agent.stats.driftRepairs).toBe(0);
    expect(elementsOf(await kernel()).dnat6).toEqual(['fd00::1 -> fdaa::1']);
  });

  test('real drift after a failed push is repaired, logged and counted as drift', async () => {
    const agent = await afterFailedPush();
    await nft.run(new Transaction().delete({ table: { family: 'inet', name: 'addrmap' } }));

    const sync = await agent.repair('delete table');
    expect(sync).toMatchObject({ kind: 'full' });
    expect(sync?.forcedOnly).toBeUndefined();
    expect(lastEvent()).toMatchObject({ event: 'drift_repaired' });
    expect(agent.stats.driftRepairs).toBe(1);
  });
});

describe('expiring mappings', () => {
  test('an expired mapping is not installed; one expiring later is removed by expire() at its time, whatever the file says then', async () => {
    const soon = new Date(Date.now() + 200).toISOString();
    const past = new Date(Date.now() - 1000).toISOString();
    await pushEntries([
      { from: 'fd00::1', to: 'fdaa::1', expires: soon },
      { from: 'fd00::2', to: 'fdaa::2', expires: past },
      { from: 'fd00::3', to: 'fdaa::3' },
    ]);
    const agent = await newAgent({ daemon: true });
    const r = await agent.pass();
    expect(r.outcome).toBe('applied');
    expect(elementsOf(await kernel()).dnat6).toEqual(['fd00::1 -> fdaa::1', 'fd00::3 -> fdaa::3']);
    expect(agent.nextExpiry).toBe(Date.parse(soon));
    expect(logger.records.at(-1)).toMatchObject({ event: 'applied', expired: 1 });

    await writeFile(paths.mappings, 'not json any more');
    await new Promise((res) => setTimeout(res, 250));
    const sync = await agent.expire();
    expect(sync).toMatchObject({ kind: 'delta', removed: 1 });
    expect(elementsOf(await kernel()).dnat6).toEqual(['fd00::3 -> fdaa::3']);
    expect(agent.nextExpiry).toBeNull();
    expect(lastEvent()).toMatchObject({ event: 'expired', removed: 1, expired: [{ from: 'fd00::1', to: 'fdaa::1', expires: soon }] });
  });

  test('a refusal names the entry by its place in the file, also when expired entries before it were left out', async () => {
    const past = new Date(Date.now() - 1000).toISOString();
    await pushEntries([
      { from: 'fd00::9', to: 'fdaa::9', expires: past },
      { from: 'fd00::1', to: 'fd00::2' },
      { from: 'fd00::2', to: 'fd00::1' },
    ]);
    const agent = await newAgent();
    expect(await agent.pass()).toMatchObject({
      outcome: 'refused',
      message: expect.stringMatching(/^mappings\[1\]: mappings form a cycle/),
    });
  });

  test('an expiry breaks a chain: A->B (expiring) and B->C leave B->C', async () => {
    const soon = new Date(Date.now() + 100).toISOString();
    await writeFile(
      paths.mappings,
      JSON.stringify({
        version: 1,
        generation: 1,
        mappings: [
          { from: 'fd00::1', to: 'fd00::2', expires: soon },
          { from: 'fd00::2', to: 'fdaa::3' },
        ],
      }),
    );
    const agent = await newAgent();
    await agent.pass();
    expect(elementsOf(await kernel()).dnat6).toEqual(['fd00::1 -> fdaa::3', 'fd00::2 -> fdaa::3']);
    await new Promise((res) => setTimeout(res, 150));
    await agent.expire();
    expect(elementsOf(await kernel()).dnat6).toEqual(['fd00::2 -> fdaa::3']);
  });
});

describe('Agent.pass: before the first push', () => {
  test('an absent mapping file is no warning: the VM is waiting, not degraded', async () => {
    const agent = await newAgent();
    expect((await agent.pass()).outcome).toBe('no-file');
    expect(await snapshot()).toMatchObject({ applied: null, warnings: [] });
  });
});

describe('Agent.pass: the mode without a resident agent', () => {
  test('an apply told ADDRMAP_RESIDENT=0 records that no agent is expected', async () => {
    env = { ...env, ADDRMAP_RESIDENT: '0' };
    await push(1, [['fd00::1', 'fdaa::1']]);
    await (await newAgent()).pass();
    expect(await snapshot()).toMatchObject({ pid: null, resident: false });
  });
});
