import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { ConntrackTool, parseConntrackList, type StaleTarget } from '../../../src/kernel/conntrack.js';
import { ConntrackCleanup, type CleanupOutcome } from '../../../src/kernel/conntrack-cleanup.js';
import { tempDir } from '../fakes.js';

// `conntrack -L -f ipv6` lines as printed by conntrack-tools.
const UDP_UNREPLIED =
  'udp      17 29 src=fd00:1::1 dst=fdbb::1 sport=40000 dport=7001 [UNREPLIED] src=fdbb::1 dst=fd00:1::1 sport=7001 dport=40000 mark=0 use=1';
const TCP_TRANSLATED =
  'tcp      6 431999 ESTABLISHED src=fd00:1::1 dst=fdbb::1 sport=41000 dport=7000 src=fdaa:0:18:a7b:c2::2 dst=fd00:1::1 sport=7000 dport=41000 [ASSURED] mark=0 use=1';

describe('parseConntrackList', () => {
  test('all fields of a translated TCP flow', () => {
    expect(parseConntrackList(TCP_TRANSLATED, 6)).toEqual([
      {
        family: 6,
        proto: 'tcp',
        state: 'ESTABLISHED',
        origSrc: 'fd00:1::1',
        origDst: 'fdbb::1',
        sport: 41000,
        dport: 7000,
        replySrc: 'fdaa:0:18:a7b:c2::2',
      },
    ]);
  });

  test('an unreplied UDP flow: original destination and reply source are the stale address', () => {
    expect(parseConntrackList(UDP_UNREPLIED, 6)).toMatchObject([{ origDst: 'fdbb::1', replySrc: 'fdbb::1' }]);
  });

  test('a translated TCP flow: the reply comes from the target', () => {
    expect(parseConntrackList(TCP_TRANSLATED, 6)).toMatchObject([{ origDst: 'fdbb::1', replySrc: 'fdaa:0:18:a7b:c2::2' }]);
  });

  test('several lines, with blank lines and a trailing newline', () => {
    expect(parseConntrackList(`${UDP_UNREPLIED}\n\n${TCP_TRANSLATED}\n`, 6)).toMatchObject([
      { origDst: 'fdbb::1', replySrc: 'fdbb::1' },
      { origDst: 'fdbb::1', replySrc: 'fdaa:0:18:a7b:c2::2' },
    ]);
  });

  test('addresses are normalised to canonical form', () => {
    const line =
      'udp 17 29 src=FD00:1:0:0:0:0:0:1 dst=FDBB:0000::0001 sport=1 dport=2 src=FDAA::0002 dst=fd00:1::1 sport=2 dport=1 mark=0 use=1';
    expect(parseConntrackList(line, 6)).toMatchObject([{ origDst: 'fdbb::1', replySrc: 'fdaa::2' }]);
  });

  test('IPv4 lines', () => {
    const line =
      'tcp      6 117 SYN_SENT src=10.0.0.5 dst=10.1.0.9 sport=50000 dport=5432 [UNREPLIED] src=10.1.0.9 dst=10.0.0.5 sport=5432 dport=50000 mark=0 use=1';
    expect(parseConntrackList(line, 4)).toMatchObject([{ origDst: '10.1.0.9', replySrc: '10.1.0.9' }]);
  });

  test('ICMP lines (type/code/id instead of ports)', () => {
    const line =
      'icmpv6   58 29 src=fd00:1::1 dst=fdbb::1 type=128 code=0 id=7 src=fdbb::1 dst=fd00:1::1 type=129 code=0 id=7 mark=0 use=1';
    expect(parseConntrackList(line, 6)).toMatchObject([{ origDst: 'fdbb::1', replySrc: 'fdbb::1' }]);
  });

  test('lines without both directions, and summary lines, are skipped', () => {
    const text = [
      'conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.',
      'udp 17 29 src=fd00:1::1 dst=fdbb::1 sport=1 dport=2',
      '',
    ].join('\n');
    expect(parseConntrackList(text, 6)).toMatchObject([]);
  });

  test('an empty listing has no flows', () => {
    expect(parseConntrackList('', 6)).toMatchObject([]);
  });
});

describe('ConntrackCleanup over the conntrack tool (with a stand-in conntrack binary)', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let bin: string;
  let log: string;

  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
    bin = join(dir, 'conntrack');
    log = join(dir, 'calls.log');
    // -L prints the listing stored for the family; -D logs its arguments and
    // reports one deleted entry on stderr, as conntrack does.
    await writeFile(
      bin,
      `#!/bin/sh
echo "$*" >> "${log}"
if [ "$1" = "-L" ]; then cat "${dir}/list-$3" 2>/dev/null; exit 0; fi
if [ "$1" = "-D" ]; then echo "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been deleted." >&2; exit 0; fi
exit 1
`,
    );
    await chmod(bin, 0o755);
  });
  afterEach(async () => {
    await cleanup();
  });

  const calls = async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean);
  const clean = async (targets: StaleTarget[], binary = bin) => {
    const outcomes: CleanupOutcome[] = [];
    const c = new ConntrackCleanup(
      () => new ConntrackTool(binary),
      (o) => outcomes.push(o),
    );
    c.request(targets);
    await c.settled();
    return outcomes;
  };

  test('no targets: nothing runs', async () => {
    expect(await clean([])).toEqual([]);
    expect(await calls()).toEqual([]);
  });

  test('deletes flows to the stale address whose reply does not come from the target, and only those', async () => {
    await writeFile(
      join(dir, 'list-ipv6'),
      [
        UDP_UNREPLIED, // to fdbb::1, never translated: stale
        TCP_TRANSLATED, // to fdbb::1, reply from the old target fdaa:0:18:a7b:c2::2: stale after a retarget
        'tcp 6 300 ESTABLISHED src=fd00:1::1 dst=fdbb::1 sport=42000 dport=7000 src=fdcc::2 dst=fd00:1::1 sport=7000 dport=42000 [ASSURED] mark=0 use=1', // already to the new target
        'udp 17 29 src=fd00:1::1 dst=fd00:9::9 sport=1 dport=2 src=fd00:9::9 dst=fd00:1::1 sport=2 dport=1 mark=0 use=1', // not a stale address
      ].join('\n') + '\n',
    );
    expect(await clean([{ family: 6, from: 'fdbb::1', to: 'fdcc::2' }])).toMatchObject([{ targets: 1, removed: 2 }]);
    expect(await calls()).toEqual([
      '-L -f ipv6',
      '-D -f ipv6 --orig-dst fdbb::1 --reply-src fdbb::1',
      '-D -f ipv6 --orig-dst fdbb::1 --reply-src fdaa:0:18:a7b:c2::2',
    ]);
  });

  test('lists each family once and only for families with targets', async () => {
    await writeFile(
      join(dir, 'list-ipv4'),
      'udp 17 29 src=10.0.0.5 dst=10.1.0.9 sport=1 dport=2 src=10.1.0.9 dst=10.0.0.5 sport=2 dport=1 mark=0 use=1\n',
    );
    const r = await clean([
      { family: 4, from: '10.1.0.9', to: '10.2.0.9' },
      { family: 4, from: '10.1.0.10', to: '10.2.0.10' },
    ]);
    expect(r).toMatchObject([{ targets: 2, removed: 1 }]);
    expect(await calls()).toEqual(['-L -f ipv4', '-D -f ipv4 --orig-dst 10.1.0.9 --reply-src 10.1.0.9']);
  });

  test('requests during a cleanup are merged into one more round, the newest target winning', async () => {
    const outcomes: CleanupOutcome[] = [];
    const c = new ConntrackCleanup(
      () => new ConntrackTool(bin),
      (o) => outcomes.push(o),
    );
    c.request([{ family: 6, from: 'fdbb::1', to: 'fdcc::2' }]);
    c.request([{ family: 6, from: 'fdbb::2', to: 'fdcc::3' }]);
    c.request([{ family: 6, from: 'fdbb::2', to: 'fdcc::4' }]);
    await c.settled();
    expect(outcomes.map((o) => o.targets)).toEqual([1, 1]);
    expect((await calls()).filter((l) => l.startsWith('-L'))).toHaveLength(2);
  });

  test('without ctnetlink and without the tool: a warning naming both, not an error', async () => {
    const r = await clean([{ family: 6, from: 'fdbb::1', to: 'fdcc::2' }], join(dir, 'no-such-conntrack'));
    expect(r).toMatchObject([
      { removed: 0, warning: 'conntrack cleanup incomplete: neither ctnetlink nor the conntrack tool is available' },
    ]);
  });

  test('a failing listing is a warning', async () => {
    await writeFile(bin, '#!/bin/sh\necho "conntrack: Operation not permitted" >&2\nexit 1\n');
    expect(await clean([{ family: 6, from: 'fdbb::1', to: 'fdcc::2' }])).toMatchObject([
      { removed: 0, warning: 'conntrack cleanup incomplete: conntrack -L failed: conntrack: Operation not permitted' },
    ]);
  });
});

describe('ConntrackCleanup rounds', () => {
  /** A table with nothing to delete that records each sweep's family. */
  const table = (sweeps: number[]) => ({
    via: 'test',
    list: async () => [],
    sweep: async (family: 4 | 6) => {
      sweeps.push(family);
      return 0;
    },
  });

  test('a request arriving as the last round ends (before the queue is seen empty twice) still gets its round', async () => {
    const sweeps: number[] = [];
    const outcomes: CleanupOutcome[] = [];
    let asked = false;
    const c: ConntrackCleanup = new ConntrackCleanup(
      () => table(sweeps),
      (o) => {
        outcomes.push(o);
        // Queued now, run after the round's loop has found the queue empty.
        if (!asked) queueMicrotask(() => c.request([{ family: 4, from: '10.0.0.1', to: '10.0.0.2' }]));
        asked = true;
      },
    );
    c.request([{ family: 6, from: 'fdbb::1', to: 'fdcc::2' }]);
    await c.settled();
    await new Promise((r) => setTimeout(r, 10));
    await c.settled();
    expect(sweeps).toEqual([6, 4]);
    expect(outcomes).toHaveLength(2);
  });
});
