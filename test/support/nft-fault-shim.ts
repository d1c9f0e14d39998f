// The fault-injecting libnftables (nft-fault-shim.c) for tests: compiled with
// the machine's cc at test time, and the environment that makes an agent (or
// a netns worker) load it in place of the real library, with a fault file the
// test rewrites while the agent runs.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT, run, writeAtomically } from './lab.js';

const SOURCE = join(ROOT, 'test/support/nft-fault-shim.c');
// Labs come and go within a run; the library, named by its source's hash, is built once for all of them.
const CACHE = join(ROOT, 'node_modules/.cache/addrmap-nft-fault-shim');

/** What the shim reads its fault from (see nft-fault-shim.c for the faults). */
const FAULT_ENV = 'ADDRMAP_TEST_NFT_FAULT';

let built: Promise<string> | undefined;

/** The shim's path, compiled on first use. */
function faultShim(): Promise<string> {
  return (built ??= build());
}

async function build(): Promise<string> {
  const hash = createHash('sha256')
    .update(await readFile(SOURCE))
    .digest('hex')
    .slice(0, 16);
  const out = join(CACHE, `nft-fault-shim-${hash}.so`);
  if (existsSync(out)) return out;
  await mkdir(CACHE, { recursive: true });
  // Another test process may build it at the same time: each writes its own file, renamed into place whole.
  const tmp = `${out}.${process.pid}`;
  const r = await run('cc', ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-Werror', '-o', tmp, SOURCE, '-ldl']);
  if (r.code !== 0) throw new Error(`cc ${SOURCE} (test/host-setup.sh test installs a compiler): ${r.stderr.trim()}`);
  await rename(tmp, out);
  return out;
}

export interface FaultyLibrary {
  /** For the agent's (or a worker's) environment: ADDRMAP_LIBNFTABLES and the fault file. */
  env: NodeJS.ProcessEnv;
  /** Sets the fault: 'no-nat', 'fail-batch', 'fail-batch N', or 'none'. */
  setFault: (fault: string) => Promise<void>;
}

/** The shim with its fault file in `dir` (a lab's), passing through until told otherwise. */
export async function faultyLibrary(dir: string): Promise<FaultyLibrary> {
  const faultFile = join(dir, 'nft-fault');
  // Whole or not at all: the shim reads the file at every command, also while it is written.
  const setFault = (fault: string) => writeAtomically(faultFile, `${fault}\n`);
  await setFault('none');
  return { env: { ADDRMAP_LIBNFTABLES: await faultShim(), [FAULT_ENV]: faultFile }, setFault };
}
