// Reading a file that decides where root's traffic goes. The file, and every
// directory on the way to it, must be owned by root (or by the user addrmap
// runs as) and not writable by anyone else; no symlink may be on the path.
// Otherwise someone other than the control plane could have written it. The
// checks use lstat on the directories and fstat on the opened descriptor, so
// the content read is the content checked.
import { constants } from 'node:fs';
import { lstat, open } from 'node:fs/promises';
import { dirname, resolve, sep } from 'node:path';

export class UntrustedFileError extends Error {}

/**
 * The machine, not the file: out of descriptors or memory. The pass fails
 * and is retried; the file is not refused for it.
 */
export class ResourceError extends Error {}

const RESOURCE_CODES = new Set(['EMFILE', 'ENFILE', 'ENOMEM', 'EAGAIN', 'EINTR', 'ENOBUFS']);

/** Rethrows a shortage of the machine's resources as a ResourceError. */
function resourceShortage(path: string, e: unknown): void {
  const code = (e as NodeJS.ErrnoException).code;
  if (code && RESOURCE_CODES.has(code)) throw new ResourceError(`${path}: cannot read now (${code}); will retry`);
}

export interface TrustPolicy {
  /** Largest file accepted, checked before anything is parsed. */
  maxBytes: number;
  /** Owners trusted besides root. */
  extraOwners?: number[];
}

/** The default size cap: 100k mappings in pretty-printed JSON take about 12 MiB. */
export const DEFAULT_MAX_BYTES = 32 * 1024 * 1024;

/** The file's text, or null when it does not exist. */
export async function readTrustedFile(path: string, policy: TrustPolicy): Promise<string | null> {
  return (await readTrustedBytes(path, policy))?.toString('utf8') ?? null;
}

/**
 * The file's bytes, or null when it does not exist. `into`: a buffer this
 * function returned before that nothing uses any more, read into again when
 * the file fits (a push of a large file then allocates nothing).
 */
export async function readTrustedBytes(path: string, policy: TrustPolicy, into?: Buffer | null): Promise<Buffer | null> {
  const abs = resolve(path);
  const owners = new Set([0, ...(policy.extraOwners ?? [])]);
  const who = (uid: number) => (uid === 0 ? 'root' : `uid ${uid}`);

  for (const dir of ancestors(abs)) {
    let st;
    try {
      st = await lstat(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      resourceShortage(path, e);
      throw new UntrustedFileError(`${path}: cannot inspect ${dir}: ${(e as Error).message}`);
    }
    if (st.isSymbolicLink()) throw new UntrustedFileError(`${path}: reached through the symlink ${dir}`);
    if (!st.isDirectory()) throw new UntrustedFileError(`${path}: ${dir} is not a directory`);
    if (!owners.has(st.uid)) throw new UntrustedFileError(`${path}: directory ${dir} is owned by ${who(st.uid)}, not root`);
    // A sticky world-writable directory (/tmp) lets no one replace root's files.
    if (st.mode & 0o022 && !(st.mode & 0o1000)) {
      throw new UntrustedFileError(`${path}: directory ${dir} is writable by group or others (mode ${mode(st.mode)})`);
    }
  }

  let fh;
  try {
    // O_NOFOLLOW: the file itself must not be a symlink. O_NONBLOCK: a FIFO
    // planted in its place must not hang the agent.
    fh = await open(abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP') throw new UntrustedFileError(`${path}: is a symlink`);
    resourceShortage(path, e);
    throw new UntrustedFileError(`${path}: cannot open: ${(e as Error).message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new UntrustedFileError(`${path}: not a regular file`);
    if (!owners.has(st.uid)) throw new UntrustedFileError(`${path}: owned by ${who(st.uid)}, not root`);
    if (st.mode & 0o022) throw new UntrustedFileError(`${path}: writable by group or others (mode ${mode(st.mode)})`);
    if (st.size > policy.maxBytes) throw new UntrustedFileError(`${path}: ${st.size} bytes is over the ${policy.maxBytes}-byte limit`);
    // Read at most one byte past the cap, in case the file grows under us.
    // Unzeroed: only the bytes read are ever looked at, and zeroing a large
    // file's buffer on every push costs as much as reading it. Never from
    // Node's shared pool, so that a buffer handed back as `into` is ours alone.
    const want = Math.min(st.size, policy.maxBytes) + 1;
    const spare = into ? Buffer.from(into.buffer, 0, into.buffer.byteLength) : null;
    const buf = spare && spare.length >= want ? spare.subarray(0, want) : Buffer.allocUnsafeSlow(want);
    let len = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, len, buf.length - len, len);
      if (bytesRead === 0) break;
      len += bytesRead;
      if (len === buf.length) {
        if (len > policy.maxBytes) throw new UntrustedFileError(`${path}: grew past the ${policy.maxBytes}-byte limit while being read`);
        break;
      }
    }
    return buf.subarray(0, len);
  } finally {
    await fh.close();
  }
}

function ancestors(abs: string): string[] {
  const out: string[] = [];
  for (let d = dirname(abs); ; d = dirname(d)) {
    out.unshift(d);
    if (d === sep || d === dirname(d)) break;
  }
  return out;
}

const mode = (m: number) => (m & 0o7777).toString(8).padStart(4, '0');
