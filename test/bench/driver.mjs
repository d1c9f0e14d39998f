// Runs inside the guest namespace for the push benchmarks. It does the
// measured step itself (the rename of a staged mapping file, or starting a
// command) and then connects to the stale address until a connection
// succeeds, so both ends of the measurement are taken by one process on one
// clock, with no process start in between. One JSON command per stdin line,
// one JSON answer per stdout line:
//   {"id":1,"op":"push","tmp":T,"dst":D,"host":H,"port":P}     rename T over D, probe H:P
//   {"id":2,"op":"exec","argv":[...],"host":H,"port":P}        start argv, probe H:P
//   {"id":3,"op":"probe","host":H,"port":P}                    one connection attempt
// Answers: {"id":1,"ms":first success after the step,"attempts":n,"exitMs":..} or {"id":1,"error":"..."}
import net from 'node:net';
import { renameSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const now = () => Number(process.hrtime.bigint()) / 1e6;
const print = (o) => process.stdout.write(JSON.stringify(o) + '\n');

/** One connection attempt: 'ok', or the error code. */
function attempt(host, port, timeoutMs = 300) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      resolve('ETIMEDOUT');
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve('ok');
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      resolve(e.code ?? e.message);
    });
  });
}

/** Attempts until one succeeds; a refused attempt is retried after intervalMs. */
async function probeUntil(host, port, t0, { intervalMs = 1, timeoutMs = 60_000 } = {}) {
  let attempts = 0;
  let last = '';
  while (now() - t0 < timeoutMs) {
    attempts++;
    last = await attempt(host, port);
    if (last === 'ok') return { ms: now() - t0, attempts };
    if (intervalMs > 0) await new Promise((r) => setTimeout(r, intervalMs));
    else await new Promise((r) => setImmediate(r));
  }
  throw new Error(`${host} port ${port} not reachable within ${timeoutMs} ms after ${attempts} attempts (last: ${last})`);
}

async function handle(msg) {
  const { host, port } = msg;
  if (msg.op === 'probe') return { result: await attempt(host, port, msg.timeoutMs ?? 300) };
  // Before the step the stale address must be refused, or the measurement means nothing.
  const before = await attempt(host, port);
  if (before === 'ok') throw new Error(`${host} already reachable before the step`);
  if (msg.op === 'push') {
    const t0 = now();
    renameSync(msg.tmp, msg.dst);
    return { ...(await probeUntil(host, port, t0, msg)), t0, before };
  }
  if (msg.op === 'exec') {
    const t0 = now();
    const child = spawn(msg.argv[0], msg.argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise((r) => child.on('close', (code) => r({ code, exitMs: now() - t0 })));
    const probed = await probeUntil(host, port, t0, msg);
    const { code, exitMs } = await exited;
    if (code !== 0) throw new Error(`${msg.argv.join(' ')} exited ${code}: ${stderr.trim()}`);
    return { ...probed, exitMs, t0, before };
  }
  throw new Error(`unknown op ${msg.op}`);
}

// Commands run one at a time, in order.
let chain = Promise.resolve();
createInterface({ input: process.stdin }).on('line', (line) => {
  const msg = JSON.parse(line);
  chain = chain.then(() =>
    handle(msg).then(
      (r) => print({ id: msg.id, ...r }),
      (e) => print({ id: msg.id, error: e.message }),
    ),
  );
});
process.stdin.on('end', () => chain.then(() => process.exit(0)));
