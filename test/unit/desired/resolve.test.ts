import { afterEach, describe, expect, test, vi } from 'vitest';
import fc from 'fast-check';
import { MappingFileError, parseMappingFile, type Mapping } from '../../../src/input/mapping-file.js';
import { countMappings, resolveChains } from '../../../src/desired/resolve.js';
import { mappingFileText } from '../fakes.js';

const m6 = (from: string, to: string): Mapping => ({ family: 6, from, to });
const m4 = (from: string, to: string): Mapping => ({ family: 4, from, to });

/** Deterministic shuffle (mulberry32), so a failure is reproducible. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  let a = seed >>> 0;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** fd00::<n> in canonical form. */
const addr6 = (n: number) => `fd00::${n.toString(16)}`;

function cycleError(mappings: Mapping[]): MappingFileError {
  try {
    resolveChains(mappings);
  } catch (e) {
    expect(e).toBeInstanceOf(MappingFileError);
    return e as MappingFileError;
  }
  return expect.unreachable('expected the cycle to be refused');
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('resolveChains', () => {
  test('independent mappings resolve to themselves', () => {
    const d = resolveChains([m6('fd00::1', 'fdaa::1'), m4('10.0.0.1', '10.9.0.1')]);
    expect(d.v6).toEqual(new Map([['fd00::1', 'fdaa::1']]));
    expect(d.v4).toEqual(new Map([['10.0.0.1', '10.9.0.1']]));
    expect(countMappings(d)).toBe(2);
  });

  test('A->B plus B->C gives A->C and B->C', () => {
    const d = resolveChains([m6('fd00::a', 'fd00::b'), m6('fd00::b', 'fd00::c')]);
    expect(d.v6).toEqual(
      new Map([
        ['fd00::a', 'fd00::c'],
        ['fd00::b', 'fd00::c'],
      ]),
    );
  });

  test('the chain is resolved whichever link comes first in the file', () => {
    const d = resolveChains([m6('fd00::b', 'fd00::c'), m6('fd00::a', 'fd00::b')]);
    expect(d.v6.get('fd00::a')).toBe('fd00::c');
    expect(d.v6.get('fd00::b')).toBe('fd00::c');
  });

  test('a tree of chains converging on one target resolves every branch', () => {
    // a->b->d, c->b, e->d, d->f
    const d = resolveChains([
      m6('fd00::a', 'fd00::b'),
      m6('fd00::c', 'fd00::b'),
      m6('fd00::b', 'fd00::d'),
      m6('fd00::e', 'fd00::d'),
      m6('fd00::d', 'fd00::f'),
    ]);
    expect([...d.v6.values()]).toEqual(['fd00::f', 'fd00::f', 'fd00::f', 'fd00::f', 'fd00::f']);
    expect([...d.v6.keys()]).toEqual(['fd00::a', 'fd00::c', 'fd00::b', 'fd00::e', 'fd00::d']);
  });

  test('works on the output of parseMappingFile, where spellings differ in the file', () => {
    const file = parseMappingFile(
      mappingFileText(1, [
        ['FD00::A', 'fd00:0::000b'],
        ['fd00:0:0:0:0:0:0:b', 'FD00::C'],
      ]),
    );
    expect(resolveChains(file.mappings).v6).toEqual(
      new Map([
        ['fd00::a', 'fd00::c'],
        ['fd00::b', 'fd00::c'],
      ]),
    );
  });

  test('a long chain (1000 links, random order) resolves every link to the end', () => {
    const n = 1000;
    const links = Array.from({ length: n }, (_, i) => m6(addr6(i + 1), addr6(i + 2)));
    const d = resolveChains(shuffled(links, 12345));
    expect(d.v6.size).toBe(n);
    for (let i = 1; i <= n; i++) expect(d.v6.get(addr6(i))).toBe(addr6(n + 1));
  });

  test('resolution is linear: map look-ups grow with the number of links, not its square', () => {
    const lookups = (n: number) => {
      const links = shuffled(
        Array.from({ length: n }, (_, i) => m6(addr6(i + 1), addr6(i + 2))),
        n,
      );
      const get = vi.spyOn(Map.prototype, 'get');
      const has = vi.spyOn(Map.prototype, 'has');
      try {
        resolveChains(links);
        return get.mock.calls.length + has.mock.calls.length;
      } finally {
        get.mockRestore();
        has.mockRestore();
      }
    };
    const small = lookups(1000);
    const large = lookups(4000);
    // Each address is walked once: a few look-ups per link. A quadratic walk
    // would need ~n^2/2 = 500 000 for 1000 links.
    expect(small).toBeLessThan(1000 * 12);
    expect(large / small).toBeLessThan(4 * 1.2);
  });

  test('a 100 000-link chain in random order resolves without a stack overflow', () => {
    const n = 100_000;
    const links = shuffled(
      Array.from({ length: n }, (_, i) => m6(addr6(i + 1), addr6(i + 2))),
      7,
    );
    const d = resolveChains(links);
    expect(d.v6.size).toBe(n);
    expect(d.v6.get(addr6(1))).toBe(addr6(n + 1));
    expect(d.v6.get(addr6(n))).toBe(addr6(n + 1));
  });

  test('a 2-cycle A->B->A is refused, naming an entry and listing the cycle', () => {
    const err = cycleError([m6('fd00::9', 'fdaa::9'), m6('fd00::a', 'fd00::b'), m6('fd00::b', 'fd00::a')]);
    expect(err.entry).toBe('mappings[1]');
    expect(err.reason).toBe('mappings form a cycle: fd00::a -> fd00::b -> fd00::a');
    expect(err.message).toBe(`mappings[1]: ${err.reason}`);
  });

  test('a 3-cycle is refused, listing all three addresses', () => {
    const err = cycleError([m4('10.0.0.1', '10.0.0.2'), m4('10.0.0.2', '10.0.0.3'), m4('10.0.0.3', '10.0.0.1')]);
    expect(err.entry).toMatch(/^mappings\[[0-2]\]$/);
    expect(err.reason).toBe('mappings form a cycle: 10.0.0.1 -> 10.0.0.2 -> 10.0.0.3 -> 10.0.0.1');
  });

  test('a chain leading into a cycle reports the cycle only, naming an entry on it', () => {
    const err = cycleError([m6('fd00::1', 'fd00::2'), m6('fd00::2', 'fd00::3'), m6('fd00::3', 'fd00::4'), m6('fd00::4', 'fd00::2')]);
    expect(err.reason).toBe('mappings form a cycle: fd00::2 -> fd00::3 -> fd00::4 -> fd00::2');
    expect(['mappings[1]', 'mappings[2]', 'mappings[3]']).toContain(err.entry);
  });

  test('a cycle in a parsed file is refused with the original entry index', () => {
    const file = parseMappingFile(
      mappingFileText(1, [
        ['fd00::1', 'fdaa::1'],
        ['fd00::1', 'fdaa::1'], // repeat, de-duplicated: indexes below are positions in the parsed list
        ['fd00::a', 'fd00::b'],
        ['fd00::b', 'fd00::a'],
      ]),
    );
    const err = cycleError(file.mappings);
    expect(err.reason).toContain('fd00::a -> fd00::b -> fd00::a');
    expect(err.entry).toMatch(/^mappings\[\d+\]$/);
  });

  test('IPv4 and IPv6 mappings are kept apart', () => {
    const d = resolveChains([m4('10.0.0.1', '10.0.0.2'), m6('fd00::1', 'fd00::2'), m4('10.0.0.2', '10.0.0.3'), m6('fd00::2', 'fd00::3')]);
    expect(d.v4).toEqual(
      new Map([
        ['10.0.0.1', '10.0.0.3'],
        ['10.0.0.2', '10.0.0.3'],
      ]),
    );
    expect(d.v6).toEqual(
      new Map([
        ['fd00::1', 'fd00::3'],
        ['fd00::2', 'fd00::3'],
      ]),
    );
    expect(countMappings(d)).toBe(4);
  });

  test('an empty list resolves to empty maps', () => {
    const d = resolveChains([]);
    expect(d.v4.size + d.v6.size).toBe(0);
    expect(countMappings(d)).toBe(0);
  });

  test('property: for any acyclic set of mappings, every stale address resolves to an address that is not itself stale, by following the links', () => {
    // Random forests: node i may point to any node j > i (acyclic by construction).
    const forest = fc
      .integer({ min: 1, max: 40 })
      .chain((n) => fc.tuple(fc.constant(n), fc.array(fc.tuple(fc.nat(n - 1), fc.nat(40)), { maxLength: n }), fc.integer()));
    fc.assert(
      fc.property(forest, ([_n, raw, seed]) => {
        const byFrom = new Map<number, number>();
        for (const [i, d] of raw) if (!byFrom.has(i)) byFrom.set(i, i + 1 + d);
        const links = shuffled(
          [...byFrom].map(([i, j]) => m6(addr6(i + 1), addr6(j + 1))),
          seed,
        );
        const d = resolveChains(links);
        expect(d.v6.size).toBe(byFrom.size);
        for (const [i] of byFrom) {
          let cur = i;
          while (byFrom.has(cur)) cur = byFrom.get(cur)!;
          expect(d.v6.get(addr6(i + 1))).toBe(addr6(cur + 1));
          expect(d.v6.has(d.v6.get(addr6(i + 1))!)).toBe(false);
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('prefix mappings', () => {
  const pm = (from: string, to: string, length: number, index = 0): Mapping => ({
    family: from.includes(':') ? 6 : 4,
    from,
    to,
    prefixLength: length,
    index,
  });
  const single = (from: string, to: string, index = 0): Mapping => ({ family: from.includes(':') ? 6 : 4, from, to, index });

  test('a prefix evacuated twice resolves to the final prefix, longest first', () => {
    const d = resolveChains([pm('fdaa:0:7d::', 'fdaa:0:c2::', 48, 0), pm('fdaa:0:c2::', 'fdaa:0:c3::', 48, 1)]);
    expect(d.prefixes).toEqual([
      { family: 6, from: 'fdaa:0:7d::', to: 'fdaa:0:c3::', length: 48 },
      { family: 6, from: 'fdaa:0:c2::', to: 'fdaa:0:c3::', length: 48 },
    ]);
  });

  test('a single mapping inside a target prefix gives the matching address of the source prefix its own entry', () => {
    const d = resolveChains([pm('fdaa:0:7d::', 'fdaa:0:c2::', 48, 0), single('fdaa:0:c2::9', 'fdcc::9', 1)]);
    expect([...d.v6]).toEqual([
      ['fdaa:0:c2::9', 'fdcc::9'],
      ['fdaa:0:7d::9', 'fdcc::9'],
    ]);
  });

  test('an address chained into a mapped prefix follows it', () => {
    const d = resolveChains([single('fd00::1', 'fdaa:0:7d::5', 0), pm('fdaa:0:7d::', 'fdaa:0:c2::', 48, 1)]);
    expect(d.v6.get('fd00::1')).toBe('fdaa:0:c2::5');
  });

  test('a cycle of prefixes is refused; so is a narrower prefix mapping inside a target prefix', () => {
    expect(() => resolveChains([pm('fdaa:0:7d::', 'fdaa:0:c2::', 48, 0), pm('fdaa:0:c2::', 'fdaa:0:7d::', 48, 1)])).toThrow(
      /prefix mappings form a cycle/,
    );
    expect(() => resolveChains([pm('fdaa:0:7d::', 'fdaa:0:c2::', 48, 0), pm('fdaa:0:c2:1::', 'fdaa:0:c3:1::', 64, 1)])).toThrow(
      /mappings\[0\]: the target of fdaa:0:7d::\/48 contains fdaa:0:c2:1::\/64, mapped by mappings\[1\]/,
    );
  });

  test('nested source prefixes are both kept, longest first', () => {
    const d = resolveChains([pm('fdaa:0:7d::', 'fdaa:0:c2::', 48, 0), pm('fdaa:0:7d:1::', 'fdaa:0:c3:1::', 64, 1)]);
    expect(d.prefixes!.map((p) => `${p.from}/${p.length}->${p.to}`)).toEqual([
      'fdaa:0:7d:1::/64->fdaa:0:c3:1::',
      'fdaa:0:7d::/48->fdaa:0:c2::',
    ]);
  });
});

describe('own previous addresses', () => {
  test('a mapping from an own previous address is left out (it is local here); the rest resolve as usual', () => {
    const d = resolveChains(
      [
        { family: 6, from: 'fdaa::77', to: 'fdaa::78' },
        { family: 6, from: 'fd00::1', to: 'fdaa::2' },
      ],
      [{ from: 'fdaa::77', to: 'fdaa::78' }],
    );
    expect([...d.v6]).toEqual([['fd00::1', 'fdaa::2']]);
    expect([...d.self!]).toEqual([['fdaa::77', 'fdaa::78']]);
  });
});
