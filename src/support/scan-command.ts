// `addrmap scan PATH...`: every place the named files still hold a stale
// address, against the applied mappings; with --diff, the rewrite proposed.
// Exit 0 clean, 1 found, 2 usage error (no mappings applied, a path that does
// not exist, an unreadable --names file).
import { readFile, stat } from 'node:fs/promises';
import { normalizeIp } from '../net/address.js';
import { APPLIED_FILE, readState, type AppliedState } from '../state/state-file.js';
import { printable, printableJson, printableText } from './printable.js';
import { fileDiff } from './scan-diff.js';
import { scanPaths, type Occurrence, type ScanStats } from './scan.js';

export interface ScanOptions {
  paths: string[];
  stateDir: string;
  json?: boolean;
  /** Print a unified diff rewriting each stale literal instead of the list. */
  diff?: boolean;
  /** A JSON file mapping target addresses to host names, for --diff. */
  names?: string;
  out?: NodeJS.WritableStream;
  err?: NodeJS.WritableStream;
}

export async function scanCommand(o: ScanOptions): Promise<number> {
  const out = o.out ?? process.stdout;
  const err = o.err ?? process.stderr;
  const usage = (why: string) => (err.write(`addrmap: ${why}\n`), 2);
  if (!o.paths.length) return usage('scan needs at least one PATH');
  for (const p of o.paths) {
    const missing = await stat(p).then(
      () => false,
      (e: NodeJS.ErrnoException) => e.code === 'ENOENT' || e.code === 'ENOTDIR',
    );
    if (missing) return usage(`scan: ${printable(p)} does not exist`);
  }
  let names = new Map<string, string>();
  if (o.names) {
    const read = await readNames(o.names).catch((e: Error) => e);
    if (read instanceof Error) return usage(`--names ${printable(o.names)}: ${read.message}`);
    names = read;
  }
  const applied = await readState<AppliedState>(o.stateDir, APPLIED_FILE);
  if (!applied) return usage(`no applied mappings in ${o.stateDir}; nothing to look for`);

  const stale = new Map(applied.resolved.map((m) => [m.from, m.to]));
  const stats: ScanStats = { files: 0, skipped: [] };
  const found: Occurrence[] = [];
  for await (const hit of scanPaths(o.paths, stale, stats)) {
    found.push(hit);
    // The file's name and line are the customer's bytes: escaped field by field.
    if (!o.json && !o.diff) {
      const via = hit.prefix ? ` (inside ${hit.prefix})` : '';
      out.write(
        `${printable(hit.file)}:${hit.line}:${hit.column}: ${printable(hit.text)} is stale${via}, now ${hit.target}: ${printableText(hit.lineText.replace(/[\r\n]/g, ''))}\n`,
      );
    }
  }
  if (o.diff) {
    for (const [file, hits] of byFile(found)) out.write(printableText(await fileDiff(file, hits, names)));
  } else if (o.json) {
    out.write(printableJson(JSON.stringify({ generation: applied.generation, occurrences: found, ...stats }, null, 2)) + '\n');
  }
  for (const s of stats.skipped) err.write(`addrmap: skipped ${printable(s.file)}: ${printableText(s.reason)}\n`);
  if (!o.json) err.write(summary(found, stats, stale.size) + '\n');
  return found.length ? 1 : 0;
}

/** What was found, among what was searched: occurrences, distinct stale addresses, files with any. */
function summary(found: Occurrence[], stats: ScanStats, mappings: number): string {
  const addresses = new Set(found.map((f) => f.address)).size;
  const files = new Set(found.map((f) => f.file)).size;
  return (
    `${found.length} occurrence(s) of ${addresses} stale address(es) in ${files} of ${stats.files} file(s) read` +
    ` (${mappings} mapping(s) searched${stats.skipped.length ? `, ${stats.skipped.length} path(s) skipped` : ''})`
  );
}

function byFile(found: Occurrence[]): Map<string, Occurrence[]> {
  const m = new Map<string, Occurrence[]>();
  for (const f of found) m.set(f.file, [...(m.get(f.file) ?? []), f]);
  return m;
}

/** {"address": "host name"}: addresses in any spelling, names as DNS would take them. */
async function readNames(file: string): Promise<Map<string, string>> {
  const doc: unknown = JSON.parse(await readFile(file, 'utf8'));
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new Error('must be a JSON object of address -> host name');
  const names = new Map<string, string>();
  // Refusals name the entry by position: the file's own bytes are not repeated.
  for (const [i, [address, name]] of Object.entries(doc).entries()) {
    let key: string;
    try {
      key = normalizeIp(address);
    } catch {
      throw new Error(`entry ${i + 1}: the key is not an IP address`);
    }
    if (typeof name !== 'string' || !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9.])?$/.test(name))
      throw new Error(`entry ${i + 1} (${key}): the value must be a host name`);
    names.set(key, name);
  }
  return names;
}
