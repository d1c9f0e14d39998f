// Byte-level helpers for reparse.ts: where two files first and last differ,
// and where JSON values start and end. They read UTF-8 bytes: every byte
// that matters to JSON's structure is ASCII, and no byte of a multi-byte
// character is, so no character is ever split.

export type Spans = Int32Array;

const CHUNK = 4096;

/** The first offset from (aFrom, bFrom) at which a and b differ, as an offset into a. */
export function firstDifference(a: Uint8Array, b: Uint8Array, aFrom: number, bFrom: number): number {
  const max = Math.min(a.length - aFrom, b.length - bFrom);
  let k = 0;
  // Whole chunks compare natively; the byte loop runs inside one chunk only.
  while (k + CHUNK <= max && Buffer.compare(a.subarray(aFrom + k, aFrom + k + CHUNK), b.subarray(bFrom + k, bFrom + k + CHUNK)) === 0)
    k += CHUNK;
  while (k < max && a[aFrom + k] === b[bFrom + k]) k++;
  return aFrom + k;
}

/** How many bytes a and b have in common at their ends, at most `max`. */
export function lastDifference(a: Uint8Array, b: Uint8Array, max: number): number {
  max = Math.min(max, a.length, b.length);
  let k = 0;
  while (
    k + CHUNK <= max &&
    Buffer.compare(a.subarray(a.length - k - CHUNK, a.length - k), b.subarray(b.length - k - CHUNK, b.length - k)) === 0
  )
    k += CHUNK;
  while (k < max && a[a.length - 1 - k] === b[b.length - 1 - k]) k++;
  return k;
}

const isSpace = (c: number | undefined) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

export function skipSpace(b: Uint8Array, i: number): number {
  while (isSpace(b[i])) i++;
  return i;
}

/** The end of the string starting at i (just past its closing quote), or -1. */
function scanString(b: Uint8Array, i: number): number {
  for (i++; i < b.length; i++) {
    const c = b[i];
    if (c === 0x22) return i + 1;
    if (c === 0x5c) i++;
  }
  return -1;
}

/** The end of the JSON value starting at i (just past it), or -1 when there is none. */
export function scanValue(b: Uint8Array, i: number): number {
  const c = b[i];
  if (c === 0x22) return scanString(b, i);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    for (; i < b.length; i++) {
      const d = b[i];
      if (d === 0x22) {
        i = scanString(b, i) - 1;
        if (i < 0) return -1;
      } else if (d === 0x7b || d === 0x5b) depth++;
      else if (d === 0x7d || d === 0x5d) {
        if (--depth === 0) return i + 1;
      }
    }
    return -1;
  }
  // A number or a literal: up to the next delimiter.
  const start = i;
  while (i < b.length && !isSpace(b[i]) && b[i] !== 0x2c && b[i] !== 0x7d && b[i] !== 0x5d) i++;
  return i > start ? i : -1;
}

/**
 * Just past the "[" of the list under `key` in the top-level object, or -1
 * (no such list, a key written with escapes, or not an object). Reads only
 * what stands before the list.
 */
export function topLevelList(b: Uint8Array, key: string): number {
  let i = skipSpace(b, 0);
  if (b[i] !== 0x7b) return -1;
  i = skipSpace(b, i + 1);
  const want = Buffer.from(`"${key}"`);
  for (;;) {
    if (b[i] !== 0x22) return -1;
    const end = scanString(b, i);
    if (end < 0) return -1;
    const isKey = end - i === want.length && Buffer.compare(b.subarray(i, end), want) === 0;
    i = skipSpace(b, end);
    if (b[i] !== 0x3a) return -1;
    i = skipSpace(b, i + 1);
    if (isKey) return b[i] === 0x5b ? i + 1 : -1;
    i = scanValue(b, i);
    if (i < 0) return -1;
    i = skipSpace(b, i);
    if (b[i] !== 0x2c) return -1;
    i = skipSpace(b, i + 1);
  }
}
