// Runs code under test inside a lab's network namespace. In-process kernel
// clients (libnftables, netlink sockets) reach the namespace of the thread
// that opens them, and the test process stays in the machine's own; so a
// child started with `ip netns exec` holds them, and the test calls the
// functions a module exports, one JSON line per call and per answer.
//
// The module is bundled with esbuild (as the product is) into node_modules'
// cache, where the FFI addon resolves as it does for dist/addrmap.mjs.
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { build } from 'esbuild';
import { LineProc, ROOT, type Lab } from './lab.js';

const CACHE = join(ROOT, 'node_modules/.cache/addrmap-netns-worker');
const SERVE = join(ROOT, 'test/support/netns-serve.ts');

/** A failure inside the worker, with the fields the thrown error had (e.g. an NftError's kind). */
export class WorkerError extends Error {
  [field: string]: unknown;
}

export class NetnsWorker {
  private seq = 0;

  private constructor(private readonly proc: LineProc) {}

  /**
   * Starts `module` in namespace `ns` of `lab` (killed with the lab); resolves
   * once it serves. env: added to the test process's environment (a PATH
   * without some program, say).
   */
  static async start(lab: Lab, ns: string, module: string, opts: { env?: NodeJS.ProcessEnv } = {}): Promise<NetnsWorker> {
    const bundle = await bundleFor(module);
    const child = lab.spawnIn(ns, process.execPath, [bundle], opts.env ? { env: opts.env } : {});
    const proc = new LineProc(child, `worker ${module}`);
    await proc.waitLine((v) => v === 'serving', 30_000);
    return new NetnsWorker(proc);
  }

  /** Calls the module's export `fn` with JSON arguments; its result, or its error rethrown as a WorkerError. */
  async call<T = unknown>(fn: string, ...args: unknown[]): Promise<T> {
    const id = ++this.seq;
    const answer = this.proc.waitLine((v) => isAnswer(v) && v.id === id, 300_000);
    this.proc.child.stdin!.write(JSON.stringify({ id, fn, args }) + '\n');
    const { v } = await answer;
    const a = v as Answer;
    if (a.error) throw Object.assign(new WorkerError(String(a.error.message)), a.error);
    return a.result as T;
  }

  /** The worker's pid (in the machine's pid namespace: labs share it). */
  get pid(): number | undefined {
    return this.proc.pid;
  }

  async stop(): Promise<void> {
    this.proc.child.stdin!.end();
    await this.proc.stop();
  }
}

interface Answer {
  id: number;
  result?: unknown;
  error?: Record<string, unknown>;
}

const isAnswer = (v: unknown): v is Answer => typeof v === 'object' && v !== null && typeof (v as Answer).id === 'number';

const bundles = new Map<string, Promise<string>>();

function bundleFor(module: string): Promise<string> {
  let b = bundles.get(module);
  if (!b) {
    b = (async () => {
      await mkdir(CACHE, { recursive: true });
      const outfile = join(CACHE, `${createHash('sha256').update(module).digest('hex').slice(0, 16)}-${process.pid}.mjs`);
      await build({
        stdin: {
          contents: `import * as m from ${JSON.stringify(module)};\nimport { serve } from ${JSON.stringify(SERVE)};\nserve(m);\n`,
          resolveDir: ROOT,
          loader: 'ts',
        },
        outfile,
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node22',
        logLevel: 'warning',
        // CommonJS dependencies call require() for Node built-ins, as in packaging/build.mjs.
        banner: { js: "import { createRequire as __cr } from 'node:module';\nconst require = __cr(import.meta.url);" },
      });
      return outfile;
    })();
    bundles.set(module, b);
  }
  return b;
}
