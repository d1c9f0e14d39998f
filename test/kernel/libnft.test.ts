// The in-process nftables client on a real kernel, beyond what the contract
// test compares with the fake: no nft program needed, another tool's changes
// seen by the long-lived context, large operations off the event loop, a
// clear refusal where libnftables cannot load (the client's, and the agent's),
// and the agent loading the file ADDRMAP_LIBNFTABLES names.
// LibNft runs in a netns worker inside the lab's guest namespace; nft plays
// the other tool and inspects.
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { Chain, NftInfo, Operation, TableListing } from '../../src/kernel/nft/index.js';
import { EMPTY_VIEW, planSync } from '../../src/kernel/plan.js';
import { FULL_RULESET, TABLE } from '../../src/kernel/ruleset.js';
import { ADDR, ADDRMAP, Lab, ROOT, mappingFile, run } from '../support/lab.js';
import { NetnsWorker } from '../support/netns-worker.js';

const WORKER = join(ROOT, 'test/kernel/workers/libnft.ts');

let lab: Lab;
let worker: NetnsWorker | undefined;
beforeEach(async () => {
  lab = await Lab.create({ peer: false });
});
afterEach(async () => {
  await worker?.stop();
  worker = undefined;
  await lab?.destroy();
});

const start = async (env?: NodeJS.ProcessEnv) => (worker = await NetnsWorker.start(lab, lab.guest, WORKER, env ? { env } : {}));

/** The whole table with these IPv6 mappings, as the agent first writes it. */
const fullTable = (v6: Record<string, string>): Operation[] =>
  planSync(EMPTY_VIEW, { v4: new Map(), v6: new Map(Object.entries(v6)), prefixes: [] }, true, FULL_RULESET).tx.operations;

const dnat6 = (l: TableListing | null) =>
  Object.fromEntries((l?.maps.find((m) => m.name === 'dnat6')?.elements ?? []).map((e) => [e.key, e.value]));

async function nft(...args: string[]): Promise<void> {
  const r = await lab.exec(lab.guest, 'nft', args);
  if (r.code !== 0) throw new Error(`nft ${args.join(' ')}: ${r.stderr.trim()}`);
}

describe('LibNft on the kernel', () => {
  test('works with no nft program on PATH: ready, run, list, listChains', async () => {
    const bin = join(lab.dir, 'bin-no-nft');
    await mkdir(bin);
    // ip alone: it starts the worker in the namespace.
    await symlink(execFileSync('bash', ['-c', 'command -v ip']).toString().trim(), join(bin, 'ip'));
    const w = await start({ PATH: bin });
    expect(await w.call('onPath', 'nft')).toBe(false);

    const info = await w.call<NftInfo>('ready', TABLE);
    expect(info.version).toMatch(/^libnftables\.so\.1(\.\d+)*$/);
    await w.call('run', TABLE, fullTable({ 'fd00::1': 'fdaa::1' }));
    expect(dnat6(await w.call<TableListing>('list', TABLE))).toEqual({ 'fd00::1': 'fdaa::1' });
    const chains = await w.call<Chain[]>('listChains', TABLE);
    expect(chains.map((c) => c.name).sort()).toEqual(FULL_RULESET.chains.map((c) => c.name).sort());
  });

  test("one context for the process's life still sees what another tool changed between two calls", async () => {
    const w = await start();
    await w.call('run', TABLE, fullTable({ 'fd00::1': 'fdaa::1' }));
    expect(dnat6(await w.call('list', TABLE))).toEqual({ 'fd00::1': 'fdaa::1' });

    await nft('add', 'element', 'inet', 'addrmap', 'dnat6', '{ fd00::2 : fdaa::2 }');
    expect(dnat6(await w.call('list', TABLE))).toEqual({ 'fd00::1': 'fdaa::1', 'fd00::2': 'fdaa::2' });

    await nft('delete', 'table', 'inet', 'addrmap');
    expect(await w.call('list', TABLE)).toBeNull();
    expect(await w.call('listChains', TABLE)).toEqual([]);

    // A batch is judged against the kernel as it is now, not as last listed.
    await nft('add', 'table', 'inet', 'addrmap');
    await nft('add', 'map', 'inet', 'addrmap', 'dnat6', '{ type ipv6_addr : ipv6_addr; }');
    await nft('add', 'element', 'inet', 'addrmap', 'dnat6', '{ fd00::3 : fdbb::3 }');
    const conflicting: Operation = {
      verb: 'add',
      object: { element: { family: 'inet', table: 'addrmap', name: 'dnat6', key: 'fd00::3', value: 'fdaa::3' } },
    };
    await expect(w.call('run', TABLE, [conflicting])).rejects.toMatchObject({ kind: 'exists' });
    expect(dnat6(await w.call('list', TABLE))).toEqual({ 'fd00::3': 'fdbb::3' });
  });

  test('a 100k-element commit and a 100k-element listing leave the event loop running', async () => {
    const w = await start();
    await w.call('run', TABLE, fullTable({}));
    type Timed = { ticks: number; result: unknown };
    const commit = await w.call<Timed>('addElements', TABLE, 'dnat6', 100_000);
    const listing = await w.call<Timed>('timedList', TABLE);
    // A 10 ms timer fired while libnftables worked: the calls did not hold the loop.
    expect(commit.ticks).toBeGreaterThan(0);
    expect(listing.ticks).toBeGreaterThan(0);
    expect(listing.result).toMatchObject({ dnat6: 100_000 });
    // The context is usable after the memory it held was handed back.
    expect(await w.call('listChains', TABLE)).toHaveLength(FULL_RULESET.chains.length);
    const count = JSON.parse((await lab.exec(lab.guest, 'nft', ['-j', 'list', 'map', 'inet', 'addrmap', 'dnat6'])).stdout);
    expect(count.nftables.find((x: Record<string, unknown>) => 'map' in x).map.elem).toHaveLength(100_000);
    // A listing in a context of its own (the agent's counter samples and
    // status queries) does not hold a commit: the commit, started after it,
    // is done first. In one context it would wait the listing's seconds.
    expect(await w.call('commitDuringListing', TABLE)).toEqual(['commit', 'listing (true)']);
  });

  test('a library that cannot be loaded: an NftError naming it and the package to install', async () => {
    const w = await start();
    await expect(w.call('ready', TABLE, '/nonexistent/libnftables.so.1')).rejects.toMatchObject({
      kind: 'other',
      message: expect.stringMatching(
        /^nftables is not usable: cannot load \/nonexistent\/libnftables\.so\.1 \(.+\); install the libnftables1 package$/,
      ),
    });
  });
});

describe('the agent where libnftables cannot be reached', () => {
  test('without the library: refuses to start with a clear message (cannot_start), and status says why', async () => {
    // The library hidden from the agent alone: a mount namespace of its own,
    // where an empty file stands in for the file a client loads.
    const w = await start();
    await w.call('ready', TABLE);
    const maps = await readFile(`/proc/${w.pid}/maps`, 'utf8');
    const lib = /\s(\/\S*\/libnftables\.so[.\d]*)$/m.exec(maps)![1]!;
    await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
    const hidden = (args: string[]) =>
      run(
        'ip',
        [
          ...['netns', 'exec', lab.guest, 'unshare', '-m', '--propagation', 'private'],
          ...['sh', '-c', 'mount --bind /dev/null "$1" && shift && exec "$@"', 'sh', lib, process.execPath, ADDRMAP, ...args],
        ],
        // The test's own tools (unshare, sh, mount) come from its PATH.
        { env: lab.env({ PATH: process.env.PATH }) },
      );
    const r = await hidden(['apply']);
    expect(r.code).toBe(4); // not retried by init: the library does not appear by itself
    expect(r.stderr).toMatch(/^addrmap: nftables is not usable: cannot load libnftables\.so\.1 \(.+\); install the libnftables1 package$/m);
    expect(r.stdout).toContain('"event":"cannot_start"');
    expect(await lab.ruleset()).toBe('');
    const status = JSON.parse((await lab.addrmap(['status', '--json'])).stdout);
    expect(status).toMatchObject({ startFailure: { command: 'apply', attempts: 1 } });
    expect(status.startFailure.reason).toMatch(/^nftables is not usable: cannot load libnftables\.so\.1/);
  });

  test('without the FFI addon it calls the library through: refuses to start, naming the addon', async () => {
    // The bundle alone in a directory with no node_modules above it, run from there.
    const dir = await mkdtemp(join(tmpdir(), 'addrmap-noffi-'));
    try {
      await copyFile(ADDRMAP, join(dir, 'addrmap.mjs'));
      await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
      const r = await run('ip', ['netns', 'exec', lab.guest, 'env', '-C', dir, process.execPath, join(dir, 'addrmap.mjs'), 'apply'], {
        env: lab.env({ PATH: process.env.PATH }), // for env(1) itself
      });
      expect(r.code).toBe(4);
      expect(r.stderr).toMatch(
        /^addrmap: nftables is not usable: addrmap reaches libnftables through the koffi FFI addon, which cannot load: /m,
      );
      expect(await lab.ruleset()).toBe('');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('ADDRMAP_LIBNFTABLES', () => {
  /** The file the dynamic loader picks for the soname, as a worker that loaded it maps it. */
  async function systemLibrary(): Promise<string> {
    const w = await start();
    await w.call('ready', TABLE);
    return /\s(\/\S*\/libnftables\.so[.\d]*)$/m.exec(await readFile(`/proc/${w.pid}/maps`, 'utf8'))![1]!;
  }

  test('the agent loads the file it names (a package bundling its own libnftables), and no other', async () => {
    const bundled = join(lab.dir, 'usr/lib/addrmap/libnftables.so.1');
    await mkdir(join(lab.dir, 'usr/lib/addrmap'), { recursive: true });
    await copyFile(await systemLibrary(), bundled);
    await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
    const agent = await lab.watch({ ADDRMAP_LIBNFTABLES: bundled });
    try {
      await agent.waitFor((e) => e.event === 'applied' && e.generation === 1);
      const maps = await readFile(`/proc/${agent.child.pid}/maps`, 'utf8');
      expect(new Set(maps.match(/\S*libnftables\S*$/gm))).toEqual(new Set([bundled]));
      expect(await lab.ruleset()).toContain(`${ADDR.stale6} counter packets - bytes - : ${ADDR.new6}`);
    } finally {
      await agent.stop('SIGKILL');
    }
  });

  test('a file that is not libnftables, or a relative path (it would depend on the directory the agent starts in): refused', async () => {
    await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
    const libc = /\s(\/\S*\/libc\.so\.6)$/m.exec(await readFile('/proc/self/maps', 'utf8'))![1]!;
    const other = await lab.addrmap(['apply'], { ADDRMAP_LIBNFTABLES: libc });
    expect(other.code).toBe(4);
    expect(other.stderr).toMatch(
      new RegExp(`^addrmap: nftables is not usable: ${libc} is not libnftables \\(.*nft_ctx_new.*\\); ADDRMAP_LIBNFTABLES names it: `),
    );
    const r = await lab.addrmap(['apply'], { ADDRMAP_LIBNFTABLES: 'libnftables.so.1' });
    expect(r.code).toBe(4);
    expect(r.stderr).toBe('addrmap: nftables is not usable: ADDRMAP_LIBNFTABLES must be an absolute path, not "libnftables.so.1"\n');
    expect(await lab.ruleset()).toBe('');
  });
});
