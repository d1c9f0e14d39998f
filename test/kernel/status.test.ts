// addrmap status, explain, scan and metrics on the real kernel, with real
// counters from real traffic and real flows. Status is read-only: it works as
// an unprivileged user and against a read-only state directory.
import { chmod, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFile } from '../../src/kernel/exec.js';
import { ADDR, ADDRMAP, Lab, mappingFile, type AgentProcess } from '../support/lab.js';

let lab: Lab;
let agent: AgentProcess | null;
let mounts: string[];
beforeEach(async () => {
  lab = await Lab.create();
  await lab.startPeer();
  agent = null;
  mounts = [];
});
afterEach(async () => {
  await agent?.stop('SIGKILL');
  for (const m of mounts) await execFile('umount', ['-l', m]);
  await lab?.destroy();
});

async function status(args: string[] = [], env: NodeJS.ProcessEnv = {}) {
  const r = await lab.addrmap(['status', '--json', ...args], env);
  return { code: r.code, report: JSON.parse(r.stdout), stderr: r.stderr };
}

async function startWithTraffic() {
  await lab.writeConfig({
    usageIntervalSeconds: 1,
    metricsFile: join(lab.dir, 'metrics', 'addrmap.prom'),
    metricsListen: '127.0.0.1:9851',
  });
  await mkdir(join(lab.dir, 'metrics'));
  await lab.push(
    mappingFile(3, [
      [ADDR.stale6, ADDR.new6],
      [ADDR.staleUnrouted6, ADDR.new6],
      [ADDR.stale4, ADDR.new4],
    ]),
  );
  agent = await lab.watch();
  await agent.waitFor((e) => e.event === 'applied' && e.generation === 3);
}

describe('addrmap status', () => {
  it('as root: live per-mapping counters from real traffic, last use, flows with their process, no drift', async () => {
    await startWithTraffic();
    // 100 KiB to one stale address, nothing to another.
    expect(await lab.tcpSend(ADDR.stale6, 100 * 1024)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
    const held = await lab.tcpHold(ADDR.stale4, 30_000);
    await agent!.waitFor((e) => e.event === 'watching'); // (already) — then let a usage sample happen
    await new Promise((r) => setTimeout(r, 2200));

    const { code, report } = await status();
    expect(code).toBe(0);
    expect(report).toMatchObject({
      schema: 1,
      health: 'healthy',
      problems: [],
      enabled: true,
      flagSource: 'environment',
      generation: 3,
      source: 'kernel',
      drift: [],
    });
    expect(report.agent.running).toBe(true);
    const row = (from: string) => report.mappings.find((m: { from: string }) => m.from === from);
    expect(row(ADDR.stale6).packets).toBeGreaterThan(3); // segmentation offload: few, large packets
    expect(row(ADDR.stale6).bytes).toBeGreaterThan(100 * 1024);
    expect(row(ADDR.stale6).lastSeen).not.toBeNull();
    expect(row(ADDR.stale6).inKernel).toBe(true);
    expect(row(ADDR.staleUnrouted6)).toMatchObject({ packets: 0, bytes: 0, lastSeen: null, flows: 0, inKernel: true });
    expect(row(ADDR.stale4).flows).toBe(1);
    expect(report.flows).toContainEqual(
      expect.objectContaining({
        proto: 'tcp',
        src: ADDR.guest4,
        sport: held.localPort,
        dst: ADDR.stale4,
        dport: 7001,
        answeredBy: ADDR.new4,
        translated: true,
        pid: held.pid,
        command: expect.stringMatching(/node .*probe\.mjs tcp-hold 198\.51\.100\.10 7001/),
      }),
    );

    const text = (await lab.addrmap(['status'])).stdout;
    expect(text).toContain('addrmap HEALTHY');
    expect(text).toMatch(
      new RegExp(`${ADDR.stale6.replace(/\./g, '\\.')}\\s+${ADDR.new6}\\s+\\d+\\s+\\d+\\.\\d KiB\\s+\\d+s ago\\s+\\d+\\s+ok`),
    ); // FLOWS: the finished connection may linger in TIME_WAIT
    expect(text).toContain(
      `tcp ${ADDR.guest4}:${held.localPort} -> ${ADDR.stale4}:7001 answered by ${ADDR.new4} ESTABLISHED  pid ${held.pid} (`,
    );
  });

  it('usage history: the program that held a connection to a stale address is remembered after it is gone; a prefix mapping shows the address used inside it', async () => {
    await lab.writeConfig({ usageIntervalSeconds: 1 });
    const inside = 'fdaa:0:18:a7b:7d:f066:b83b:99'; // in the prefix below, no mapping of its own
    await lab.push({
      version: 1,
      generation: 1,
      mappings: [
        { from: ADDR.stale4, to: ADDR.new4 },
        { from: 'fdaa:0:18:a7b:7d::/80', to: 'fdaa:0:18:a7b:c2::/80' },
      ],
    });
    await lab.setPeerAddresses([ADDR.new6, ADDR.new4, 'fdaa:0:18:a7b:c2:f066:b83b:99']);
    agent = await lab.watch();
    await agent.waitFor((e) => e.event === 'applied');
    const held = await lab.tcpHold(ADDR.stale4, 3000);
    const heldInside = await lab.tcpHold(inside, 3000);
    await new Promise((r) => setTimeout(r, 2500)); // samples while the connections are open
    const during = (await status()).report;
    const prefixRow = during.mappings.find((m: { from: string }) => m.from === 'fdaa:0:18:a7b:7d::/80');
    expect(prefixRow.inside).toContainEqual(expect.objectContaining({ address: inside, to: 'fdaa:0:18:a7b:c2:f066:b83b:99', flows: 1 }));
    expect(during.flows).toContainEqual(expect.objectContaining({ dst: inside, prefix: 'fdaa:0:18:a7b:7d::/80', pid: heldInside.pid }));

    // Both programs have exited; the history still names them.
    await new Promise((r) => setTimeout(r, 2000));
    const after = (await status()).report;
    const v4 = after.mappings.find((m: { from: string }) => m.from === ADDR.stale4);
    // (its conntrack entry may linger in TIME_WAIT, but no process holds it any more)
    expect(after.flows.filter((f: { pid?: number }) => f.pid === held.pid)).toEqual([]);
    expect(v4.usedBy).toEqual([
      expect.objectContaining({ command: expect.stringMatching(/probe\.mjs tcp-hold 198\.51\.100\.10 7001/), pid: held.pid }),
    ]);
    const used = after.mappings
      .find((m: { from: string }) => m.from === 'fdaa:0:18:a7b:7d::/80')
      .inside.find((i: { address: string }) => i.address === inside);
    expect(used.usedBy).toEqual([expect.objectContaining({ command: expect.stringContaining(`tcp-hold ${inside}`) })]);
    expect(used.lastSeen).not.toBeNull();
    const text = (await lab.addrmap(['status'])).stdout;
    expect(text).toContain('STILL USED BY');
    expect(text).toMatch(
      new RegExp(
        `  ${ADDR.stale4.replace(/\./g, '\\.')} \\(now ${ADDR.new4.replace(/\./g, '\\.')}\\): .*probe\\.mjs tcp-hold .*\\(pid ${held.pid}, user root\\)`,
      ),
    );
    expect(text).toContain(`  ${inside} (now fdaa:0:18:a7b:c2:f066:b83b:99): `);
  });

  it('hits of an address inside a prefix mapping: each real flow to it counted once by the samples, however long it stays open', async () => {
    await lab.writeConfig({ usageIntervalSeconds: 1 });
    const prefix = 'fdaa:0:18:a7b:7d::/80';
    const inside = 'fdaa:0:18:a7b:7d:f066:b83b:42';
    await lab.push({ version: 1, generation: 1, mappings: [{ from: prefix, to: 'fdaa:0:18:a7b:c2::/80' }] });
    await lab.setPeerAddresses([ADDR.new6, 'fdaa:0:18:a7b:c2:f066:b83b:42']);
    agent = await lab.watch();
    await agent.waitFor((e) => e.event === 'applied');
    // One connection held over several samples, and two short ones (their conntrack entries linger in TIME_WAIT).
    await lab.tcpHold(inside, 4000);
    expect((await lab.tcpSend(inside, 1000)).ok).toBe(true);
    expect((await lab.tcpSend(inside, 1000)).ok).toBe(true);
    const row = async () =>
      (await status()).report.mappings
        .find((m: { from: string }) => m.from === prefix)
        .inside.find((i: { address: string }) => i.address === inside);
    let seen = await row();
    for (let i = 0; i < 40 && seen?.hits !== 3; i++) {
      await new Promise((r) => setTimeout(r, 250));
      seen = await row();
    }
    expect(seen).toMatchObject({ address: inside, to: 'fdaa:0:18:a7b:c2:f066:b83b:42', hits: 3 });
    // Further samples see the same three flows (the held one still open): still 3.
    await new Promise((r) => setTimeout(r, 3000));
    const later = await row();
    expect(later.hits).toBe(3);
    const history = JSON.parse(await readFile(join(lab.paths.stateDir, 'history.json'), 'utf8'));
    expect(history.hits[inside]).toMatchObject({ flows: 3 });
    const text = (await lab.addrmap(['status'])).stdout;
    expect(text).toContain('INSIDE PREFIX MAPPINGS (1 address(es) used');
    expect(text).toMatch(
      new RegExp(`  ${inside}\\s+fdaa:0:18:a7b:c2:f066:b83b:42\\s+${prefix.replace(/\//g, '\\/')}\\s+3\\s+\\d+s ago\\s+\\d+`),
    );
  });

  it("under the systemd unit's capabilities (CAP_NET_ADMIN only) another user's program is named by its socket's owner, its process by root", async () => {
    await startWithTraffic();
    // A program of user nobody holding a connection to a stale address (the peer's holding port).
    const probe = join(import.meta.dirname, '../support/probe.mjs');
    const child = lab.spawnIn(lab.guest, 'setpriv', [
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      process.execPath,
      probe,
      'tcp-hold',
      ADDR.stale4,
      '7001',
      '20000',
    ]);
    const line = await new Promise<string>((resolve) => {
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
    });
    const held = JSON.parse(line) as { ok: boolean; localPort: number };
    expect(held.ok).toBe(true);
    const ours = (flows: { sport?: number; dst: string }[]) => flows.find((f) => f.dst === ADDR.stale4 && f.sport === held.localPort);

    // As the unit runs the agent: root, with CAP_NET_ADMIN alone in its bounding set.
    const sandboxedStatus = (...args: string[]) =>
      lab.exec(lab.guest, 'setpriv', [
        '--bounding-set=-all,+net_admin',
        '--inh-caps=-all',
        process.execPath,
        ADDRMAP,
        'status',
        `--state-dir=${lab.paths.stateDir}`,
        `--config=${lab.paths.config}`,
        ...args,
      ]);
    const sandboxed = await sandboxedStatus('--json');
    expect(sandboxed.stderr).toBe('');
    const limited = JSON.parse(sandboxed.stdout);
    expect(limited.source).toBe('kernel'); // CAP_NET_ADMIN reads the table and conntrack
    const seen = ours(limited.flows);
    expect(seen).toMatchObject({ uid: 65534, user: 'nobody', translated: true });
    expect(seen).not.toHaveProperty('pid');
    expect(seen).not.toHaveProperty('command');
    const text = await sandboxedStatus();
    expect(text.stdout).toContain(`${ADDR.stale4}:7001 answered by ${ADDR.new4} ESTABLISHED  user nobody, process not visible`);

    // With every capability, the process itself.
    const full = (await status()).report;
    expect(ours(full.flows)).toMatchObject({ uid: 65534, user: 'nobody', pid: child.pid, command: expect.stringContaining('tcp-hold') });
  });

  it('without root: live answers from the running agent (query socket), the snapshot once it is down; against a read-only state directory too; nothing written', async () => {
    await startWithTraffic();
    await lab.tcpSend(ADDR.stale6, 10_000);
    await new Promise((r) => setTimeout(r, 2200)); // a usage sample
    await chmod(lab.dir, 0o755); // let "nobody" reach the state directory (it stays root's)

    const ro = join(lab.dir, 'state-ro');
    await mkdir(ro);
    expect((await execFile('mount', ['--bind', lab.paths.stateDir, ro])).code).toBe(0);
    mounts.push(ro);
    expect((await execFile('mount', ['-o', 'remount,bind,ro', ro])).code).toBe(0);

    const before = await listing(lab.paths.stateDir);
    // status as an unprivileged user, in the guest.
    const nobody = (command: string, ...args: string[]) =>
      execFile('ip', [
        'netns',
        'exec',
        lab.guest,
        'setpriv',
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        process.execPath,
        ADDRMAP,
        command,
        ...args,
      ]);
    const statusAsNobody = (...args: string[]) => nobody('status', ...args);
    const asNobody = await statusAsNobody('--json', `--state-dir=${ro}`);
    expect(asNobody.stderr).toBe('');
    expect(asNobody.code).toBe(0);
    // The agent answers: the kernel's live state, as root would see it.
    const live = JSON.parse(asNobody.stdout);
    expect(live).toMatchObject({ health: 'healthy', enabled: true, generation: 3, source: 'kernel', drift: [] });
    expect(Array.isArray(live.flows)).toBe(true);
    const liveRow = live.mappings.find((m: { from: string }) => m.from === ADDR.stale6);
    expect(liveRow.packets).toBeGreaterThan(5);
    expect(liveRow.lastSeen).not.toBeNull();
    expect(liveRow.inKernel).toBe(true);
    expect((await statusAsNobody(`--state-dir=${ro}`)).stdout).toContain('kernel:       matches the applied mappings');
    const explained = await nobody('explain', '--json', `--state-dir=${ro}`, ADDR.stale6);
    expect(JSON.parse(explained.stdout)).toMatchObject({ translated: true, to: ADDR.new6, kernel: ADDR.new6 });

    // As root against the read-only copy: works, and writes nothing.
    const rootRo = await status([`--state-dir=${ro}`]);
    expect(rootRo.code).toBe(0);
    await agent!.stop('SIGKILL'); // so that only status could write from here on

    // No agent answers: the snapshot, and the verdict says the kernel was not read.
    const report = JSON.parse((await statusAsNobody('--json', `--state-dir=${ro}`)).stdout);
    expect(report).toMatchObject({
      health: 'agent-not-running',
      enabled: true,
      generation: 3,
      source: 'snapshot',
      drift: null,
      flows: null,
    });
    const row = report.mappings.find((m: { from: string }) => m.from === ADDR.stale6);
    expect(row.packets).toBeGreaterThan(5);
    expect(row.lastSeen).not.toBeNull();
    expect(row.inKernel).toBeNull();
    const text = await statusAsNobody(`--state-dir=${ro}`);
    expect(text.stdout).toContain('kernel:       not read; run as root');

    const quiet = await listing(lab.paths.stateDir);
    await status();
    await lab.addrmap(['status']);
    expect(await listing(lab.paths.stateDir)).toEqual(quiet);
    expect(Object.keys(before).sort()).toEqual(['agent.sock', 'applied.json', 'history.json', 'query.sock', 'status.json', 'usage.json']);
  });

  it('exit codes: 0 healthy, 1 degraded, 2 usage, 3 agent not running, 4 disabled', async () => {
    await startWithTraffic();
    expect((await status()).code).toBe(0);

    await lab.push(mappingFile(4, [[ADDR.stale6, ADDR.stale6]]));
    await agent!.waitFor((e) => e.event === 'refused');
    const degraded = await status();
    expect(degraded.code).toBe(1);
    expect(degraded.report.problems).toEqual([
      'last push refused: mappings[0]: from and to are the same address (fdaa:0:18:a7b:7d:f066:b83b:2)',
    ]);

    expect((await lab.addrmap(['status', 'extra'])).code).toBe(2);

    await agent!.stop('SIGKILL');
    const down = await status();
    expect(down.code).toBe(3);
    expect(down.report.health).toBe('agent-not-running');

    // Drift while the agent is down is reported too.
    await lab.exec(lab.guest, 'nft', ['delete', 'element', 'inet', 'addrmap', 'dnat6', `{ ${ADDR.stale6} }`]);
    expect((await status()).report.drift).toEqual([`${ADDR.stale6} -> ${ADDR.new6} is missing from the kernel`]);

    expect((await lab.addrmap(['apply'], { ADDRMAP_ENABLED: '0' })).code).toBe(0);
    const off = await status([], { ADDRMAP_ENABLED: '0' });
    expect(off.code).toBe(4);
    expect(off.report).toMatchObject({ health: 'disabled', enabled: false, drift: [] });
  });

  it('exit codes: 0 waiting for the first push (not degraded), 5 no state in the directory asked', async () => {
    agent = await lab.watch();
    const waiting = await status();
    expect(waiting.code).toBe(0);
    expect(waiting.report).toMatchObject({ health: 'waiting', problems: [], generation: null, source: 'kernel' });
    expect((await lab.addrmap(['status'])).stdout.split('\n')[0]).toBe(
      'addrmap WAITING FOR THE FIRST PUSH: the bridge is on; no mapping file has been applied yet',
    );

    const elsewhere = join(lab.dir, 'no-agent-here');
    const none = await status([`--state-dir=${elsewhere}`]);
    expect(none.code).toBe(5);
    expect(none.report).toMatchObject({ health: 'no-state', enabled: true, flagSource: 'environment' });
    expect(none.report.problems[0]).toContain(
      `no addrmap agent has run with state directory ${elsewhere} (the flag reads on (from the environment))`,
    );
  });
});

describe('addrmap explain, scan and metrics', () => {
  it('explain: any textual form, the chain, the kernel; exit 0 translated, 1 not', async () => {
    await lab.push(
      mappingFile(2, [
        [ADDR.stale6, ADDR.new6],
        [ADDR.new6, ADDR.newer6],
      ]),
    );
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    const e = await lab.addrmap(['explain', `[${ADDR.stale6.toUpperCase()}]:5432`]);
    expect(e.code).toBe(0);
    expect(e.stdout).toContain(`${ADDR.stale6} is translated to ${ADDR.newer6} (generation 2`);
    expect(e.stdout).toContain(`The mapping file chains ${ADDR.stale6} -> ${ADDR.new6} -> ${ADDR.newer6}`);
    expect(e.stdout).toContain(`The kernel agrees: map dnat6 sends ${ADDR.stale6} to ${ADDR.newer6}.`);
    const target = await lab.addrmap(['explain', ADDR.newer6]);
    expect(target.code).toBe(1);
    expect(target.stdout).toContain(`is the current address behind: ${ADDR.stale6}, ${ADDR.new6}`);
    expect((await lab.addrmap(['explain', 'not-an-address'])).code).toBe(2);
    const json = JSON.parse((await lab.addrmap(['explain', '--json', ADDR.stale6])).stdout);
    expect(json).toMatchObject({ address: ADDR.stale6, translated: true, to: ADDR.newer6, kernel: ADDR.newer6 });
    // An application on a dual-stack socket writes the IPv4 address mapped; it leaves as IPv4.
    await lab.push(mappingFile(3, [[ADDR.stale4, ADDR.new4]]));
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    const mapped = await lab.addrmap(['explain', `::ffff:${ADDR.stale4}`]);
    expect(mapped.code).toBe(0);
    expect(mapped.stdout).toContain(`${ADDR.stale4} is translated to ${ADDR.new4}`);
    expect(mapped.stdout).toContain(`The kernel agrees: map dnat4 sends ${ADDR.stale4} to ${ADDR.new4}.`);
    expect((await lab.tcp(`::ffff:${ADDR.stale4}`)).ok).toBe(true);
  });

  it('scan: every textual form of a stale address with file, line and column; exit 1 when found, 0 when clean', async () => {
    await lab.push(
      mappingFile(1, [
        [ADDR.stale6, ADDR.new6],
        [ADDR.stale4, ADDR.new4],
      ]),
    );
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    const etc = join(lab.dir, 'etc');
    await mkdir(join(etc, 'app'), { recursive: true });
    await writeFile(
      join(etc, 'app', 'replication.conf'),
      [
        '# peers',
        `primary_conninfo = 'host=${ADDR.stale6} port=5432'`,
        'peer = [FDAA:0000:0018:0A7B:007D:F066:B83B:0002]:5432',
        `legacy = ${ADDR.stale4}:6379`,
        `fine = ${ADDR.new6}`,
      ].join('\n'),
    );
    await writeFile(join(etc, 'clean.conf'), `server = ${ADDR.new6}\n`);
    const r = await lab.addrmap(['scan', etc]);
    expect(r.code).toBe(1);
    const lines = r.stdout.trim().split('\n');
    const file = join(etc, 'app', 'replication.conf');
    expect(lines).toEqual([
      `${file}:2:26: ${ADDR.stale6} is stale, now ${ADDR.new6}: primary_conninfo = 'host=${ADDR.stale6} port=5432'`,
      `${file}:3:8: [FDAA:0000:0018:0A7B:007D:F066:B83B:0002]:5432 is stale, now ${ADDR.new6}: peer = [FDAA:0000:0018:0A7B:007D:F066:B83B:0002]:5432`,
      `${file}:4:10: ${ADDR.stale4}:6379 is stale, now ${ADDR.new4}: legacy = ${ADDR.stale4}:6379`,
    ]);
    expect(r.stderr).toContain('3 occurrence(s) of 2 stale address(es) in 1 of 2 file(s) read (');
    expect((await lab.addrmap(['scan', join(etc, 'clean.conf')])).code).toBe(0);
    expect((await lab.addrmap(['scan'])).code).toBe(2);

    // A file name and a line carrying terminal escapes show them as text.
    const evil = join(etc, 'evil\u001b]0;owned\u0007.conf');
    await writeFile(evil, `peer = ${ADDR.stale6} \u001b[2J\u009b31m\u202e\n`);
    const e = await lab.addrmap(['scan', evil]);
    expect(e.code).toBe(1);
    expect(e.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
    expect(e.stdout).toContain(
      `evil\\x1b]0;owned\\x07.conf:1:8: ${ADDR.stale6} is stale, now ${ADDR.new6}: peer = ${ADDR.stale6} \\x1b[2J\\x9b31m\\u202e`,
    );
    const j = await lab.addrmap(['scan', '--json', evil]);
    expect(j.stdout).not.toMatch(/[\u007f-\u009f\u202e]/);
    expect(JSON.parse(j.stdout).occurrences[0].lineText).toContain('\u001b[2J\u009b31m\u202e');
  });

  it("scan against a running agent's state: an address inside a prefix mapping and a ::ffff: spelling are found; --diff (and --names) applies with patch -p1; a missing path is a usage error", async () => {
    const prefix = 'fdaa:0:18:a7b:7d::/80';
    const inside = 'fdaa:0:18:a7b:7d:f066:b83b:42';
    const insideNew = 'fdaa:0:18:a7b:c2:f066:b83b:42';
    await lab.push({
      version: 1,
      generation: 4,
      mappings: [
        { from: ADDR.stale4, to: ADDR.new4 },
        { from: prefix, to: 'fdaa:0:18:a7b:c2::/80' },
      ],
    });
    agent = await lab.watch();
    await agent.waitFor((e) => e.event === 'applied' && e.generation === 4);
    const lines = [`upstream = [${inside}]:8080`, `cache = ::ffff:${ADDR.stale4}`, `fine = ${ADDR.new4}`, ''];
    const tree = async (name: string) => {
      const dir = join(lab.dir, name, 'app');
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'app.conf'), lines.join('\n'));
      return join(dir, 'app.conf');
    };
    const file = await tree('etc');
    const r = await lab.addrmap(['scan', join(lab.dir, 'etc')]);
    expect(r.code).toBe(1);
    expect(r.stdout.trim().split('\n')).toEqual([
      `${file}:1:12: [${inside}]:8080 is stale (inside ${prefix}), now ${insideNew}: ${lines[0]}`,
      `${file}:2:9: ::ffff:${ADDR.stale4} is stale, now ${ADDR.new4}: ${lines[1]}`,
    ]);
    expect(r.stderr).toContain('2 occurrence(s) of 2 stale address(es) in 1 of 1 file(s) read (2 mapping(s) searched)');

    // --diff writes nothing; the diff applies with patch -p1 from / (absolute paths) and leaves the file clean.
    const diff = await lab.addrmap(['scan', '--diff', join(lab.dir, 'etc')]);
    expect(diff.code).toBe(1);
    expect(await readFile(file, 'utf8')).toBe(lines.join('\n'));
    const patchFile = join(lab.dir, 'rewrite.patch');
    await writeFile(patchFile, diff.stdout);
    const applied = await execFile('patch', ['-p1', '-d', '/', '-i', patchFile]);
    expect(applied).toMatchObject({ code: 0, stderr: '' });
    expect(await readFile(file, 'utf8')).toBe(
      [`upstream = [${insideNew}]:8080`, `cache = ::ffff:${ADDR.new4}`, `fine = ${ADDR.new4}`, ''].join('\n'),
    );
    expect((await lab.addrmap(['scan', join(lab.dir, 'etc')])).code).toBe(0);

    // --names: host names instead of the targets, brackets dropped with the address.
    const named = await tree('etc2');
    const names = join(lab.dir, 'names.json');
    await writeFile(names, JSON.stringify({ [insideNew]: 'api.internal', [ADDR.new4]: 'cache.internal' }));
    const byName = await lab.addrmap(['scan', '--diff', '--names', names, join(lab.dir, 'etc2')]);
    expect(byName.code).toBe(1);
    await writeFile(patchFile, byName.stdout);
    expect(await execFile('patch', ['-p1', '-d', '/', '-i', patchFile])).toMatchObject({ code: 0, stderr: '' });
    expect(await readFile(named, 'utf8')).toBe(
      ['upstream = api.internal:8080', 'cache = cache.internal', `fine = ${ADDR.new4}`, ''].join('\n'),
    );

    // A path that does not exist is a usage error, not "all clean".
    const missing = await lab.addrmap(['scan', join(lab.dir, 'etc'), join(lab.dir, 'nowhere')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`scan: ${join(lab.dir, 'nowhere')} does not exist`);
    expect(missing.stdout).toBe('');
  });

  it('metrics: the textfile and the local port carry every series, with real hits', async () => {
    await startWithTraffic();
    await lab.tcpSend(ADDR.stale6, 5000);
    await lab.push('{"version":1,"generation":9,"mappings":[{"from":"x"}]}');
    await agent!.waitFor((e) => e.event === 'refused');
    await new Promise((r) => setTimeout(r, 2200));
    const file = await readFile(join(lab.dir, 'metrics', 'addrmap.prom'), 'utf8');
    const served = await lab.exec(lab.guest, process.execPath, [
      '-e',
      "fetch('http://127.0.0.1:9851/metrics').then(r => r.text()).then(t => process.stdout.write(t))",
    ]);
    for (const text of [file, served.stdout]) {
      expect(text).toContain('addrmap_enabled 1');
      expect(text).toContain('addrmap_mappings 3');
      expect(text).toContain('addrmap_applied_generation 3');
      expect(text).toContain('addrmap_refused_pushes_total 1');
      expect(text).toContain('addrmap_sync_failures_total 0');
      expect(text).toContain('addrmap_drift_repairs_total 0');
      expect(text).toMatch(/addrmap_sync_duration_seconds_count [1-9]/);
      expect(text).toMatch(new RegExp(`addrmap_mapping_bytes_total\\{from="${ADDR.stale6}",to="${ADDR.new6}"\\} [1-9]\\d{3,}`));
    }
  });

  it('logs one event per apply or refusal with generation, counts, duration and reason', async () => {
    await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
    agent = await lab.watch();
    const applied = await agent.waitFor((e) => e.event === 'applied');
    expect(applied).toMatchObject({
      level: 30,
      name: 'addrmap',
      generation: 1,
      mappings: 1,
      kind: 'full',
      added: 1,
      removed: 0,
      retargeted: 0,
      routesAdded: 0,
    });
    expect(typeof applied.durationMs).toBe('number');
    expect(typeof applied.time).toBe('string');
    await lab.push(mappingFile(2, [[ADDR.stale6, 'fdaa::zz']]));
    const refused = await agent.waitFor((e) => e.event === 'refused');
    expect(refused).toMatchObject({ level: 50, generation: 2, entry: 'mappings[0]', file: lab.paths.mappings });
    expect(refused.reason).toBe('to: not a valid IPv6 address');
    expect(typeof refused.durationMs).toBe('number');
  });
});

async function listing(dir: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const f of await readdir(dir)) out[f] = (await stat(join(dir, f))).mtimeMs;
  return out;
}
