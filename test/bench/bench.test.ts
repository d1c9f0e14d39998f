// Keeps the benchmark suite from rotting: runs it in quick mode and checks
// that every figure is in the results file beside its baseline. No timing
// thresholds: the numbers of a quick run on a busy CI machine mean nothing;
// `npm run bench` measures (see test/bench/results/).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const root = process.getuid?.() === 0;

interface Figure {
  id: string;
  section: string;
  name: string;
  unit: string;
  value: number | null;
  baseline: number | null;
  baselineName: string;
  ratio: number | null;
  target?: { ratioMax?: number; ratioMin?: number; valueMax?: number };
  met: boolean | null;
  skipped?: string;
  ratioKind?: 'paired';
}

/** Every figure quick mode must produce (sizes are quick mode's: push 10 and 1000, full apply 10k, memory 0 and 10k, idle 10k). */
const EXPECTED = [
  'push.p50.10',
  'push.p99.10',
  'push.p50.1000',
  'push.p99.1000',
  'scale.one_change.1000',
  'scale.full_apply.10000',
  'cold.node.1000',
  'cold.sea.1000',
  ...['rss', 'rss_anon', 'pss'].flatMap((m) => [`memory.${m}.0`, `memory.${m}.10000`]),
  'idle.cpu.10000',
  'idle.children.10000',
  'idle.wakeups.10000',
  ...['tput', 'crr', 'udp'].flatMap((m) =>
    ['vs_direct', 'vs_socat', 'loaded_direct', 'conntrack_only', 'dnat_nocount'].map((b) => `data.${m}.${b}`),
  ),
  'conntrack.push',
  'conntrack.push_during_cleanup',
  'conntrack.cleanup',
  'conntrack.removed',
];

let dir: string | undefined;
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('benchmark suite, quick mode', () => {
  it('measures every figure beside its baseline and records both', async () => {
    // Like the kernel tests, this needs root; CI runs as root, so it is never skipped.
    expect(root, 'the benchmark suite needs root (network namespaces, nftables)').toBe(true);
    dir = await mkdtemp(join(tmpdir(), 'addrmap-bench-test-'));
    const out = join(dir, 'quick.json');
    // npm test builds dist/ first; rebuilding it here could race other test files.
    const child = spawn(process.execPath, [join(ROOT, 'test/bench/run.mjs'), '--quick', '--no-build', '--out', out], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => child.kill('SIGTERM'), 280_000);
    const code = await new Promise<number | null>((r) => child.on('close', r));
    clearTimeout(timer);
    expect(code, output.slice(-4000)).toBe(0);

    const result = JSON.parse(await readFile(out, 'utf8')) as {
      mode: string;
      figures: Figure[];
      machine: Record<string, unknown>;
      details: Record<string, unknown>;
    };
    expect(result.mode).toBe('quick');
    expect(result.machine.kernel).toBeTruthy();
    const byId = new Map(result.figures.map((f) => [f.id, f]));
    expect([...byId.keys()].sort()).toEqual([...EXPECTED].sort());
    for (const id of EXPECTED) {
      const f = byId.get(id)!;
      expect(f.baselineName, id).toBeTruthy();
      expect(f.unit, id).toBeTruthy();
      expect(Number.isFinite(f.baseline), `${id} baseline`).toBe(true);
      // The standalone executable exists only after `npm run package`; without it the figure says so.
      if (id === 'cold.sea.1000' && !existsSync(join(ROOT, 'out/addrmap'))) {
        expect(f.skipped).toMatch(/not built/);
        continue;
      }
      expect(Number.isFinite(f.value), `${id} value`).toBe(true);
      if (f.ratioKind === 'paired') expect(Number.isFinite(f.ratio), `${id} ratio`).toBe(true);
      // A baseline of 0 (an idle node's CPU over a short window, its children) has no ratio.
      else if (f.baseline === 0) expect(f.ratio, id).toBeNull();
      else expect(f.ratio, id).toBeCloseTo(f.value! / f.baseline!, 2);
      if (f.target) expect(typeof f.met, id).toBe('boolean');
    }
    expect(output).toMatch(/push to reachable, p50, 10 mappings/);
    // The agent starts no process (no nft monitor, no nft, ip or conntrack runs): not while idle, not in the memory runs.
    expect(byId.get('idle.children.10000')!.value).toBe(0);
    const memory = result.details.memory as Record<string, { childrenMax?: number }>;
    for (const size of ['0', '10000']) expect(memory[size]!.childrenMax, `memory ${size}`).toBe(0);
    expect(existsSync(out.replace(/\.json$/, '.md'))).toBe(true);
  }, 300_000);
});
