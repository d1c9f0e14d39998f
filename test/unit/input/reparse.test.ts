// Parsing by difference must be indistinguishable from parsing whole: for
// every edit of a file, the same mappings in the same order, or the same
// refusal word for word; and a delta that turns the old mappings into the new.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Prefix } from '../../../src/net/prefix.js';
import { parseMappingFile, DEFAULT_ALLOWED_TARGETS, type Mapping, type ParseOptions } from '../../../src/input/mapping-file.js';
import { reparse, type ParsedBytes } from '../../../src/input/reparse.js';

const options: ParseOptions = { allowedTargets: DEFAULT_ALLOWED_TARGETS };

interface Entry {
  from: string;
  to: string;
  expires?: string;
  comment?: string;
}

const entry = (i: number, t = 0x2c): Entry => ({ from: `fdaa::7d:${i.toString(16)}`, to: `fdaa::${t.toString(16)}:${i.toString(16)}` });

function render(doc: { generation: number; mappings: Entry[]; self?: unknown }, style: number): string {
  if (style === 0) return JSON.stringify({ version: 1, ...doc });
  if (style === 1) return JSON.stringify({ version: 1, ...doc }, null, 2);
  // Mappings first, the generation after them: the list is not where the head ends.
  return JSON.stringify(
    { mappings: doc.mappings, version: 1, generation: doc.generation, ...(doc.self ? { self: doc.self } : {}) },
    null,
    ' ',
  );
}

type Outcome = { ok: true; mappings: Mapping[]; generation: number; self: unknown } | { ok: false; message: string };

function wholly(text: string): Outcome {
  try {
    const f = parseMappingFile(text, options);
    return { ok: true, mappings: f.mappings, generation: f.generation, self: f.self };
  } catch (e) {
    return { ok: false, message: (e as Error).message };
  }
}

/** How often the fast path answered, so the properties are known to test it. */
const taken = { byDifference: 0, whole: 0 };

/** Parses `text` against `memory`, checks it against a whole parse, and returns the memory for the next step. */
function step(text: string, memory: ParsedBytes | null): ParsedBytes | null {
  const expected = wholly(text);
  let got: Outcome;
  let next: ParsedBytes | null;
  const before = memory ? memory.file.mappings : null;
  try {
    const r = reparse(Buffer.from(text), memory, options);
    got = { ok: true, mappings: r.file.mappings, generation: r.file.generation, self: r.file.self };
    next = r.memory;
    if (memory) taken[r.delta ? 'byDifference' : 'whole']++;
    if (r.delta && before) {
      // The delta turns the old list into the new one.
      const have = new Map(before.map((m) => [m.from, m]));
      for (const m of r.delta.removed) have.delete(m.from);
      for (const m of r.delta.added) have.set(m.from, m);
      expect(new Map(r.file.mappings.map((m) => [m.from, m]))).toEqual(have);
    }
  } catch (e) {
    got = { ok: false, message: (e as Error).message };
    next = null; // a refusal drops the memory, as the pass does
  }
  expect(got).toEqual(expected);
  return next;
}

const edit = fc.oneof(
  fc.record({ op: fc.constant('retarget' as const), at: fc.nat(), t: fc.integer({ min: 0x30, max: 0x40 }) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), id: fc.integer({ min: 0, max: 60 }) }),
  fc.record({ op: fc.constant('remove' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('expire' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('comment' as const), at: fc.nat(), text: fc.string({ maxLength: 6 }) }),
  fc.record({ op: fc.constant('generation' as const), g: fc.integer({ min: 0, max: 100000 }) }),
  fc.record({ op: fc.constant('bad' as const), at: fc.nat(), what: fc.constantFrom('to', 'from', 'field', 'v4') }),
  fc.record({ op: fc.constant('swap' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('self' as const) }),
);

type Edit = typeof edit extends fc.Arbitrary<infer T> ? T : never;

function apply(doc: { generation: number; mappings: Entry[]; self?: unknown }, e: Edit) {
  const ms = doc.mappings.map((m) => ({ ...m }));
  const at = ms.length ? (e as { at?: number }).at! % ms.length : 0;
  switch (e.op) {
    case 'retarget':
      if (ms.length) ms[at]!.to = entry(at, e.t).to.replace(/:[0-9a-f]+$/, `:${at.toString(16)}`);
      break;
    case 'insert':
      ms.splice(ms.length ? at : 0, 0, entry(e.id, 0x50));
      break;
    case 'remove':
      ms.splice(at, 1);
      break;
    case 'expire':
      if (ms.length) ms[at]!.expires = '2030-01-01T00:00:00Z';
      break;
    case 'comment':
      if (ms.length) ms[at]!.comment = `é${e.text}`;
      break;
    case 'generation':
      return { ...doc, mappings: ms, generation: e.g };
    case 'bad':
      if (!ms.length) break;
      if (e.what === 'to') ms[at]!.to = 'fdaa::zz';
      else if (e.what === 'from') ms[at]!.from = ms[(at + 1) % ms.length]!.from;
      else if (e.what === 'v4') ms[at]!.to = '10.0.0.1';
      else (ms[at] as unknown as Record<string, string>).extra = 'x';
      break;
    case 'swap':
      if (ms.length > 1) [ms[at], ms[(at + 1) % ms.length]] = [ms[(at + 1) % ms.length]!, ms[at]!];
      break;
    case 'self':
      return { ...doc, mappings: ms, self: doc.self ? undefined : [{ from: 'fdaa::1:1', to: 'fdaa::2:1' }] };
  }
  return { ...doc, mappings: ms };
}

describe('parsing by difference', () => {
  it('gives what a whole parse gives, or refuses in the same words, for any sequence of edits', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 2 }), fc.array(edit, { maxLength: 12 }), (n, style, edits) => {
        let doc: { generation: number; mappings: Entry[]; self?: unknown } = {
          generation: 1,
          mappings: Array.from({ length: n }, (_, i) => entry(i)),
        };
        let memory = step(render(doc, style), null);
        for (const e of edits) {
          doc = apply(doc, e);
          memory = step(render(doc, style), memory);
        }
      }),
      { numRuns: 400 },
    );
    expect(taken.byDifference).toBeGreaterThan(taken.whole);
  });

  it('gives what a whole parse gives for any change of bytes', () => {
    // Random byte edits: most files become invalid JSON, some stay valid with
    // other values; both must come out as a whole parse has them.
    const base = render({ generation: 7, mappings: Array.from({ length: 12 }, (_, i) => entry(i)) }, 1);
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.nat(base.length - 1), len: fc.nat(6), put: fc.string({ maxLength: 6 }) }), {
          minLength: 1,
          maxLength: 3,
        }),
        (cuts) => {
          let memory = step(base, null);
          let text = base;
          for (const c of cuts) {
            const at = c.at % (text.length + 1);
            text = text.slice(0, at) + c.put + text.slice(at + c.len);
            memory = step(text, memory);
            if (!memory) memory = step(base, null);
            if (!memory) throw new Error('the base file must be remembered');
            text = base;
            memory = step(text, memory);
          }
        },
      ),
      { numRuns: 1500 },
    );
    expect(taken.byDifference).toBeGreaterThan(1000);
  });

  it('parses only the change of a large file: one retarget gives one removed and one added mapping', () => {
    const mappings = Array.from({ length: 5000 }, (_, i) => entry(i));
    const a = render({ generation: 1, mappings }, 1);
    const first = reparse(Buffer.from(a), null, options);
    expect(first.delta).toBeNull();
    expect(first.memory).not.toBeNull();
    mappings[2500] = { ...mappings[2500]!, to: 'fdaa::99:1' };
    const r = reparse(Buffer.from(render({ generation: 2, mappings }, 1)), first.memory, options);
    expect(r.delta?.removed.map((m) => m.to)).toEqual(['fdaa::2c:9c4']);
    expect(r.delta?.added.map((m) => m.to)).toEqual(['fdaa::99:1']);
    expect(r.file.generation).toBe(2);
    expect(r.memory).not.toBeNull();
    // Pushes in a row, the generation growing by a digit now and then: every one by difference.
    let memory = r.memory;
    for (const g of [3, 9, 10, 11, 99, 100, 1000, 5]) {
      mappings[g] = { ...mappings[g]!, to: `fdaa::98:${g.toString(16)}` };
      const next = reparse(Buffer.from(render({ generation: g, mappings }, 1)), memory, options);
      expect(next.delta?.added.map((m) => m.to)).toEqual([`fdaa::98:${g.toString(16)}`]);
      memory = next.memory;
    }
  });

  it('parses whole what it does not take by difference: prefixes, repeats, another config', () => {
    const prefix = JSON.stringify({ version: 1, generation: 1, mappings: [{ from: 'fdaa:1::/64', to: 'fdaa:2::/64' }] });
    expect(reparse(Buffer.from(prefix), null, options).memory).toBeNull();
    const repeat = JSON.stringify({ version: 1, generation: 1, mappings: [entry(1), entry(1)] });
    const r = reparse(Buffer.from(repeat), null, options);
    expect(r.file.mappings).toHaveLength(1);
    expect(r.memory).toBeNull();
    const plain = JSON.stringify({ version: 1, generation: 1, mappings: [entry(1)] });
    const m = reparse(Buffer.from(plain), null, options).memory;
    const same = { allowedTargets: DEFAULT_ALLOWED_TARGETS.slice() };
    const next = reparse(Buffer.from(plain.replace('"generation":1', '"generation":2')), m, same);
    expect(next.delta).not.toBeNull();
    const other = { allowedTargets: [...DEFAULT_ALLOWED_TARGETS, Prefix.parse('fd00::/8')] };
    expect(reparse(Buffer.from(plain.replace('"generation":1', '"generation":3')), next.memory, other).delta).toBeNull();
  });
});
