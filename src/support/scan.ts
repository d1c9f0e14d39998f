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
import { normalizeIp, unmapIpv4 } from '../net/address.js';

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
 * stale: canonical stale address -> canonical target (IPv4 and IPv6). Keys are
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
  const keys = new Map<string, string>();
  for (const [from, to] of stale) {
    let key = from;
    try {
      key = normalizeIp(from);
    } catch {
      // Not an address at all; kept as given, it simply never matches.
    }
    keys.set(key, to);
  }
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

async function* walkDirectory(
  dir: string,
  info: Stats,
  keys: ReadonlyMap<string, string>,
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

async function* scanFile(file: string, seen: Stats, keys: ReadonlyMap<string, string>, st: ScanStats): AsyncGenerator<Occurrence> {
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
          const target = keys.get(found.address);
          if (target === undefined) continue;
          yield {
            file,
            line: lineNo,
            column: found.start + 1,
            text: found.text,
            address: found.address,
            target,
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

// ---------------------------------------------------------------------------
// Finding addresses in a line
//
// A candidate is a maximal run of the characters addresses are made of
// ([0-9A-Fa-f.:]). Taking maximal runs, never substrings, is what keeps
// "11.2.3.4" from matching 1.2.3.4 and "1:fdaa::2" from matching fdaa::2.
//
// A run touching a letter, digit or "_" on either side is part of a longer word
// ("v1.2.3.4", "0x1.2.3.4", "fdaa::2g") and does not count as a whole, except
// that a single ":" at either end is a separator ("host:1.2.3.4",
// "fdaa::2: up") and dots at either end next to non-word characters are
// punctuation ("reach 1.2.3.4.").
//
// A run is then read as, in order:
//   1. an IPv4 dotted quad, "1.2.3.4" (no leading zeros: "010.0.0.1" means
//      8.0.0.1 to inet_aton and 10.0.0.1 elsewhere, so it is not guessed at);
//   2. a dotted quad with a port, "1.2.3.4:5432";
//   3. an IPv6 address in any valid spelling (compressed, expanded, leading
//      zeros, any case, IPv4-embedded "fd00::10.0.0.1" or "::ffff:1.2.3.4"),
//      then widened to include a zone ("%eth0", or "%25eth0" in URLs) and
//      surrounding brackets with an optional port ("[fdaa::2]:5432"). An
//      unbracketed "fdaa::2:5432" is ambiguous and is taken as the address
//      fdaa::2:5432, as every IPv6 parser would; only when the run is not an
//      address but its part before the last ":" is a full eight-group address
//      ("fdaa:0:0:0:0:0:0:2:5432") is the tail read as a port;
//   4. failing those, the run's ":"-separated parts are looked at one by one
//      for dotted quads ("udp:1.2.3.4:53", "abc:1.2.3.4"); a part at an edge
//      touching a word counts as part of that word.
//
// Each candidate is canonicalised with normalizeIp, and an IPv4-mapped IPv6
// address ("::ffff:1.2.3.4", "::ffff:102:304") is read as the IPv4 address it
// puts on the wire (unmapIpv4): it matches the IPv4 key 1.2.3.4, as the kernel
// translates it, and its embedded quad is not reported a second time. A MAC address ("aa:bb:cc:dd:ee:ff", six groups) or
// a lone "dead:beef" is not a valid IPv6 address, so it yields nothing.
// ---------------------------------------------------------------------------

export interface FoundAddress {
  /** 0-based index in the line of the first character of `text`. */
  start: number;
  /** As written, including brackets, zone and port when present. */
  text: string;
  /** normalizeIp of the address part. */
  address: string;
}

const RUN = /[0-9A-Fa-f.:]+/g;
const WORD_CHAR = /[\p{L}\p{N}\p{M}_]/u;
const QUAD_SHAPE = /^\d{1,3}(?:\.\d{1,3}){3}$/;
const QUAD_PORT = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/;
const ZONE = /%[0-9A-Za-z_.~-]+/y;
const BRACKET_PORT = /:(\d{1,5})(?!\d)/y;
/** Longest IPv6 text: eight groups with an embedded quad, "0000:…:255.255.255.255". */
const MAX_V6_TEXT = 45;

/** Finds candidate addresses in one line; exported for tests. Sorted by start. */
export function findAddresses(line: string): FoundAddress[] {
  const out: FoundAddress[] = [];
  RUN.lastIndex = 0;
  for (let m = RUN.exec(line); m !== null; m = RUN.exec(line)) {
    const run = m[0];
    if (!run.includes(':') && !run.includes('.')) continue;
    let a = m.index;
    let b = a + run.length;
    const end = b;
    let leftWord = a > 0 && isWordChar(line, a - 1);
    let rightWord = b < line.length && isWordChar(line, b);

    if (line[a] === ':' && line[a + 1] !== ':') {
      a++;
      leftWord = false;
    } else if (line[a] === '.' && !leftWord) {
      while (a < b && line[a] === '.') a++;
    }
    if (b > a && line[b - 1] === ':' && line[b - 2] !== ':') {
      b--;
      rightWord = false;
    } else if (b > a && line[b - 1] === '.' && !rightWord) {
      while (b > a && line[b - 1] === '.') b--;
    }
    if (a >= b) continue;

    const whole = leftWord || rightWord ? null : readWhole(line, a, b, b === end);
    if (whole) out.push(whole);
    else out.push(...readParts(line, a, b, leftWord, rightWord));
  }
  return out;
}

function readWhole(line: string, a: number, b: number, atRunEnd: boolean): FoundAddress | null {
  const core = line.slice(a, b);
  if (!core.includes(':')) {
    if (!QUAD_SHAPE.test(core)) return null;
    const address = tryNormalize(core);
    return address === null ? null : { start: a, text: core, address };
  }
  const withPort = QUAD_PORT.exec(core);
  if (withPort) {
    const address = tryNormalize(withPort[1]!);
    return address !== null && Number(withPort[2]) <= 65535 ? { start: a, text: core, address } : null;
  }
  if (core.length > MAX_V6_TEXT + 6 || !/[0-9A-Fa-f]/.test(core)) return null;
  const address = core.length <= MAX_V6_TEXT ? tryNormalize(core) : null;
  if (address !== null) {
    let start = a;
    let stop = b;
    if (atRunEnd && line[stop] === '%') {
      ZONE.lastIndex = stop;
      if (ZONE.exec(line)) stop = ZONE.lastIndex;
    }
    if (line[start - 1] === '[' && line[stop] === ']') {
      start--;
      stop++;
      BRACKET_PORT.lastIndex = stop;
      const port = BRACKET_PORT.exec(line);
      if (port && Number(port[1]) <= 65535) stop = BRACKET_PORT.lastIndex;
    }
    return { start, text: line.slice(start, stop), address };
  }
  // Not an address as a whole; a full eight-group address followed by ":port"
  // is the one unambiguous unbracketed form with a port.
  const colon = core.lastIndexOf(':');
  const head = core.slice(0, colon);
  const tail = core.slice(colon + 1);
  if (/^\d{1,5}$/.test(tail) && Number(tail) <= 65535 && !head.includes('::') && head.split(':').length === 8) {
    const headAddress = tryNormalize(head);
    if (headAddress !== null) return { start: a, text: core, address: headAddress };
  }
  return null;
}

function readParts(line: string, a: number, b: number, leftWord: boolean, rightWord: boolean): FoundAddress[] {
  const core = line.slice(a, b);
  if (!core.includes('.')) return [];
  const out: FoundAddress[] = [];
  const parts = core.split(':');
  let offset = a;
  parts.forEach((part, i) => {
    const partStart = offset;
    offset += part.length + 1;
    if ((i === 0 && leftWord) || (i === parts.length - 1 && rightWord)) return;
    if (!QUAD_SHAPE.test(part)) return;
    const address = tryNormalize(part);
    if (address === null) return;
    let text = part;
    const next = parts[i + 1];
    // A port only as the last part, so "1.2.3.4:80:x" is not read as a port.
    if (next !== undefined && i + 1 === parts.length - 1 && !rightWord && /^\d{1,5}$/.test(next) && Number(next) <= 65535) {
      text = `${part}:${next}`;
    }
    out.push({ start: partStart, text, address });
  });
  return out;
}

function tryNormalize(text: string): string | null {
  try {
    return unmapIpv4(normalizeIp(text));
  } catch {
    return null;
  }
}

function isWordChar(line: string, i: number): boolean {
  // Whole code point, so a letter outside the BMP is seen as a letter.
  const cp = line.codePointAt(i);
  if (cp === undefined) return false;
  if (cp >= 0xdc00 && cp <= 0xdfff && i > 0) return WORD_CHAR.test(String.fromCodePoint(line.codePointAt(i - 1)!));
  return WORD_CHAR.test(String.fromCodePoint(cp));
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
