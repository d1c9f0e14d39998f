#!/usr/bin/env node
// addrmap's benchmark suite: every figure measured in the same run as its
// baseline, repeated and interleaved, reported as a median (and p99 where
// asked) and as a ratio to the baseline. Runs as root on Linux, in throwaway
// network namespaces; all traffic stays inside them.
//
//   npm run bench                     the full suite (about 20 minutes on 2 cores)
//   npm run bench -- --quick          small sizes, few repetitions (under 2 minutes)
//   npm run bench -- --only push,memory --out /tmp/r.json
//
// Sections: push (push to reachable), scale (full apply, one-mapping change),
// cold (cold start), memory (idle RSS, RssAnon, PSS), idle (idle CPU and
// wakeups), data (data plane), conntrack (a push over a full conntrack
// table), guest (a small VM).
// Prints a table; writes JSON (default test/bench/results/latest.json, or
// quick.json for --quick) and a Markdown table beside it.
import { parseArgs } from 'node:util';
import { cpus, totalmem, loadavg, hostname } from 'node:os';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, writeFile, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { spawn } from 'node:child_process';
import {
  ADDR,
  ADDRMAP,
  BENCH,
  IP,
  NODE,
  ROOT,
  SEA,
  Driver,
  LineProc,
  baseEntries,
  baseMapping,
  createLab,
  cleanupAll,
  descendants,
  installCleanup,
  mappingText,
  median,
  must,
  nowMs,
  probeAddress,
  pushFile,
  quantile,
  readCpu,
  readPss,
  readStatus,
  removeStaleNamespaces,
  round,
  run,
  scratchDir,
  shuffle,
  sleep,
  stage,
  startAgent,
  startBaseline,
  waitQuiet,
} from './lib.mjs';

// Every figure is for the runtime the project pins (the devDependency `node`),
// whatever `node` started this script.
{
  const pinned = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).devDependencies?.node;
  const pinnedBin = join(ROOT, 'node_modules/.bin/node');
  if (pinned && process.version !== `v${pinned}`) {
    if (process.env.ADDRMAP_BENCH_REEXEC || !existsSync(pinnedBin)) {
      process.stderr.write(`bench: needs the pinned Node ${pinned} (node_modules/.bin/node; run npm ci), not ${process.version}\n`);
      process.exit(1);
    }
    const child = spawn(pinnedBin, [process.argv[1], ...process.argv.slice(2)], {
      stdio: 'inherit',
      env: { ...process.env, ADDRMAP_BENCH_REEXEC: '1' },
    });
    for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
    child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
    await new Promise(() => {});
  }
}

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
    only: { type: 'string' },
    'no-setup': { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
    set: { type: 'string', multiple: true, default: [] },
    modes: { type: 'string' },
  },
});
const QUICK = opts.quick;

const CONFIG = QUICK
  ? {
      mode: 'quick',
      push: { sizes: [10, 1000], trials: { 10: 8, 1000: 8 } },
      scale: { fullApplySize: 10000, fullApplyReps: 2 },
      cold: { mappings: 1000, reps: 3 },
      memory: { sizes: [0, 10000], reps: 1, idleSeconds: 6 },
      idle: { size: 10000, seconds: 10, diagnostics: false },
      data: { reps: 1, seconds: 1, concurrency: 4, mappings: 100, metrics: ['tput', 'crr', 'udp'] },
      conntrack: { stale: 2000, perAddress: 50, reps: 1 },
    }
  : {
      mode: 'full',
      push: { sizes: [10, 1000, 10000, 100000], trials: { 10: 60, 1000: 60, 10000: 60, 100000: 20 } },
      scale: { fullApplySize: 100000, fullApplyReps: 5 },
      cold: { mappings: 1000, reps: 15 },
      // 40 s: past the first usage sample (every 30 s), which lists the whole table.
      memory: { sizes: [0, 10000, 100000], reps: 3, idleSeconds: 40 },
      // 10 minutes idle (20 usage samples); beside it, diagnostics that separate the agent's timers.
      idle: { size: 10000, seconds: 600, diagnostics: true },
      data: { reps: 7, seconds: 3, concurrency: 4, mappings: 1000, metrics: ['tput', 'crr', 'udp'] },
      conntrack: { stale: 2000, perAddress: 50, reps: 3 },
    };

// --set data.reps=9 --set push.sizes=[10,1000]: override any setting (values are JSON).
for (const kv of opts.set) {
  const [path, value] = kv.split('=');
  const keys = path.split('.');
  let o = CONFIG;
  for (const k of keys.slice(0, -1)) o = o[k];
  o[keys.at(-1)] = JSON.parse(value);
}

const SECTIONS = ['push', 'scale', 'cold', 'memory', 'idle', 'data', 'conntrack', 'guest'];
// The guest section boots a VM under software emulation (minutes): full runs
// only, unless asked for (CI runs the same VM in the kernel matrix).
const only = opts.only ? opts.only.split(',').map((s) => s.trim()) : QUICK ? SECTIONS.filter((s) => s !== 'guest') : SECTIONS;
for (const s of only) if (!SECTIONS.includes(s)) throw new Error(`unknown section ${s}; sections: ${SECTIONS.join(', ')}`);
const OUT = opts.out ?? join(BENCH, 'results', QUICK ? 'quick.json' : 'latest.json');

const PORT = 7000; // push probes
const log = (msg) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ---- results --------------------------------------------------------------------

const figures = [];
const details = {};

/**
 * One figure beside its baseline. ratio = value / baseline. target: ratioMax
 * (lower is better), ratioMin (higher is better), valueMax (an absolute bound).
 */
function figure(f) {
  // digits: figures far below 1 in their unit (idle CPU in % of a core) keep
  // more decimals; their ratio is that of the recorded, rounded values.
  const digits = f.digits ?? 3;
  delete f.digits;
  if (digits !== 3) f = { ...f, value: round(f.value, digits), baseline: round(f.baseline, digits) };
  const ofMedians = Number.isFinite(f.value) && Number.isFinite(f.baseline) && f.baseline !== 0 ? f.value / f.baseline : null;
  // Paired: the median of per-repetition ratios, each repetition measuring
  // both sides back to back, which cancels slow drifts of the machine's load.
  const ratio = f.paired ? (Number.isFinite(f.paired) ? f.paired : null) : ofMedians;
  if (f.paired) f = { ...f, ratioKind: 'paired', ratioOfMedians: round(ofMedians, 3) };
  delete f.paired;
  let met = null;
  if (f.target) {
    // An absolute bound alone needs no ratio (a baseline of 0 has none).
    met = f.target.ratioMax === undefined && f.target.ratioMin === undefined ? true : ratio !== null;
    if (f.target.ratioMax !== undefined) met &&= ratio <= f.target.ratioMax;
    if (f.target.ratioMin !== undefined) met &&= ratio >= f.target.ratioMin;
    if (f.target.valueMax !== undefined) met &&= Number.isFinite(f.value) && f.value <= f.target.valueMax;
  }
  const out = { ...f, value: round(f.value, digits), baseline: round(f.baseline, digits), ratio: round(ratio, 3), met };
  figures.push(out);
  log(
    `${f.id}: ${fmt(out.value, f.unit)} vs ${f.baselineName} ${fmt(out.baseline, f.unit)} (${out.ratio ?? '-'}x)${met === null ? '' : met ? ' target met' : ' TARGET MISSED'}`,
  );
  return out;
}

const summary = (xs) => ({
  n: xs.length,
  p50: round(median(xs), 3),
  p99: round(quantile(xs, 0.99), 3),
  min: round(Math.min(...xs), 3),
  max: round(Math.max(...xs), 3),
});

function fmt(v, unit) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '-';
  // Small figures (idle CPU in % of a core) keep two significant digits.
  if (v !== 0 && Math.abs(v) < 0.1) return `${v.toPrecision(2)} ${unit}`;
  const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return `${v.toFixed(digits)} ${unit}`;
}

// ---- helpers -----------------------------------------------------------------------

let NETLOAD = null;

/** A TCP service on the peer's new address only, port PORT (so the stale range, local on the peer, refuses). */
async function startTarget(lab) {
  const p = new LineProc(lab.spawnIn(lab.peer, NETLOAD, ['tcp-server', String(PORT), '2', ADDR.new6]), 'target server');
  await p.waitLine((l) => l === 'ready', 10_000);
  return p;
}

const applied = (gen) => (e) => e?.event === 'applied' && e.generation === gen;

// ---- 1. push to reachable (and 2b. one-mapping change) -----------------------------------

const WARMUP = 2;

async function pushAtSize(size, trials, withAddElement) {
  log(
    `push: ${size} mappings installed, ${trials} trials each (addrmap, baseline script${withAddElement ? ', nft add element' : ''}), interleaved`,
  );
  const entries = baseEntries(size);
  const [A, B] = await Promise.all([createLab({ staleRefused: true }), createLab({ staleRefused: true })]);
  const samples = () => ({
    addrmap: [],
    baseline: [],
    nftAdd: [],
    nftAddExit: [],
    addrmapPass: [],
    addrmapDone: [],
    baselineDone: [],
    attempts: [],
    addrmapAt: [],
  });
  const s = samples();
  const w = samples();
  try {
    await Promise.all([startTarget(A), startTarget(B)]);
    const agentStarted = nowMs();
    const agent = await startAgent(A);
    const script = await startBaseline(B);
    const t0 = nowMs();
    await pushFile(A.paths.mappings, mappingText(1, entries));
    const initA = await agent.waitLine(applied(1), 600_000, { past: true });
    const t1 = nowMs();
    await pushFile(B.paths.mappings, mappingText(1, entries));
    await script.waitLine((l) => l === 'applied 1', 600_000, { past: true });
    const baselineMs = nowMs() - t1;
    // Measure the steady state: after a full apply the agent may stay busy
    // (drift checks of its own rebuild's echoes); wait until it is idle, and
    // record how long that took.
    const quietMs = await waitQuiet(agent.pid, { timeoutMs: 600_000 });
    details[`push.initial.${size}`] = {
      addrmapMs: round(initA.t - t0),
      addrmapPassMs: initA.v.durationMs,
      baselineMs: round(baselineMs),
      addrmapBusyAfterMs: round(nowMs() - initA.t),
      addrmapQuietAfterMs: round(quietMs),
      driftDetectedEvents: agent.lines.filter((l) => l.v?.event === 'drift_detected').length,
    };
    const driftBefore = details[`push.initial.${size}`].driftDetectedEvents;
    const dA = new Driver(A);
    const dB = new Driver(B);
    const settle = 100 + Math.round(size / 250);
    await sleep(settle);
    // The first pushes after a start run code V8 has not optimized yet (the
    // first one took about twice the median at 10k): a start-up effect, not
    // the steady state this section measures. WARMUP pushes per side come
    // first, are not counted, and are recorded in the details on their own.
    for (let k = 1 - WARMUP; k <= trials; k++) {
      const warm = k < 1;
      const rec = warm ? w : s;
      const gen = k + 1 + WARMUP;
      const P = probeAddress(k + WARMUP);
      for (const who of shuffle(['addrmap', 'baseline', ...(withAddElement ? ['nft'] : [])])) {
        if (who === 'nft') {
          // The kernel's own cost of one change: one `nft add element` into the same 100k map.
          const Q = probeAddress(50_000 + k + WARMUP);
          const r = await dB.call({
            op: 'exec',
            argv: ['nft', 'add', 'element', 'inet', 'addrmap', 'dnat6', `{ ${Q} : ${ADDR.new6} }`],
            host: Q,
            port: PORT,
          });
          rec.nftAdd.push(r.ms);
          rec.nftAddExit.push(r.exitMs);
        } else {
          const lab = who === 'addrmap' ? A : B;
          const tmp = await stage(lab.paths.mappings, mappingText(gen, entries, [[P, ADDR.new6]]));
          const r = await (who === 'addrmap' ? dA : dB).call({ op: 'push', tmp, dst: lab.paths.mappings, host: P, port: PORT });
          rec[who].push(r.ms);
          rec.attempts.push(r.attempts);
          if (who === 'addrmap') rec.addrmapAt.push([round((r.t0 - agentStarted) / 1000, 1), round(r.ms, 1)]);
          if (who === 'addrmap') {
            const done = await agent.waitLine(applied(gen), 600_000, { past: true });
            rec.addrmapPass.push(done.v.durationMs);
            rec.addrmapDone.push(done.t - r.t0);
            // Pushes are minutes apart in production: let the agent finish
            // everything a push causes (its file poll notices the rename
            // within a second and runs one more pass) before the next one.
            await sleep(Math.max(0, 1100 - (nowMs() - done.t)));
            await waitQuiet(agent.pid, { windowMs: 200, maxCpuMs: 10 });
          } else {
            const done = await script.waitLine((l) => l === `applied ${gen}` || l === 'failed', 600_000, { past: true });
            if (done.v === 'failed') throw new Error(`baseline script failed: ${script.stderr.slice(-1000)}`);
            rec.baselineDone.push(done.t - r.t0);
          }
        }
        await sleep(settle);
      }
    }
    const driftDuring = agent.lines.filter((l) => l.v?.event === 'drift_detected').length - driftBefore;
    const bad = agent.lines.filter((l) => ['refused', 'apply_failed', 'pass_error', 'degraded'].includes(l.v?.event));
    if (bad.length) throw new Error(`addrmap reported problems: ${JSON.stringify(bad.slice(0, 3).map((l) => l.v))}`);
    const passes = agent.lines.filter((l) => l.v?.event === 'applied' || l.v?.event === 'unchanged').length;
    details[`push.${size}`] = {
      addrmap: summary(s.addrmap),
      baseline: summary(s.baseline),
      addrmapPassMs: summary(s.addrmapPass),
      addrmapRenameToLogMs: summary(s.addrmapDone),
      baselineRenameToDoneMs: summary(s.baselineDone),
      probeAttempts: summary(s.attempts),
      addrmapPasses: passes,
      pushes: trials + WARMUP + 1,
      warmup: {
        note: `the first ${WARMUP} pushes per side after the agent and the script started, not counted above`,
        addrmapMs: w.addrmap.map((x) => round(x, 1)),
        baselineMs: w.baseline.map((x) => round(x, 1)),
      },
      driftDetectedDuringTrials: driftDuring,
      // [seconds since the agent started, push to reachable ms], for lining outliers up with the agent's timers.
      addrmapRuns: s.addrmapAt,
      baselineRuns: s.baseline.map((x) => round(x, 1)),
      ...(withAddElement ? { nftAddElement: summary(s.nftAdd), nftAddElementExitMs: summary(s.nftAddExit) } : {}),
    };
    return s;
  } finally {
    await Promise.all([A.destroy(), B.destroy()]);
  }
}

async function pushSection() {
  const sizes = CONFIG.push.sizes;
  const largest = Math.max(...sizes);
  for (const size of sizes) {
    const s = await pushAtSize(size, CONFIG.push.trials[size], size === largest);
    const base = { section: 'push', unit: 'ms', better: 'lower', baselineName: 'inotifywait + nft -f script', size, n: s.addrmap.length };
    figure({
      ...base,
      id: `push.p50.${size}`,
      name: `push to reachable, p50, ${size} mappings`,
      value: median(s.addrmap),
      baseline: median(s.baseline),
      target: size === 10000 ? { ratioMax: 0.15 } : { ratioMax: 1.0 },
    });
    figure({
      ...base,
      id: `push.p99.${size}`,
      name: `push to reachable, p99, ${size} mappings`,
      value: quantile(s.addrmap, 0.99),
      baseline: quantile(s.baseline, 0.99),
      target: size === 10000 ? { ratioMax: 1.0, valueMax: 25 } : { ratioMax: 1.0 },
    });
    if (size === largest) {
      figure({
        id: `scale.one_change.${size}`,
        section: 'scale',
        name: `one-mapping change on a ${size} map (push to reachable)`,
        unit: 'ms',
        better: 'lower',
        baselineName: 'nft add element (start to reachable)',
        size,
        n: s.addrmap.length,
        value: median(s.addrmap),
        baseline: median(s.nftAdd),
        target: { ratioMax: 1.5 },
      });
    }
  }
}

// ---- 2a. full apply -------------------------------------------------------------------

async function scaleSection() {
  const size = CONFIG.scale.fullApplySize;
  log(`scale: full apply of ${size} mappings in a fresh namespace, addrmap apply vs nft -f, ${CONFIG.scale.fullApplyReps} reps`);
  const dir = await scratchDir();
  const entries = [];
  for (let i = 0; i < size; i++) entries.push(baseMapping(i));
  const ruleset =
    (await readFile(join(BENCH, 'ruleset.nft'), 'utf8')) +
    `\nadd element inet addrmap dnat6 { ${entries.map(([a, b]) => `${a} : ${b}`).join(',\n')} }\n`;
  const rulesetFile = join(dir, 'ruleset-full.nft');
  await writeFile(rulesetFile, ruleset);
  const text = mappingText(1, baseEntries(size));
  const s = { addrmap: [], nft: [], pass: [] };
  for (let rep = 0; rep < CONFIG.scale.fullApplyReps; rep++) {
    for (const who of shuffle(['addrmap', 'nft'])) {
      const lab = await createLab({ peer: false });
      try {
        if (who === 'nft') {
          const r = await lab.exec(lab.guest, 'nft', ['-f', rulesetFile]);
          if (r.code !== 0) throw new Error(`nft -f failed: ${r.stderr}`);
          s.nft.push(r.ms);
        } else {
          await pushFile(lab.paths.mappings, text);
          const r = await run(IP, ['netns', 'exec', lab.guest, NODE, ADDRMAP, 'apply'], { env: lab.env() });
          if (r.code !== 0) throw new Error(`addrmap apply failed (${r.code}): ${r.stderr}`);
          s.addrmap.push(r.ms);
          s.pass.push(JSON.parse(r.stdout.split('\n').find((l) => l.includes('"applied"'))).durationMs);
        }
      } finally {
        await lab.destroy();
      }
    }
  }
  details[`scale.full_apply.${size}`] = { addrmap: summary(s.addrmap), nft: summary(s.nft), addrmapPassMs: summary(s.pass) };
  figure({
    id: `scale.full_apply.${size}`,
    section: 'scale',
    name: `full apply of ${size} mappings (process start to exit)`,
    unit: 'ms',
    better: 'lower',
    baselineName: 'nft -f of the same ruleset',
    size,
    n: s.addrmap.length,
    value: median(s.addrmap),
    baseline: median(s.nft),
    target: { ratioMax: 1.3 },
  });
}

// ---- 3. cold start -------------------------------------------------------------------------

async function coldSection() {
  const n = CONFIG.cold.mappings;
  const sea = existsSync(SEA) ? SEA : null;
  log(`cold: apply with ${n} mappings, process start to exit, vs node -e 0; standalone: ${sea ?? 'not built'}; ${CONFIG.cold.reps} reps`);
  const text = mappingText(1, baseEntries(n));
  const s = { node0: [], addrmap: [], sea: [], addrmapVersion: [], seaVersion: [] };
  const kinds = ['node0', 'addrmap', 'addrmapVersion', ...(sea ? ['sea', 'seaVersion'] : [])];
  // Warm the page cache: the first start of each binary reads it from disk.
  await run(NODE, ['-e', '0']);
  await run(NODE, [ADDRMAP, 'version']);
  if (sea) await run(sea, ['version']);
  for (let rep = 0; rep < CONFIG.cold.reps; rep++) {
    for (const kind of shuffle(kinds)) {
      const lab = await createLab({ peer: false });
      try {
        await pushFile(lab.paths.mappings, text);
        const argv = {
          node0: [NODE, '-e', '0'],
          addrmap: [NODE, ADDRMAP, 'apply'],
          addrmapVersion: [NODE, ADDRMAP, 'version'],
          sea: [sea, 'apply'],
          seaVersion: [sea, 'version'],
        }[kind];
        const r = await run(IP, ['netns', 'exec', lab.guest, ...argv], { env: lab.env() });
        if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (${r.code}): ${r.stderr}`);
        if ((kind === 'addrmap' || kind === 'sea') && !r.stdout.includes('"event":"applied"'))
          throw new Error(`${kind} did not apply: ${r.stdout}`);
        s[kind].push(r.ms);
      } finally {
        await lab.destroy();
      }
    }
  }
  details.cold = Object.fromEntries(
    Object.entries(s)
      .filter(([, v]) => v.length)
      .map(([k, v]) => [k, summary(v)]),
  );
  details.cold.note = 'each run in a fresh network namespace, timed from spawn of `ip netns exec` to exit (the same wrapper for every row)';
  const base = { section: 'cold', unit: 'ms', better: 'lower', baselineName: 'node -e 0', size: n, n: s.addrmap.length };
  figure({
    ...base,
    id: `cold.node.${n}`,
    name: `cold start to rules installed, ${n} mappings (node dist/addrmap.mjs apply)`,
    value: median(s.addrmap),
    baseline: median(s.node0),
  });
  figure({
    ...base,
    id: `cold.sea.${n}`,
    name: `cold start to rules installed, ${n} mappings (standalone executable)`,
    value: sea ? median(s.sea) : NaN,
    baseline: median(s.node0),
    ...(sea ? {} : { skipped: 'out/addrmap not built (npm run package)' }),
  });
}

// ---- 4. memory -------------------------------------------------------------------------------

async function memorySection() {
  const { sizes, reps, idleSeconds } = CONFIG.memory;
  // The standalone executable is what the packages install (with its own V8
  // options), so the full suite measures it too; it rebuilds it first, the
  // quick one does not and leaves it out.
  const sea = !QUICK && existsSync(SEA) ? SEA : null;
  log(
    `memory: idle RSS of addrmap watch with ${sizes.join(', ')} mappings vs an idle node, ${reps} reps of ${idleSeconds} s idle; standalone: ${sea ?? 'not built'}`,
  );
  const runs = [];
  const kinds = [
    ...sizes.map((size) => ({ size, binary: null })),
    ...(sea ? sizes.map((size) => ({ size, binary: sea })) : []),
    { size: 'node', binary: null },
  ];
  // One agent of each kind and a bare node at a time (they idle side by side), reps one after another.
  for (let rep = 0; rep < reps; rep++) {
    const batch = [];
    try {
      for (const k of kinds) batch.push({ ...k, lab: await createLab() });
      await Promise.all(
        batch.map(async (r) => {
          if (r.size === 'node') {
            r.proc = new LineProc(
              r.lab.spawnIn(r.lab.guest, NODE, ['-e', 'setInterval(() => {}, 1 << 30); console.log("ready")']),
              'idle node',
            );
            await r.proc.waitLine((l) => l === 'ready', 30_000);
          } else {
            await pushFile(r.lab.paths.mappings, mappingText(1, baseEntries(r.size)));
            r.proc = await startAgent(r.lab, { binary: r.binary });
            const done = await r.proc.waitLine(applied(1), 600_000, { past: true });
            // Idle means idle: after the start-up apply settles.
            await waitQuiet(r.proc.pid, { timeoutMs: 600_000 });
            r.settledMs = nowMs() - done.t;
          }
          r.samples = [];
        }),
      );
      const t0 = nowMs();
      while (nowMs() - t0 < idleSeconds * 1000) {
        for (const r of batch) {
          // Every process of addrmap's: the agent and whatever it started (in steady state nothing).
          const pids = [r.proc.pid, ...descendants(r.proc.pid)];
          const st = pids.map((p) => readStatus(p));
          if (!st[0]) continue;
          const sum = (k) => st.reduce((a, x) => a + (x?.[k] ?? 0), 0) / 1024;
          r.samples.push({
            t: round((nowMs() - t0) / 1000, 1),
            rss: sum('rssKiB'),
            anon: sum('rssAnonKiB'),
            pss: pids.map((p) => readPss(p) || 0).reduce((a, b) => a + b, 0) / 1024,
            hwm: st[0].hwmKiB / 1024,
            children: pids.length - 1,
          });
        }
        await sleep(1000);
      }
      for (const r of batch) {
        r.driftEvents = r.proc.lines.filter((l) => l.v?.event === 'drift_detected').length;
        r.settledMs = round(r.settledMs ?? 0);
        runs.push(r);
      }
    } finally {
      await Promise.all(batch.map((r) => r.lab.destroy()));
    }
  }
  // The idle figure: the median of the last 3 samples of each process, then the median over reps.
  const idle = (r, k) => median(r.samples.slice(-3).map((x) => x[k]));
  const of = (size, k, binary = null) => runs.filter((r) => r.size === size && r.binary === binary).map((r) => idle(r, k));
  const trace = (size, binary = null) =>
    runs
      .filter((r) => r.size === size && r.binary === binary)
      .map((r) =>
        r.samples.filter((_, i) => i % 5 === 0 || i === r.samples.length - 1).map((x) => [x.t, round(x.rss, 1), round(x.pss, 1)]),
      );
  const node = { rss: median(of('node', 'rss')), anon: median(of('node', 'anon')), pss: median(of('node', 'pss')) };
  details.memory = {
    note:
      "all of addrmap's processes (the agent and its descendants; childrenMax: the most descendants seen in any sample, 0 since there is no nft monitor child); " +
      'rssMiB: VmRSS, rssAnonMiB: RssAnon, pssMiB: Pss (smaps_rollup), each summed over those processes; peakMiB: VmHWM of the agent; trace: [seconds idle, RSS MiB, PSS MiB] per rep',
    node: {
      rssMiB: round(node.rss),
      rssAnonMiB: round(node.anon),
      pssMiB: round(node.pss),
      peakMiB: round(median(runs.filter((r) => r.size === 'node').map((r) => r.samples.at(-1).hwm))),
      trace: trace('node'),
    },
  };
  const metrics = [
    { k: 'rss', id: 'rss', what: 'VmRSS', target: { ratioMax: 1.3 } },
    { k: 'anon', id: 'rss_anon', what: 'RssAnon' },
    { k: 'pss', id: 'pss', what: 'PSS' },
  ];
  for (const binary of sea ? [null, sea] : [null]) {
    for (const size of sizes) {
      const mine = runs.filter((r) => r.size === size && r.binary === binary);
      const key = binary ? `standalone.${size}` : `${size}`;
      details.memory[key] = {
        rssMiB: round(median(of(size, 'rss', binary))),
        rssAnonMiB: round(median(of(size, 'anon', binary))),
        pssMiB: round(median(of(size, 'pss', binary))),
        childrenMax: Math.max(...mine.flatMap((r) => r.samples.map((x) => x.children))),
        peakMiB: round(median(mine.map((r) => r.samples.at(-1).hwm))),
        driftDetectedEvents: mine.map((r) => r.driftEvents),
        busyAfterApplyMs: mine.map((r) => r.settledMs),
        trace: trace(size, binary),
      };
    }
  }
  for (const m of metrics) {
    for (const binary of sea ? [null, sea] : [null]) {
      for (const size of sizes) {
        figure({
          id: binary ? `memory.${m.id}.standalone.${size}` : `memory.${m.id}.${size}`,
          section: 'memory',
          name: `idle ${m.what} of addrmap watch and its processes, ${size} mappings (${binary ? 'standalone executable' : 'node dist/addrmap.mjs'})`,
          unit: 'MiB',
          better: 'lower',
          baselineName: 'idle node process',
          size,
          n: of(size, m.k, binary).length,
          value: median(of(size, m.k, binary)),
          baseline: node[m.k],
          ...(size === 10000 && m.target ? { target: m.target } : {}),
        });
      }
    }
  }
}

// ---- 4b. idle CPU ----------------------------------------------------------------------------

/**
 * Idle CPU of `addrmap watch` with N mappings: the agent and every process
 * it starts (there should be none), over a long window in which nothing is
 * pushed, beside an idle `node -e 'setInterval(()=>{},1e9)'`. CPU is the
 * kernel's schedstat (nanoseconds on a CPU, and how often each thread was put
 * on one: its wakeups) of every thread, sampled every 100 ms so the periodic
 * work shows as episodes (consecutive busy samples) with their cost; children
 * are looked for every second, and children the agent waited for show in its
 * cutime/cstime. Full runs add diagnostics that separate the agent's timers:
 * the same agent without the usage sample (usageIntervalSeconds 86400), and
 * 0 and 100k mappings.
 */
async function idleSection() {
  const { size, seconds, diagnostics } = CONFIG.idle;
  const kinds = [
    { key: `${size}`, size },
    ...(diagnostics
      ? [
          { key: `${size}.no_usage_sample`, size, config: { usageIntervalSeconds: 86400 } },
          { key: '0', size: 0 },
          { key: '100000', size: 100000 },
        ]
      : []),
    { key: 'node' },
  ];
  log(`idle: CPU of addrmap watch (${kinds.map((k) => k.key).join(', ')}) side by side over ${seconds} s with nothing pushed`);
  const batch = [];
  try {
    for (const k of kinds) {
      const lab = await createLab();
      if (k.config) await lab.writeConfig({ logLevel: 'info', ...k.config });
      batch.push({ ...k, lab });
    }
    await Promise.all(
      batch.map(async (r) => {
        if (r.key === 'node') {
          r.proc = new LineProc(r.lab.spawnIn(r.lab.guest, NODE, ['-e', 'setInterval(()=>{},1e9)']), 'idle node');
        } else {
          await pushFile(r.lab.paths.mappings, mappingText(1, baseEntries(r.size)));
          r.proc = await startAgent(r.lab);
          await r.proc.waitLine(applied(1), 600_000, { past: true });
        }
        await waitQuiet(r.proc.pid, { timeoutMs: 600_000 });
      }),
    );
    // Past the start: lazy compilation and the first collections after the apply.
    await sleep(QUICK ? 1000 : 5000);
    for (const r of batch) {
      r.first = readCpu(r.proc.pid);
      r.series = [];
      r.kids = new Map();
      r.linesBefore = r.proc.lines.length;
    }
    const t0 = nowMs();
    let lastScan = 0;
    while (nowMs() - t0 < seconds * 1000) {
      const scan = nowMs() - lastScan >= 1000;
      if (scan) lastScan = nowMs();
      for (const r of batch) {
        if (scan) for (const p of descendants(r.proc.pid)) if (!r.kids.has(p)) r.kids.set(p, commOf(p));
        if (r.exited) continue;
        const c = readCpu(r.proc.pid);
        if (!c) {
          // Recorded, not fatal for the others: its figure is left without a value.
          r.exited = {
            afterMs: round(nowMs() - t0),
            stdout: r.proc.lines.slice(-5).map((l) => l.v ?? l),
            stderr: r.proc.stderr?.slice(-2000),
          };
          log(`idle: ${r.key} exited ${round((nowMs() - t0) / 1000)} s into the window: ${JSON.stringify(r.exited)}`);
          continue;
        }
        let kidNs = 0;
        for (const p of r.kids.keys()) kidNs += readCpu(p)?.ns ?? 0;
        r.series.push({ t: nowMs() - t0, ns: c.ns + kidNs, runs: c.runs });
      }
      await sleep(100);
    }
    for (const r of batch) {
      r.last = r.exited ? null : readCpu(r.proc.pid);
      r.result = r.last ? idleSummary(r) : { size: r.size ?? null, corePercent: NaN, exited: r.exited };
    }
  } finally {
    await Promise.all(batch.map((r) => r.lab.destroy()));
  }
  const by = Object.fromEntries(batch.map((r) => [r.key, r.result]));
  details.idle = {
    note:
      'cpuMs: schedstat time on a CPU of every thread of the agent and its descendants (plus cutime/cstime of children it waited for) over windowMs; ' +
      'ticksCpuMs: the same from utime+stime (10 ms resolution, exited threads included); wakeupsPerMinute: times a thread was put on a CPU; ' +
      'episodes: runs of consecutive 100 ms samples with CPU used (a timer firing and its work), small < 2 ms, large >= 2 ms; threads: by name',
    seconds,
    ...by,
  };
  const base = by.node;
  const mk = (key, extra) => {
    const r = by[key];
    figure({
      section: 'idle',
      unit: '% of a core',
      digits: 5,
      better: 'lower',
      baselineName: "idle node -e 'setInterval(()=>{},1e9)'",
      size: r.size,
      n: 1,
      value: r.corePercent,
      baseline: base.corePercent,
      ...extra,
    });
  };
  mk(`${size}`, {
    id: `idle.cpu.${size}`,
    name: `idle CPU of addrmap watch and its descendants, ${size} mappings, ${seconds} s`,
    target: { valueMax: 0.05 },
  });
  figure({
    id: `idle.children.${size}`,
    section: 'idle',
    name: `processes started by addrmap watch while idle, ${size} mappings, ${seconds} s`,
    unit: 'processes',
    better: 'lower',
    baselineName: 'idle node',
    size,
    n: 1,
    value: by[`${size}`].children,
    baseline: base.children,
    target: { valueMax: 0 },
  });
  figure({
    id: `idle.wakeups.${size}`,
    section: 'idle',
    name: `thread wakeups of addrmap watch while idle, ${size} mappings`,
    unit: 'per minute',
    better: 'lower',
    baselineName: 'idle node',
    size,
    n: 1,
    value: by[`${size}`].wakeupsPerMinute,
    baseline: base.wakeupsPerMinute,
  });
  if (diagnostics) {
    mk(`${size}.no_usage_sample`, {
      id: `idle.cpu.${size}.no_usage_sample`,
      name: `diagnostic: idle CPU, ${size} mappings, without the usage sample (usageIntervalSeconds 86400)`,
    });
    mk('0', { id: 'idle.cpu.0', name: `diagnostic: idle CPU, 0 mappings, ${seconds} s` });
    mk('100000', { id: 'idle.cpu.100000', name: `diagnostic: idle CPU, 100000 mappings, ${seconds} s` });
  }
}

function commOf(pid) {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '(exited)';
  }
}

function idleSummary(r) {
  const childTicksMs = r.last.childTicksMs - r.first.childTicksMs;
  const last = r.series.at(-1);
  const cpuMs = (last.ns - r.series[0].ns) / 1e6 + childTicksMs;
  const spanMs = last.t - r.series[0].t;
  const minutes = spanMs / 60_000;
  // Episodes: consecutive 100 ms samples with CPU used.
  const episodes = [];
  let cur = 0;
  for (let i = 1; i < r.series.length; i++) {
    const d = (r.series[i].ns - r.series[i - 1].ns) / 1e6;
    if (d > 0) cur += d;
    else if (cur > 0) {
      episodes.push(cur);
      cur = 0;
    }
  }
  if (cur > 0) episodes.push(cur);
  const part = (xs) => ({
    perMinute: round(xs.length / minutes, 1),
    medianMs: round(median(xs), 3),
    maxMs: round(xs.length ? Math.max(...xs) : NaN, 2),
    totalMs: round(
      xs.reduce((a, b) => a + b, 0),
      1,
    ),
  });
  const threads = {};
  for (const [k, t] of Object.entries(r.last.threads)) {
    const before = r.first.threads[k] ?? { ns: 0, runs: 0 };
    const g = (threads[t.comm] ??= { cpuMs: 0, wakeups: 0 });
    g.cpuMs += (t.ns - before.ns) / 1e6;
    g.wakeups += t.runs - before.runs;
  }
  for (const g of Object.values(threads)) g.cpuMs = round(g.cpuMs, 2);
  const wakeups = last.runs - r.series[0].runs;
  return {
    size: r.size ?? null,
    windowMs: round(spanMs),
    cpuMs: round(cpuMs, 2),
    corePercent: round((cpuMs / spanMs) * 100, 5),
    ticksCpuMs: r.last.ticksMs - r.first.ticksMs + childTicksMs,
    childTicksMs,
    children: r.kids.size,
    childNames: [...new Set(r.kids.values())],
    wakeupsPerMinute: round(wakeups / minutes, 1),
    cpuMsPerWakeup: round(wakeups ? cpuMs / wakeups : NaN, 4),
    episodes: { small: part(episodes.filter((x) => x < 2)), large: part(episodes.filter((x) => x >= 2)) },
    threads,
    logLines: r.proc.lines.length - r.linesBefore,
    events: [...new Set(r.proc.lines.slice(r.linesBefore).map((l) => l.v?.event))],
  };
}

// ---- 6. a small guest ------------------------------------------------------------------------

/**
 * What addrmap costs a 256 MB guest in all (kernel and user): Debian 12's
 * kernel in QEMU runs test/vm/small-vm.mjs, which reads the guest's
 * /proc/meminfo before the agent starts and after 0, 1k and 10k mappings,
 * with an application talking through a stale address all along.
 */
// ---- conntrack: a push over a full conntrack table --------------------------------------

/**
 * One trial: an agent with one mapping; with `flows`, the guest's table then
 * holds stale x perAddress untranslated UDP flows to the stale addresses
 * about to be mapped. Then one push maps them all (and a probe address), and
 * a second push follows at once, while the cleanup of the first runs.
 */
async function conntrackTrial(withFlows) {
  const { stale, perAddress } = CONFIG.conntrack;
  const lab = await createLab({ staleRefused: true });
  try {
    // Unanswered UDP flows would expire after 30 s, within a full run's trial.
    await must('ip', ['netns', 'exec', lab.guest, 'sysctl', '-q', '-w', 'net.netfilter.nf_conntrack_udp_timeout=600']);
    await startTarget(lab);
    const agent = await startAgent(lab);
    await pushFile(lab.paths.mappings, mappingText(1, '', [[probeAddress(0), ADDR.new6]]));
    await agent.waitLine(applied(1), 60_000, { past: true });
    await agent.waitLine((e) => e?.event === 'conntrack_cleaned', 60_000, { past: true });
    const out = { tracked: 0, toolListMs: NaN };
    if (withFlows) {
      const r = await lab.exec(lab.guest, NODE, [join(BENCH, 'flows.mjs'), String(stale), String(perAddress), '9']);
      if (r.code !== 0) throw new Error(`flows.mjs failed: ${r.stderr}`);
      out.tracked = Number((await must('ip', ['netns', 'exec', lab.guest, 'conntrack', '-C'])).stdout.trim());
      // The baseline: reading the same table once with the conntrack tool.
      const list = await lab.exec(lab.guest, 'conntrack', ['-L', '-f', 'ipv6']);
      if (list.code !== 0) throw new Error(`conntrack -L failed: ${list.stderr}`);
      out.toolListMs = list.ms;
    }
    await waitQuiet(agent.pid);
    const driver = new Driver(lab);
    const [P1, P2] = [probeAddress(1), probeAddress(2)];
    const cleaned = agent.waitLine((e) => e?.event === 'conntrack_cleaned' && e.targets > 1, 600_000);
    const first = await driver.call({
      op: 'push',
      tmp: await stage(
        lab.paths.mappings,
        mappingText(2, baseEntries(stale), [
          [probeAddress(0), ADDR.new6],
          [P1, ADDR.new6],
        ]),
      ),
      dst: lab.paths.mappings,
      host: P1,
      port: PORT,
    });
    const second = await driver.call({
      op: 'push',
      tmp: await stage(
        lab.paths.mappings,
        mappingText(3, baseEntries(stale), [
          [probeAddress(0), ADDR.new6],
          [P1, ADDR.new6],
          [P2, ADDR.new6],
        ]),
      ),
      dst: lab.paths.mappings,
      host: P2,
      port: PORT,
    });
    const c = await cleaned;
    const left = withFlows ? Number((await must('ip', ['netns', 'exec', lab.guest, 'conntrack', '-C'])).stdout.trim()) : 0;
    await driver.proc.stop();
    return {
      ...out,
      pushMs: first.ms,
      secondPushMs: second.ms,
      // Both clocks are CLOCK_MONOTONIC (hrtime), in different processes.
      secondPushDuringCleanup: c.t > second.t0 + second.ms,
      cleanupMs: c.v.durationMs,
      cleanupDoneAfterPushMs: round(c.t - first.t0),
      removed: c.v.removed,
      trackedAfter: left,
      via: c.v.via,
    };
  } finally {
    await lab.destroy();
  }
}

async function conntrackSection() {
  const { stale, perAddress, reps } = CONFIG.conntrack;
  const n = stale * perAddress;
  log(
    `conntrack: push mapping ${stale} stale addresses with ${n} tracked flows to them, vs the same push with none; ${reps} reps, interleaved`,
  );
  const runs = { flows: [], empty: [] };
  for (let rep = 0; rep < reps; rep++) {
    for (const kind of shuffle(['flows', 'empty'])) runs[kind].push(await conntrackTrial(kind === 'flows'));
  }
  details.conntrack = {
    ...runs,
    note: `${n} untranslated UDP flows (${perAddress} per stale address) in the guest's table before the push; the second push follows the first at once`,
  };
  const pick = (kind, k) => runs[kind].map((r) => r[k]);
  const base = { section: 'conntrack', better: 'lower', size: n, n: reps };
  figure({
    ...base,
    id: 'conntrack.push',
    name: `push to DNAT in effect (reachable), ${stale} new mappings, ${n} stale flows tracked`,
    unit: 'ms',
    baselineName: 'the same push, no flows tracked',
    value: median(pick('flows', 'pushMs')),
    baseline: median(pick('empty', 'pushMs')),
    target: { valueMax: 100 },
  });
  figure({
    ...base,
    id: 'conntrack.push_during_cleanup',
    name: 'the next push, made while that cleanup runs',
    unit: 'ms',
    baselineName: 'the same push, no flows tracked',
    value: median(pick('flows', 'secondPushMs')),
    baseline: median(pick('empty', 'secondPushMs')),
  });
  figure({
    ...base,
    id: 'conntrack.cleanup',
    name: `conntrack cleanup, ${n} flows over ${stale} stale addresses (push to done)`,
    unit: 'ms',
    baselineName: 'one `conntrack -L` of the same table',
    value: median(pick('flows', 'cleanupDoneAfterPushMs')),
    baseline: median(pick('flows', 'toolListMs')),
    target: { valueMax: 5000 },
  });
  const removed = pick('flows', 'removed');
  figure({
    ...base,
    id: 'conntrack.removed',
    name: 'stale flows removed by that cleanup',
    unit: 'flows',
    better: 'higher',
    baselineName: 'flows tracked',
    value: median(removed),
    baseline: median(pick('flows', 'tracked')),
  });
}

async function guestSection() {
  log('guest: 256 MB bookworm VM (QEMU, software emulation), 0 / 1k / 10k mappings');
  const out = await new Promise((resolve) => {
    const child = spawn(
      'bash',
      [join(ROOT, 'test/vm/run.sh'), 'bookworm', '--mem', '256', '--', NODE, join(ROOT, 'test/vm/small-vm.mjs')],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let text = '';
    child.stdout.on('data', (d) => (text += d));
    child.on('close', () => resolve(text));
  });
  const line = /^ADDRMAP_GUEST_MEMORY (.*)$/m.exec(out);
  const r = line ? JSON.parse(line[1]) : null;
  if (!r) throw new Error(`the guest printed no result:\n${out.slice(-2000)}`);
  details.guest = {
    note: 'KiB; cost = the guest before the agent started minus the guest then; slab and SUnreclaim: kernel memory; agentRssAnonKiB: the agent and any process it started',
    ...r,
  };
  for (const row of r.rows) {
    figure({
      id: `guest.memavailable.${row.mappings}`,
      section: 'guest',
      name: `MemAvailable taken from a 256 MB guest, ${row.mappings} mappings (kernel ${r.kernel}; kernel slab ${round(row.slabCostKiB / 1024, 1)} MiB of it, SUnreclaim ${round(row.sunreclaimCostKiB / 1024, 1)} MiB)`,
      unit: 'MiB',
      better: 'lower',
      baselineName: "the guest's MemAvailable before the agent",
      size: row.mappings,
      n: 1,
      value: row.memAvailableCostKiB / 1024,
      baseline: r.memAvailableBeforeKiB / 1024,
      ...(row.mappings === 10000 ? { target: { valueMax: 32 } } : {}),
    });
  }
  figure({
    id: 'guest.oomkills',
    section: 'guest',
    name: 'OOM kills in the 256 MB guest during 0 / 1k / 10k pushes',
    unit: 'kills',
    better: 'lower',
    baselineName: 'none allowed',
    n: 1,
    value: r.oomKills,
    baseline: 0,
    target: { valueMax: 0 },
  });
}

// ---- 5. data plane ---------------------------------------------------------------------------

const DATA_PORTS = { tput: 5201, crr: 7100, udp: 7200 };

/** Waits until something in namespace ns listens on port. */
async function listening(lab, ns, proto, port) {
  for (let i = 0; i < 250; i++) {
    const r = await lab.exec(ns, 'ss', ['-Hln', proto === 'udp' ? '-u' : '-t', `sport = :${port}`]);
    if (r.stdout.trim()) return;
    await sleep(20);
  }
  throw new Error(`nothing listens on ${proto} port ${port} in ${ns}`);
}

async function dataRun(metric, mode) {
  const { seconds, concurrency, mappings } = CONFIG.data;
  const lab = await createLab();
  try {
    const port = DATA_PORTS[metric];
    let target = ADDR.new6;
    if (mode === 'conntrack_only') {
      // An empty NAT chain: the kernel tracks every flow, nothing is translated.
      await must('ip', [
        'netns',
        'exec',
        lab.guest,
        'nft',
        'add table inet track; add chain inet track out { type nat hook output priority -100; }',
      ]);
    } else if (mode === 'dnat_nocount') {
      // addrmap's DNAT without its count chains (apply once, no daemon to repair them).
      await pushFile(lab.paths.mappings, mappingText(1, baseEntries(mappings - 1), [[ADDR.stale6, ADDR.new6]]));
      const r = await run(IP, ['netns', 'exec', lab.guest, NODE, ADDRMAP, 'apply'], { env: lab.env() });
      if (r.code !== 0) throw new Error(`addrmap apply failed: ${r.stderr}`);
      await must('ip', [
        'netns',
        'exec',
        lab.guest,
        'nft',
        'delete chain inet addrmap count_output; delete chain inet addrmap count_forward',
      ]);
      target = ADDR.stale6;
    } else if (mode === 'dnat' || mode === 'direct_loaded') {
      const entries = baseEntries(mappings - 1);
      await pushFile(lab.paths.mappings, mappingText(1, entries, [[ADDR.stale6, ADDR.new6]]));
      const agent = await startAgent(lab);
      await agent.waitLine(applied(1), 120_000, { past: true });
      await waitQuiet(agent.pid);
      if (mode === 'dnat') target = ADDR.stale6;
    } else if (mode === 'socat') {
      await must('ip', ['-n', lab.guest, 'addr', 'add', `${ADDR.stale6}/128`, 'dev', 'lo', 'nodad']);
      const proto = metric === 'udp' ? 'UDP6' : 'TCP6';
      lab.spawnIn(lab.guest, 'socat', [
        `${proto}-LISTEN:${port},bind=[${ADDR.stale6}],fork,reuseaddr${metric === 'udp' ? '' : ',backlog=4096'}`,
        `${proto}:[${ADDR.new6}]:${port}`,
      ]);
      await listening(lab, lab.guest, metric === 'udp' ? 'udp' : 'tcp', port);
      target = ADDR.stale6;
    }
    if (metric === 'tput') {
      lab.spawnIn(lab.peer, 'iperf3', ['-s', '-p', String(port)]);
      await listening(lab, lab.peer, 'tcp', port);
      const r = await lab.exec(lab.guest, 'iperf3', ['-c', target, '-p', String(port), '-t', String(seconds), '-O', '1', '-J']);
      const j = JSON.parse(r.stdout);
      if (j.error) throw new Error(`iperf3 (${mode}): ${j.error}`);
      return j.end.sum_received.bits_per_second / 1e9;
    }
    // Bound to the new address, so UDP answers come from it (from a wildcard socket they would carry the link address).
    const srv = new LineProc(
      lab.spawnIn(lab.peer, NETLOAD, [metric === 'crr' ? 'tcp-server' : 'udp-server', String(port), String(concurrency), ADDR.new6]),
      'netload server',
    );
    await srv.waitLine((l) => l === 'ready', 10_000);
    const r = await lab.exec(lab.guest, NETLOAD, [
      metric === 'crr' ? 'crr' : 'udp-rr',
      target,
      String(port),
      String(seconds),
      String(concurrency),
    ]);
    if (r.code !== 0) throw new Error(`netload ${metric} (${mode}): ${r.stderr}`);
    const j = JSON.parse(r.stdout);
    if (j.ops === 0) throw new Error(`netload ${metric} (${mode}) made no successful operation: ${r.stdout}`);
    return j.rate;
  } finally {
    await lab.destroy();
  }
}

async function dataSection() {
  const { reps, seconds } = CONFIG.data;
  const modes = opts.modes ? opts.modes.split(',') : ['direct', 'dnat', 'direct_loaded', 'socat', 'conntrack_only', 'dnat_nocount'];
  log(
    `data: TCP throughput, TCP connections/s, UDP requests/s; ${modes.join(', ')}; ${reps} reps of ${seconds} s, each in fresh namespaces`,
  );
  const s = {};
  for (const metric of CONFIG.data.metrics) {
    s[metric] = Object.fromEntries(modes.map((m) => [m, []]));
    for (let rep = 0; rep < reps; rep++) {
      for (const mode of shuffle(modes)) s[metric][mode].push(await dataRun(metric, mode));
    }
  }
  details.data = {
    modes: {
      direct: 'client in a guest without any nftables rules, to the new address',
      dnat: 'client in a guest running addrmap watch (' + CONFIG.data.mappings + ' mappings), to the stale address',
      direct_loaded: 'client in a guest running addrmap watch, to the new address (the cost addrmap puts on all other traffic)',
      socat: 'client to the stale address, local in the guest, where socat (fork per connection or UDP peer) relays to the new address',
      conntrack_only:
        'diagnostic: client to the new address in a guest with an empty NAT chain (connection tracking on, nothing translated)',
      dnat_nocount: "diagnostic: as dnat, after addrmap apply, with addrmap's two count chains deleted (DNAT alone)",
    },
    ...Object.fromEntries(
      Object.entries(s).map(([m, by]) => [
        m,
        Object.fromEntries(Object.entries(by).map(([mode, xs]) => [mode, { ...summary(xs), runs: xs.map((x) => round(x, 2)) }])),
      ]),
    ),
    concurrency: CONFIG.data.concurrency,
  };
  const metrics = {
    tput: { name: 'TCP throughput, 1 stream', unit: 'Gbit/s', target: { ratioMin: 0.97 } },
    crr: { name: `new TCP connections per second (${CONFIG.data.concurrency} clients)`, unit: 'conn/s', target: { ratioMin: 0.9 } },
    udp: { name: `UDP requests per second (${CONFIG.data.concurrency} clients, ping-pong)`, unit: 'req/s' },
  };
  for (const [metric, m] of Object.entries(metrics)) {
    if (!s[metric]) continue;
    const med = (mode) => median(s[metric][mode] ?? []);
    const pair = (mode, base) => median((s[metric][mode] ?? []).map((x, i) => x / s[metric][base][i]));
    const value = med('dnat');
    const base = { section: 'data', unit: m.unit, better: 'higher', n: (s[metric].dnat ?? []).length };
    figure({
      ...base,
      id: `data.${metric}.vs_direct`,
      name: `${m.name}: stale address via addrmap`,
      baselineName: 'direct to the new address',
      value,
      baseline: med('direct'),
      paired: pair('dnat', 'direct'),
      ...(m.target ? { target: m.target } : {}),
    });
    figure({
      ...base,
      id: `data.${metric}.vs_socat`,
      name: `${m.name}: stale address via addrmap`,
      baselineName: 'socat on the stale address',
      value,
      baseline: med('socat'),
      paired: pair('dnat', 'socat'),
    });
    figure({
      ...base,
      id: `data.${metric}.loaded_direct`,
      name: `${m.name}: new address, addrmap loaded`,
      baselineName: 'direct, no rules',
      value: med('direct_loaded'),
      baseline: med('direct'),
      paired: pair('direct_loaded', 'direct'),
    });
    figure({
      ...base,
      id: `data.${metric}.conntrack_only`,
      name: `${m.name}: diagnostic, conntrack alone`,
      baselineName: 'direct, no rules',
      value: med('conntrack_only'),
      baseline: med('direct'),
      paired: pair('conntrack_only', 'direct'),
    });
    figure({
      ...base,
      id: `data.${metric}.dnat_nocount`,
      name: `${m.name}: diagnostic, DNAT without count chains`,
      baselineName: 'direct, no rules',
      value: med('dnat_nocount'),
      baseline: med('direct'),
      paired: pair('dnat_nocount', 'direct'),
    });
  }
}

// ---- output ----------------------------------------------------------------------------

function table() {
  const rows = [['figure', 'addrmap', 'baseline', 'baseline value', 'ratio', 'target', 'met']];
  for (const f of figures) {
    const t = f.target;
    const target = t
      ? [
          t.ratioMax !== undefined ? `<= ${t.ratioMax}x` : null,
          t.ratioMin !== undefined ? `>= ${t.ratioMin}x` : null,
          t.valueMax !== undefined ? `<= ${t.valueMax} ${f.unit}` : null,
        ]
          .filter(Boolean)
          .join(', ')
      : '';
    rows.push([
      f.name,
      f.skipped ? `skipped` : fmt(f.value, f.unit),
      f.baselineName,
      fmt(f.baseline, f.unit),
      f.ratio === null ? '-' : `${f.ratio.toFixed(2)}x${f.ratioKind === 'paired' ? '*' : ''}`,
      target,
      f.met === null ? '' : f.met ? 'yes' : 'NO',
    ]);
  }
  return rows;
}

const FOOTNOTE =
  'Medians; p99 is nearest-rank (with fewer than 100 samples, the largest). Ratio = addrmap / baseline. ' +
  '* median of per-repetition ratios, both sides measured back to back in each repetition.';

function plain(rows) {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows
    .map(
      (r, j) =>
        r
          .map((c, i) => String(c).padEnd(w[i]))
          .join('  ')
          .trimEnd() + (j === 0 ? '\n' + w.map((x) => '-'.repeat(x)).join('  ') : ''),
    )
    .join('\n');
}

function markdown(rows) {
  return [rows[0], rows[0].map(() => '---'), ...rows.slice(1)].map((r) => `| ${r.join(' | ')} |`).join('\n');
}

async function machine() {
  const v = async (cmd, args, re = /.*/) => {
    try {
      const r = await run(cmd, args);
      return (re.exec(r.stdout + r.stderr)?.[0] ?? '').trim();
    } catch {
      return null;
    }
  };
  let cpuModel = cpus()[0]?.model ?? '';
  return {
    hostname: hostname(),
    kernel: (await readFile('/proc/sys/kernel/osrelease', 'utf8')).trim(),
    os: (await v('sh', ['-c', '. /etc/os-release && echo "$PRETTY_NAME"'])) || null,
    cpus: cpus().length,
    cpuModel,
    memGiB: round(totalmem() / 2 ** 30, 1),
    node: process.version,
    nft: await v('nft', ['--version'], /v[\d.]+/),
    iperf3: await v('iperf3', ['--version'], /iperf [\d.]+/),
    socat: await v('socat', ['-V'], /socat version [\d.]+/),
    jq: await v('jq', ['--version']),
    inotifywait: await v('inotifywait', ['--help'], /inotifywait [\d.]+/),
    addrmapCommit: await v('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']),
    addrmapTreeDirty: ((await v('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src'])) ?? '') !== '',
    sea: existsSync(SEA) ? { path: 'out/addrmap', bytes: statSync(SEA).size, built: statSync(SEA).mtime.toISOString() } : null,
  };
}

async function main() {
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench: needs root (network namespaces, nftables)\n');
    process.exit(1);
  }
  installCleanup();
  const started = Date.now();
  if (!opts['no-setup'])
    await must('bash', [join(BENCH, 'setup.sh')]).catch((e) => {
      throw new Error(`tool setup failed: ${e.message}`);
    });
  if (!opts['no-build']) {
    log('building dist/addrmap.mjs');
    await must(NODE, [join(ROOT, 'packaging/build.mjs')]);
    // Rebuilt every full run, so the executable measured is the source measured.
    if (!QUICK && (only.includes('cold') || only.includes('memory'))) {
      log('building the standalone executable (npm run package)');
      const r = await run('npm', ['run', 'package'], { timeoutMs: 900_000 });
      if (r.code !== 0) log(`npm run package failed; the standalone executable is skipped: ${r.stderr.slice(-500)}`);
    }
  }
  const dir = await scratchDir();
  NETLOAD = join(dir, 'netload');
  await must('cc', ['-O2', '-o', NETLOAD, join(BENCH, 'netload.c')]);
  await removeStaleNamespaces();
  const info = await machine();
  const load = { start: loadavg().map((x) => round(x)) };
  log(
    `bench (${CONFIG.mode}) on ${info.cpus} x ${info.cpuModel}, ${info.memGiB} GiB, kernel ${info.kernel}, node ${info.node}, nft ${info.nft}; sections: ${only.join(', ')}`,
  );
  const sectionFns = {
    push: pushSection,
    scale: scaleSection,
    cold: coldSection,
    memory: memorySection,
    idle: idleSection,
    data: dataSection,
    conntrack: conntrackSection,
    guest: guestSection,
  };
  const timings = {};
  for (const section of SECTIONS.filter((s) => only.includes(s))) {
    const t = Date.now();
    await sectionFns[section]();
    timings[section] = round((Date.now() - t) / 1000, 1);
  }
  load.end = loadavg().map((x) => round(x));
  const rows = table();
  const result = {
    schema: 1,
    mode: CONFIG.mode,
    command: `npm run bench${QUICK ? ' -- --quick' : ''}${opts.only ? ` -- --only ${opts.only}` : ''}`,
    startedAt: new Date(started).toISOString(),
    durationSeconds: round((Date.now() - started) / 1000, 1),
    sectionSeconds: timings,
    machine: info,
    loadavg: load,
    config: CONFIG,
    figures,
    details,
  };
  await mkdir(dirname(OUT), { recursive: true });
  await writeFile(OUT, JSON.stringify(result, null, 2) + '\n');
  const md = `# addrmap benchmark results (${CONFIG.mode})\n\n${result.startedAt}, ${info.cpus} x ${info.cpuModel}, ${info.memGiB} GiB, kernel ${info.kernel}, Node ${info.node}, nft ${info.nft}, addrmap ${info.addrmapCommit}${info.addrmapTreeDirty ? ' (src modified)' : ''}. Command: \`${result.command}\`; ${result.durationSeconds} s; load average ${load.start.join(' ')} at the start, ${load.end.join(' ')} at the end.\n\n${markdown(rows)}\n\n${FOOTNOTE}\n`;
  await writeFile(OUT.replace(/\.json$/, '') + '.md', md);
  process.stdout.write('\n' + plain(rows) + '\n\n' + FOOTNOTE + '\n\n');
  process.stdout.write(`results: ${OUT} (and .md); ${result.durationSeconds} s\n`);
  await cleanupAll();
}

main().catch(async (e) => {
  process.stderr.write(`bench failed: ${e.stack ?? e}\n`);
  await cleanupAll();
  process.exit(1);
});
