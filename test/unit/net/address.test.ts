import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { Address6 } from 'ip-address';
import { AddressError, normalizeIp, parseAddress } from '../../../src/net/address.js';

/** Eight 16-bit groups, written in a random but valid way. */
function spell(groups: number[], style: { upper: boolean; pad: boolean; compressAt: number | null }): string {
  const hex = groups.map((g) => {
    let h = g.toString(16);
    if (style.pad) h = h.padStart(4, '0');
    return style.upper ? h.toUpperCase() : h;
  });
  if (style.compressAt === null) return hex.join(':');
  // Compress one run of zero groups starting at compressAt, if there is one.
  let end = style.compressAt;
  while (end < 8 && groups[end] === 0) end++;
  if (end === style.compressAt) return hex.join(':');
  return `${hex.slice(0, style.compressAt).join(':')}::${hex.slice(end).join(':')}`;
}

describe('parseAddress', () => {
  test('IPv6 and IPv4 families', () => {
    expect(parseAddress('fd00::1')).toMatchObject({ family: 6, text: 'fd00::1' });
    expect(parseAddress('192.0.2.1')).toEqual({ family: 4, text: '192.0.2.1' });
  });

  test('errors are AddressErrors', () => {
    expect(() => parseAddress('nope')).toThrow(AddressError);
    expect(() => parseAddress('::1')).toThrow(AddressError);
  });

  test('property: every spelling of a ULA address canonicalises to the same text', () => {
    const groups = fc.tuple(
      fc.integer({ min: 0xfc00, max: 0xfdff }),
      fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff })), { minLength: 7, maxLength: 7 }),
    );
    const style = fc.record({ upper: fc.boolean(), pad: fc.boolean(), compressAt: fc.option(fc.integer({ min: 1, max: 7 })) });
    fc.assert(
      fc.property(groups, style, style, ([first, rest], s1, s2) => {
        const g = [first, ...rest];
        const a = parseAddress(spell(g, s1));
        const b = parseAddress(spell(g, s2));
        expect(a).toEqual(b);
        // Canonical text is a fixed point and lower case.
        expect(parseAddress(a.text)).toEqual(a);
        expect(a.text).toBe(a.text.toLowerCase());
        expect(normalizeIp(spell(g, s1))).toBe(a.text);
      }),
      { numRuns: 300 },
    );
  });

  test('canonical text, or a refusal for what is not a usable address', () => {
    expect(parseAddress('FDAA::0001').text).toBe('fdaa::1');
    expect(() => parseAddress('::1')).toThrow(AddressError);
    expect(() => parseAddress('garbage')).toThrow(AddressError);
  });

  test('normalizeIp does not apply policy (the kernel may list anything)', () => {
    expect(normalizeIp('::1')).toBe('::1');
    expect(normalizeIp('FE80:0::1')).toBe('fe80::1');
    expect(normalizeIp('127.0.0.1')).toBe('127.0.0.1');
  });
});

describe('the fast IPv6 path agrees with ip-address', () => {
  test('random addresses in random spellings: same canonical text, same refusals', () => {
    let runs = 0;
    fc.assert(
      fc.property(
        // Many zero groups, so that "::" runs of every length and position occur.
        fc.array(fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff })), { minLength: 8, maxLength: 8 }),
        fc.boolean(),
        fc.boolean(),
        (groups, upper, pad) => {
          runs++;
          let text = groups.map((g) => (pad ? g.toString(16).padStart(4, '0') : g.toString(16))).join(':');
          if (upper) text = text.toUpperCase();
          const reference = new Address6(text).correctForm();
          expect(normalizeIp(text)).toBe(reference);
          expect(normalizeIp(reference)).toBe(reference);
          let ours: string;
          try {
            ours = parseAddress(text).text;
          } catch (e) {
            ours = `refused: ${(e as Error).message}`;
          }
          // The slow path, forced through a spelling the fast path does not take.
          const v4tail = `${(groups[6]! >> 8) & 255}.${groups[6]! & 255}.${(groups[7]! >> 8) & 255}.${groups[7]! & 255}`;
          const slow =
            groups
              .slice(0, 6)
              .map((g) => g.toString(16))
              .join(':') +
            ':' +
            v4tail;
          let theirs: string;
          try {
            theirs = parseAddress(slow).text;
          } catch (e) {
            theirs = `refused: ${(e as Error).message}`;
          }
          expect(ours).toBe(theirs);
        },
      ),
      { numRuns: 3000 },
    );
    console.log(`fast IPv6 path vs ip-address: ${runs} cases`);
    expect(runs).toBe(3000);
  });
});
