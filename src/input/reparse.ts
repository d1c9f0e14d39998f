// A push usually changes a few mappings of a large file. Parsing it whole
// costs the file (at 100k mappings a quarter of a second of CPU); this module
// compares the new bytes with the last parsed file's, finds the entries of the
// mappings list the change touches (whole entries, by their byte spans), and
// parses and checks only those. Every check that spans the whole set
// (duplicates, the size limit) is made against indexes kept from the last
// parse. Whatever is unusual (a change outside the mappings list, a prefix
// mapping, a repeat, anything the checks would refuse) is parsed whole, so a
// refusal always names the same entry with the same words as a whole parse:
// the fast path only ever produces what a whole parse would.
import { strictJsonProblem } from './strict-json.js';
import {
  checkMapping,
  checkSchema,
  parseIndexed,
  MappingFileError,
  type Mapping,
  type MappingFile,
  type ParseOptions,
  type RawMapping,
} from './mapping-file.js';
import { firstDifference, lastDifference, scanValue, skipSpace, topLevelList, type Spans } from './json-spans.js';

/** Mappings a file may hold (the schema's maxItems). */
const MAX_MAPPINGS = 200_000;

/** What the last parse knew, kept to parse the next file by its difference. */
export interface ParsedBytes {
  bytes: Buffer;
  file: MappingFile;
  options: ParseOptions;
  /** Byte offsets of each entry of the mappings list: start at 2i, end at 2i+1. */
  spans: Int32Array;
  /** Just after the list's "[", and at its "]". */
  listStart: number;
  listEnd: number;
  /** The document without its mappings: what the schema checks beside them. */
  head: Record<string, unknown>;
  byFrom: Map<string, Mapping>;
  /** How many mappings lead to each address: an address someone leads to is part of a chain. */
  targets: Map<string, number>;
  /** How many mappings have an expiry: with none, no pass needs to look for expired ones. */
  expiring: number;
}

/** The change from the file parsed before, in the mappings list's order. */
export interface FileDelta {
  removed: readonly Mapping[];
  added: readonly Mapping[];
}

export interface Reparsed {
  file: MappingFile;
  /** What changed against `base`; null when there was no base to compare with (parsed whole). */
  delta: FileDelta | null;
  /** For the next file; null when this one is not suited to parsing by difference. */
  memory: ParsedBytes | null;
}

/**
 * Parses `bytes` (refusing it as parseMappingFile would), by difference from
 * `base` when it can. `base` is taken over: after this call only the returned
 * memory is valid.
 */
export function reparse(bytes: Buffer, base: ParsedBytes | null, options: ParseOptions, o: { remember?: boolean } = {}): Reparsed {
  if (base && sameTargets(base.options, options)) {
    const r = byDifference(bytes, base);
    if (r) return r;
  }
  return whole(bytes, options, o.remember ?? true);
}

/** The config is read on every pass: its target ranges are compared by value. */
function sameTargets(a: ParseOptions, b: ParseOptions): boolean {
  const x = a.allowedTargets;
  const y = b.allowedTargets;
  return x === y || (x.length === y.length && x.every((p, k) => p.text === y[k]!.text));
}

function whole(bytes: Buffer, options: ParseOptions, keep: boolean): Reparsed {
  const { file, byFrom, repeats, head } = parseIndexed(bytes.toString('utf8'), options);
  return { file, delta: null, memory: keep && !repeats ? remember(bytes, head, file, byFrom, options) : null };
}

/** The indexes for parsing the next file by difference; null for files the fast path does not take. */
function remember(
  bytes: Buffer,
  head: Record<string, unknown>,
  file: MappingFile,
  byFrom: Map<string, Mapping>,
  options: ParseOptions,
): ParsedBytes | null {
  if (file.mappings.some((m) => m.prefixLength !== undefined)) return null;
  const listStart = topLevelList(bytes, 'mappings');
  if (listStart < 0) return null;
  const spans = entrySpans(bytes, listStart, file.mappings.length);
  if (!spans) return null;
  const targets = new Map<string, number>();
  let expiring = 0;
  for (const m of file.mappings) {
    targets.set(m.to, (targets.get(m.to) ?? 0) + 1);
    if (m.expires !== undefined) expiring++;
  }
  return { bytes, file, options, spans: spans.spans, listStart, listEnd: spans.end, head, byFrom, targets, expiring };
}

/** Spans of `count` values from `start`, and where the list ends; null when the list holds another number of values. */
function entrySpans(b: Uint8Array, start: number, count: number): { spans: Int32Array; end: number } | null {
  const spans = new Int32Array(count * 2);
  let i = skipSpace(b, start);
  for (let k = 0; k < count; k++) {
    if (k > 0) {
      if (b[i] !== 0x2c) return null;
      i = skipSpace(b, i + 1);
    }
    const end = scanValue(b, i);
    if (end < 0) return null;
    spans[2 * k] = i;
    spans[2 * k + 1] = end;
    i = skipSpace(b, end);
  }
  return b[i] === 0x5d ? { spans, end: i } : null;
}

function byDifference(b: Buffer, base: ParsedBytes): Reparsed | null {
  const a = base.bytes;
  if (a.equals(b)) return { file: base.file, delta: { removed: [], added: [] }, memory: base };
  const n = base.file.mappings.length;
  const spans = base.spans;

  // Where the list starts in the new file: the same place unless the part
  // before it changed (the generation always does).
  let head = base.head;
  let listStart = base.listStart;
  const prefix = firstDifference(a, b, 0, 0);
  if (prefix < base.listStart) {
    listStart = topLevelList(b, 'mappings');
    if (listStart < 0) return null;
  }
  const shift = listStart - base.listStart;
  const changeStart = firstDifference(a, b, base.listStart, listStart); // in a
  // Entries i..j-1 of the old list are replaced by what stands between entry
  // i-1's end and entry j's start in the new file (from..to).
  let i = n;
  let j = n;
  let from = 0;
  let growth = shift;
  let values: unknown[] = [];
  let headChanged = prefix < base.listStart;
  if (changeStart > base.listEnd) {
    // The list is as it was, its closing bracket included: what changed is
    // the head or what follows the list, read again below.
    headChanged = true;
  } else {
    // The common tail, not reaching back into what the head already matched.
    const tail = lastDifference(a, b, Math.min(a.length - changeStart, b.length - (changeStart + shift)));
    const changeEnd = a.length - tail; // in a
    growth = b.length - a.length;
    // A change after the list (its closing bracket included) is parsed whole.
    if (changeEnd > base.listEnd) return null;
    i = firstEndingAfter(spans, n, changeStart);
    j = i;
    while (j < n && spans[2 * j]! < changeEnd) j++;
    from = (i > 0 ? spans[2 * i - 1]! : base.listStart) + shift;
    const to = (j < n ? spans[2 * j]! : base.listEnd) + growth;
    if (to < from) return null;
    // The replaced part, between stand-ins for its unchanged neighbours: it is
    // valid in place exactly when it is valid here, since "null" ends a value
    // as a closing brace does and cannot run into what follows.
    const part = b.toString('utf8', from, to);
    const wrapped = `[${i > 0 ? 'null' : ''}${part}${j < n ? 'null' : ''}]`;
    if (strictJsonProblem(wrapped)) return null;
    try {
      values = JSON.parse(wrapped) as unknown[];
    } catch {
      return null;
    }
    if (i > 0 && values.shift() !== null) return null;
    if (j < n && values.pop() !== null) return null;
    if (n - (j - i) + values.length > MAX_MAPPINGS) return null;
  }
  const listEnd = base.listEnd + growth; // in b

  if (headChanged) {
    // Read the head (and what follows the list) again, with an empty list in place of the old.
    const around = `${b.toString('utf8', 0, listStart)}${b.toString('utf8', listEnd)}`;
    if (strictJsonProblem(around)) return null;
    try {
      head = JSON.parse(around) as Record<string, unknown>;
    } catch {
      return null;
    }
    if (typeof head !== 'object' || head === null || !Array.isArray(head.mappings) || head.mappings.length) return null;
    const { mappings: _, ...rest } = head;
    if (JSON.stringify(rest.self) !== JSON.stringify(base.head.self)) return null;
    head = rest;
  }
  try {
    checkSchema({ ...head, mappings: values });
  } catch {
    return null;
  }
  if (head.version !== 1) return null;

  // The new entries one by one, then against everything else in the file.
  const removed = base.file.mappings.slice(i, j);
  const added: Mapping[] = [];
  const keys: string[] = [];
  try {
    for (let k = 0; k < values.length; k++) {
      const { key, mapping } = checkMapping(`mappings[${i + k}]`, values[k] as RawMapping, base.options.allowedTargets);
      if (mapping.prefixLength !== undefined) return null;
      added.push(mapping);
      keys.push(key);
    }
  } catch (e) {
    if (e instanceof MappingFileError) return null;
    throw e;
  }
  const byFrom = base.byFrom;
  const leaving = new Set(removed);
  const seen = new Set<string>();
  for (const key of keys) {
    const have = byFrom.get(key);
    // A duplicate or a repeat: a whole parse words the refusal (or keeps the repeat).
    if ((have && !leaving.has(have)) || seen.has(key)) return null;
    seen.add(key);
  }

  const newSpans = spansAfter(b, spans, i, j, from, values.length, shift, growth);
  if (!newSpans) return null;
  for (const m of removed) {
    byFrom.delete(m.from);
    const left = (base.targets.get(m.to) ?? 1) - 1;
    if (left) base.targets.set(m.to, left);
    else base.targets.delete(m.to);
  }
  for (const m of added) {
    byFrom.set(m.from, m);
    base.targets.set(m.to, (base.targets.get(m.to) ?? 0) + 1);
  }
  let expiring = base.expiring;
  for (const m of removed) if (m.expires !== undefined) expiring--;
  for (const m of added) if (m.expires !== undefined) expiring++;
  const mappings = base.file.mappings.slice(0, i).concat(added, base.file.mappings.slice(j));
  const generation = head.generation as number;
  const file: MappingFile = base.file.self ? { generation, mappings, self: base.file.self } : { generation, mappings };
  const memory: ParsedBytes = {
    ...base,
    bytes: b,
    file,
    spans: newSpans,
    listStart,
    listEnd,
    head,
    expiring,
  };
  return { file, delta: { removed, added }, memory };
}

/** The first entry whose span ends after `offset` (n when none does): spans are in file order. */
function firstEndingAfter(spans: Spans, n: number, offset: number): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (spans[2 * mid + 1]! <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The entry spans of the new file: those before i moved with the list's start
 * (`shift`), the new ones found at `from`, those from j moved by `growth`.
 */
function spansAfter(
  b: Uint8Array,
  old: Spans,
  i: number,
  j: number,
  from: number,
  count: number,
  shift: number,
  growth: number,
): Int32Array | null {
  const n = old.length / 2;
  const out = new Int32Array((n - (j - i) + count) * 2);
  if (shift) for (let k = 0; k < 2 * i; k++) out[k] = old[k]! + shift;
  else out.set(old.subarray(0, 2 * i));
  let pos = from;
  for (let k = 0; k < count; k++) {
    // Between values stand only blanks and one comma: the part parsed as JSON.
    while (pos < b.length && (b[pos] === 0x2c || b[pos] === 0x20 || b[pos] === 0x0a || b[pos] === 0x0d || b[pos] === 0x09)) pos++;
    const end = scanValue(b, pos);
    if (end < 0) return null;
    out[2 * (i + k)] = pos;
    out[2 * (i + k) + 1] = end;
    pos = end;
  }
  const rest = old.subarray(2 * j);
  const at = 2 * (i + count);
  for (let k = 0; k < rest.length; k++) out[at + k] = rest[k]! + growth;
  return out;
}
