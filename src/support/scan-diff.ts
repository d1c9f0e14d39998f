// `addrmap scan --diff`: the rewrite phase's proposal. Each stale literal
// becomes its current target written the way the original was (brackets,
// port, zone, case, expanded or compressed, IPv4-mapped), or a host name
// when one is given, as a unified diff for review. Nothing is written: the
// diff is the customer's to apply.
import { readFile } from 'node:fs/promises';
import { addressToBig, type IpFamily } from '../net/address.js';
import type { Occurrence } from './scan.js';

/** Lines of context around each change, as `diff -u`. */
const CONTEXT = 3;

/** The parts of a match as written: what surrounds the address (brackets, zone, port) and the address itself. */
function split(text: string): { before: string; core: string; zone: string; after: string } {
  let rest = text;
  let before = '';
  let after = '';
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    before = '[';
    after = rest.slice(close);
    rest = rest.slice(1, close);
  } else if (!rest.includes('::') && rest.split(':').length === 2) {
    // a dotted quad with a port ("1.2.3.4:5432")
    const colon = rest.indexOf(':');
    after = rest.slice(colon);
    rest = rest.slice(0, colon);
  } else if (!rest.includes('::') && rest.split(':').length === 9) {
    // a full eight-group address followed by ":port"
    const colon = rest.lastIndexOf(':');
    after = rest.slice(colon);
    rest = rest.slice(0, colon);
  }
  const pct = rest.indexOf('%');
  const zone = pct < 0 ? '' : rest.slice(pct);
  return { before, core: pct < 0 ? rest : rest.slice(0, pct), zone, after };
}

/** `target` in the spelling `core` uses: IPv4-mapped stays mapped, expanded stays expanded, upper case stays upper. */
export function respell(core: string, target: string): string {
  const targetFamily: IpFamily = target.includes(':') ? 6 : 4;
  const mapped = /^(::ffff:)(.*)$/i.exec(core);
  if (mapped && targetFamily === 4) {
    const rest = mapped[2]!;
    if (rest.includes('.')) return mapped[1]! + target;
    const v = Number(addressToBig(4, target));
    const hex = `${(v >>> 16).toString(16)}:${(v & 0xffff).toString(16)}`;
    return mapped[1]! + (rest === rest.toUpperCase() && /[A-F]/.test(rest) ? hex.toUpperCase() : hex);
  }
  if (targetFamily === 4 || !core.includes(':')) return target;
  let text = target;
  if (!core.includes('::') && core.split(':').length === 8) {
    const padded = core.split(':').every((g) => g.length === 4);
    const v = addressToBig(6, target);
    const groups = Array.from({ length: 8 }, (_, i) => Number((v >> BigInt(112 - 16 * i)) & 0xffffn).toString(16));
    text = groups.map((g) => (padded ? g.padStart(4, '0') : g)).join(':');
  }
  const letters = core.replace(/[^a-fA-F]/g, '');
  return letters && letters === letters.toUpperCase() ? text.toUpperCase() : text;
}

/** The match rewritten: its target in the same form, or `name` (without brackets or zone, which belong to addresses). */
export function rewrite(text: string, target: string, name?: string): string {
  const p = split(text);
  if (name === undefined) return p.before + respell(p.core, target) + p.zone + p.after;
  return name + (p.before ? p.after.slice(1) : p.after);
}

/**
 * A unified diff of one file with every occurrence rewritten. Occurrences
 * must be this file's, in line and column order (as scanPaths yields them).
 */
export async function fileDiff(file: string, found: readonly Occurrence[], names: ReadonlyMap<string, string>): Promise<string> {
  const text = await readFile(file, 'utf8');
  const lines = text.split(/(?<=\n)/);
  const changed = new Map<number, string>();
  for (const [index, group] of byLine(found)) {
    let line = changed.get(index) ?? lines[index] ?? '';
    // Right to left, so earlier columns stay valid.
    for (const o of [...group].reverse()) {
      const at = o.column - 1 + (index === 0 && line.charCodeAt(0) === 0xfeff ? 1 : 0);
      if (line.slice(at, at + o.text.length) !== o.text) continue; // the file changed since it was scanned
      line = line.slice(0, at) + rewrite(o.text, o.target, names.get(o.target)) + line.slice(at + o.text.length);
    }
    if (line !== lines[index]) changed.set(index, line);
  }
  if (!changed.size) return '';
  // patch -p1 takes a/ and b/ off: run from where scan ran (or from / for absolute paths).
  const label = file.startsWith('/') ? file : `/${file}`;
  const out = [`--- a${label}\n`, `+++ b${label}\n`];
  for (const [first, last] of hunks(
    [...changed.keys()].sort((a, b) => a - b),
    lines.length,
  )) {
    const n = last - first + 1;
    out.push(`@@ -${first + 1},${n} +${first + 1},${n} @@\n`);
    for (let i = first; i <= last; i++) {
      const old = lines[i]!;
      const now = changed.get(i);
      if (now === undefined) out.push(` ${withEnd(old)}`);
      else out.push(`-${withEnd(old)}`, `+${withEnd(now)}`);
    }
  }
  return out.join('');
}

function byLine(found: readonly Occurrence[]): Map<number, Occurrence[]> {
  const m = new Map<number, Occurrence[]>();
  for (const o of found) m.set(o.line - 1, [...(m.get(o.line - 1) ?? []), o]);
  return m;
}

/** Changed lines grouped into hunks with their context: [first, last] line indexes. */
function hunks(changed: number[], total: number): [number, number][] {
  const out: [number, number][] = [];
  for (const i of changed) {
    const first = Math.max(0, i - CONTEXT);
    const last = Math.min(total - 1, i + CONTEXT);
    const prev = out.at(-1);
    if (prev && first <= prev[1] + 1) prev[1] = last;
    else out.push([first, last]);
  }
  return out;
}

/** A last line without a newline is marked as diff marks it. */
const withEnd = (line: string) => (line.endsWith('\n') ? line : `${line}\n\\ No newline at end of file\n`);
