import { describe, expect, test } from 'vitest';
import { printable, printableJson, printableText } from '../../../src/support/printable.js';

describe('printable', () => {
  test('escape sequences, C1 controls, DEL and bidi overrides show as text', () => {
    expect(printable('a\u001b[2Jb\u009b31m\u007f\u202eevil')).toBe('a\\x1b[2Jb\\x9b31m\\x7f\\u202eevil');
  });

  test('a field escapes its newlines and tabs; whole text keeps them', () => {
    expect(printable('one\ntwo\tthree')).toBe('one\\x0atwo\\x09three');
    expect(printableText('one\ntwo\tthree\r\u0007')).toBe('one\ntwo\tthree\\x0d\\x07');
  });

  test('plain text, addresses and non-Latin letters are left alone', () => {
    const s = 'fdaa:0:18:a7b:7d:f066:b83b:2 -> 198.51.100.10 (mappings[3]) naïve 東京';
    expect(printable(s)).toBe(s);
    expect(printableText(s)).toBe(s);
  });

  test('JSON stays valid JSON with the same value, and holds no raw control character', () => {
    const value = { reason: 'x\u001by\u009bz\u2028\u202e', n: 1 };
    const out = printableJson(JSON.stringify(value));
    expect(out).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u202e]/);
    expect(JSON.parse(out)).toEqual(value);
  });
});
