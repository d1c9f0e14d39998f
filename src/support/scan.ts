// `addrmap scan`: where do files still name a stale address? Every occurrence
// of a mapped `from` address, in whatever textual form it was written, with
// file, line and column, so support can point at the config line to rewrite.
//
// Read-only by construction: files are opened O_RDONLY and nothing is written.
// Nothing found on disk is ever thrown at the caller; what could not be read is
// listed in ScanStats.skipped with the reason.
import { constants, type Stats } from 'node:fs';
import { lstat, open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { normalizeIp } from '../net/address.js';
import { prefixKey, prefixMovesOf } from '../net/prefix.js';
import { findAddresses } from './find-addresses.js';

export interface Occurrence {
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based, in UTF-16 code units of the decoded line (equal to the byte column on ASCII lines). */
  column: number;
  /** The matched text as written, e.g. "[FDAA:0:18::2]:5432". */
  text: string;
  /** Canonical stale address. */
  address: string;
  /** Where it maps now. */
  target: string;
  /** The prefix mapping ("network/length") it lies in, when no mapping names the address itself. */
  prefix?: string;
  /** The whole line, trimmed to at most 300 chars (a window around the match when longer). */
  lineText: string;
}

export interface ScanStats {
  /** Files read to the end. */
  files: number;
  skipped: { file: string; reason: string }[];
}

/** Files over this are listed as skipped, not read. */
export const MAX_FILE_BYTES = 64 * 1024 * 1024;
/** A NUL byte in this many leading bytes marks a file as binary. */
const BINARY_PROBE_BYTES = 8 * 1024;
/** Longest lineText. */
const MAX_LINE_TEXT = 300;

/**
 * Every occurrence of a key of `stale` in the files under `paths`.
 *
 * stale: canonical stale address -> canonical target (IPv4 and IPv6), or a
 * prefix mapping "network/length" -> "network/length", which covers every
 * address inside it (the longest prefix decides, as in the kernel). Keys are
 * normalised once more here, so a caller passing "FDAA::2" still finds it.
 *
 * Paths are taken in the order given. A path named here that is a symlink is
 * followed (like grep -r); inside directories, entries are taken in sorted
 * order (by UTF-16 code unit, so the same on every machine), symlinks to files
 * are read and symlinks to directories are not followed (listed as skipped), so
 * no link can make the walk loop. Only regular files are read: FIFOs, sockets
 * and devices are listed as skipped, never opened.
 *
 * Yields occurrences in file order, then line order, then column order.
 */
export async function* scanPaths(paths: string[], stale: ReadonlyMap<string, string>, stats?: ScanStats): AsyncGenerator<Occurrence> {
  const st = stats ?? { files: 0, skipped: [] };
  const keys = staleLookup(stale);
  for (const path of paths) {
    let info: Stats;
    try {
      info = await stat(path);
    } catch (e) {
      st.skipped.push({ file: path, reason: await statFailure(path, e) });
      continue;
    }
    if (info.isDirectory()) yield* walkDirectory(path, info, keys, st, new Set());
    else yield* scanFile(path, info, keys, st);
  }
}

type Lookup = (address: string) => { target: string; prefix?: string } | undefined;

/** Where a canonical address maps: its own mapping first, else the longest prefix mapping holding it. */
function staleLookup(stale: ReadonlyMap<string, string>): Lookup {
  const singles = new Map<string, string>();
  for (const [from, to] of stale) {
    if (from.includes('/')) continue;
    try {
      singles.set(normalizeIp(from), to);
    } catch {
      // Not an address at all: it simply never matches.
    }
  }
  const moves = prefixMovesOf(stale);
  return (address) => {
    const target = singles.get(address);
    if (target !== undefined) return { target };
    const inside = moves.lookup(address.includes(':') ? 6 : 4, address);
    return inside && { target: inside.to, prefix: prefixKey(inside.move.from, inside.move.length) };
  };
}

async function* walkDirectory(
  dir: string,
  info: Stats,
  keys: Lookup,
  st: ScanStats,
  ancestors: ReadonlySet<string>,
): AsyncGenerator<Occurrence> {
  // Symlinks are never followed below the top, but a bind mount can still
  // bring a directory back inside itself; the device/inode pair catches that.
  const id = `${info.dev}:${info.ino}`;
  if (ancestors.has(id)) {
    st.skipped.push({ file: dir, reason: 'directory loop (the directory contains itself); not followed' });
    return;
  }
  const inside = new Set(ancestors).add(id);
  let names: string[];
  try {
    names = (await readdir(dir)).sort(byCodeUnit);
  } catch (e) {
    st.skipped.push({ file: dir, reason: describeError(e) });
    return;
  }
  for (const name of names) {
    const path = join(dir, name);
    let link: Stats;
    try {
      link = await lstat(path);
    } catch (e) {
      // Removed while we were walking, or unreadable.
      st.skipped.push({ file: path, reason: describeError(e) });
      continue;
    }
    if (link.isDirectory()) {
      yield* walkDirectory(path, link, keys, st, inside);
    } else if (link.isSymbolicLink()) {
      let target: Stats;
      try {
        target = await stat(path);
      } catch (e) {
        st.skipped.push({ file: path, reason: await statFailure(path, e) });
        continue;
      }
      if (target.isDirectory()) st.skipped.push({ file: path, reason: 'symbolic link to a directory; not followed' });
      else yield* scanFile(path, target, keys, st);
    } else {
      yield* scanFile(path, link, keys, st);
    }
  }
}

async function* scanFile(file: string, seen: Stats, keys: Lookup, st: ScanStats): AsyncGenerator<Occurrence> {
  // Devices, FIFOs and sockets are never opened: opening some has effects
  // (a tape rewinds), and reading a FIFO can wait forever.
  if (!seen.isFile()) {
    st.skipped.push({ file, reason: `not a regular file (${fileKind(seen)})` });
    return;
  }
  let fh: FileHandle | undefined;
  let lineNo = 0;
  try {
    // O_NONBLOCK: should the path have become a FIFO since it was looked at,
    // opening it must not wait for a writer. The checks below use fstat on the
    // descriptor, so what is read is what was checked.
    try {
      fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
    } catch (e) {
      st.skipped.push({ file, reason: describeError(e) });
      return;
    }
    const info = await fh.stat();
    if (!info.isFile()) {
      st.skipped.push({ file, reason: `not a regular file (${fileKind(info)})` });
      return;
    }
    if (info.size > MAX_FILE_BYTES) {
      st.skipped.push({ file, reason: `larger than ${MAX_FILE_BYTES / 1024 / 1024} MiB (${info.size} bytes)` });
      return;
    }
    const probe = Buffer.alloc(BINARY_PROBE_BYTES);
    const { bytesRead } = await fh.read(probe, 0, probe.length, 0);
    if (probe.subarray(0, bytesRead).includes(0)) {
      st.skipped.push({ file, reason: `binary file (NUL byte in the first ${BINARY_PROBE_BYTES / 1024} KiB)` });
      return;
    }
    // Streamed line by line, so a big file is never held whole. `end` caps a
    // file that grows while it is read at the same limit.
    const stream = fh.createReadStream({ start: 0, end: MAX_FILE_BYTES - 1, encoding: 'utf8', autoClose: true });
    fh = undefined; // the stream owns and closes it now
    let streamError: Error | undefined;
    stream.on('error', (e) => {
      streamError = e;
    });
    // crlfDelay: Infinity makes "\r\n" one line break whatever the chunking.
    // (readline also ends a line at a lone "\r".)
    const rl = createInterface({ input: stream, crlfDelay: Infinity });
    try {
      for await (let line of rl) {
        lineNo++;
        if (lineNo === 1 && line.charCodeAt(0) === 0xfeff) line = line.slice(1); // UTF-8 byte order mark
        if (!line.includes(':') && !line.includes('.')) continue;
        for (const found of findAddresses(line)) {
          const hit = keys(found.address);
          if (!hit) continue;
          yield {
            file,
            line: lineNo,
            column: found.start + 1,
            text: found.text,
            address: found.address,
            ...hit,
            lineText: clipLine(line, found.start, found.text.length),
          };
        }
      }
    } finally {
      rl.close();
      stream.destroy();
    }
    if (streamError) throw streamError;
    st.files++;
  } catch (e) {
    st.skipped.push({ file, reason: lineNo > 0 ? `read failed after line ${lineNo}: ${describeError(e)}` : describeError(e) });
  } finally {
    await fh?.close().catch(() => {}); // the file is done with either way; a failed read is reported above
  }
}

/** The line itself when short; otherwise at most MAX_LINE_TEXT characters showing the match, "…" marking cuts. */
function clipLine(line: string, start: number, length: number): string {
  if (line.length <= MAX_LINE_TEXT) return line;
  if (start + length <= MAX_LINE_TEXT - 1) return safeSlice(line, 0, MAX_LINE_TEXT - 1) + '…';
  const from = start - Math.floor((MAX_LINE_TEXT - 2 - length) / 2);
  if (from + MAX_LINE_TEXT - 1 >= line.length) return '…' + safeSlice(line, line.length - (MAX_LINE_TEXT - 1), line.length);
  return '…' + safeSlice(line, from, from + MAX_LINE_TEXT - 2) + '…';
}

/** slice that does not cut a surrogate pair in half. */
function safeSlice(s: string, from: number, to: number): string {
  const isLow = (i: number) => i > 0 && i < s.length && s.charCodeAt(i) >= 0xdc00 && s.charCodeAt(i) <= 0xdfff;
  if (isLow(from)) from++;
  if (isLow(to)) to--;
  return s.slice(from, to);
}

// ---------------------------------------------------------------------------

function byCodeUnit(x: string, y: string): number {
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Why stat failed, telling a dangling symlink from a missing path. */
async function statFailure(path: string, e: unknown): Promise<string> {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT') {
    try {
      if ((await lstat(path)).isSymbolicLink()) return 'dangling symbolic link (its target does not exist)';
    } catch {
      // fall through: the path itself is missing
    }
  }
  return describeError(e);
}

function describeError(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  switch (err?.code) {
    case 'ENOENT':
      return 'no such file or directory';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ELOOP':
      return 'symbolic link loop';
    case 'ENOTDIR':
      return 'not a directory (a path component is a file)';
    case 'EAGAIN':
    case 'EWOULDBLOCK':
      return 'not readable without waiting';
    default:
      // Node's messages already start with the code: "EIO: i/o error, read".
      if (err?.code && typeof err.message === 'string')
        return err.message.startsWith(err.code) ? err.message : `${err.code}: ${err.message}`;
      return String(err?.message ?? e);
  }
}

function fileKind(info: Stats): string {
  if (info.isFIFO()) return 'FIFO';
  if (info.isSocket()) return 'socket';
  if (info.isCharacterDevice()) return 'character device';
  if (info.isBlockDevice()) return 'block device';
  if (info.isDirectory()) return 'directory';
  return 'special file';
}
