// src/json-syntax.ts explains, in its own words and with a position, why
// JSON.parse refused a text: it must find an error exactly when JSON.parse
// does, put it where it is, and never quote the text.
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { describeJsonError, jsonSyntaxError, lineColumn } from '../../../src/input/json-syntax.js';

const parses = (t: string): boolean => {
  try {
    JSON.parse(t);
    return true;
  } catch {
    return false;
  }
};

/** Every reason json-syntax.ts can give: the whole vocabulary of its messages. */
const REASONS = [
  'a control character inside a string (write it as \\u00XX)',
  'an invalid \\u escape',
  'an invalid escape in a string',
  'a string that never ends',
  'an invalid number',
  'nested too deep',
  'the text ends where a value should be',
  'the text ends inside an object',
  'expected a field name in double quotes',
  "expected ':' after a field name",
  "expected ',' or '}' after a value",
  'the text ends inside a list',
  "expected ',' or ']' after a value",
  'expected a value (an object, list, string, number, true, false or null)',
  'more text after the JSON document',
];

const nested = (levels: number) => '['.repeat(levels) + ']'.repeat(levels);

describe('jsonSyntaxError agrees with JSON.parse', () => {
  const SAMPLES: [string, string][] = [
    ['empty text', ''],
    ['a space', ' '],
    ['white space only', ' \t\r\n'],
    ['an empty object', '{}'],
    ['a list', '[1,2]'],
    ['an object', '{"a":1,"b":[true,false,null],"c":{"d":"e"}}'],
    ['numbers', '[0,-0,1.5,-2e10,3E+2,4e-3]'],
    ['escapes', '"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00"'],
    ['a lone surrogate escape', '"\\ud800"'],
    ['white space around a value', ' \n\t{ "a" : [ 1 , 2 ] }\r\n '],
    ['a trailing comma in an object', '{"a":1,}'],
    ['a trailing comma in a list', '[1,]'],
    ['a leading comma', '[,1]'],
    ['a string that never ends', '"abc'],
    ['a raw control character in a string', '"\u0001"'],
    ['a raw newline in a string', '"a\nb"'],
    ['an invalid escape', '"\\x"'],
    ['a short \\u escape', '"\\u12"'],
    ['a \\u escape with a non-hex digit', '"\\u12g4"'],
    ['a leading zero', '01'],
    ['a lone minus', '-'],
    ['an exponent without digits', '1e'],
    ['a fraction without digits', '1.'],
    ['a leading dot', '.5'],
    ['a plus sign', '+1'],
    ['a truncated true', 'tru'],
    ['a truncated null', 'nul'],
    ['a capitalised True', 'True'],
    ['a missing colon', '{"a" 1}'],
    ['an unquoted key', '{a:1}'],
    ['a single-quoted string', "'a'"],
    ['two values', '1 2'],
    ['a byte order mark', '\ufeff{}'],
    ['an unclosed object', '{"a":1'],
    ['an unclosed list', '[1'],
    ['a mismatched bracket', '[1}'],
    ['a stray closing bracket', ']'],
    ['a non-breaking space as white space', '\u00a0{}'],
    ['a vertical tab as white space', '\u000b1'],
    ['NaN', 'NaN'],
    ['a comment', '{} // no'],
    ['32 levels of lists', nested(32)],
    ['64 levels of lists', nested(64)],
    ['70 levels of lists', nested(70)],
    ['70 unclosed levels of lists', '['.repeat(70)],
    ['a number of 500 digits', '1'.repeat(500)],
  ];

  test.each(SAMPLES)('%s: an error exactly when JSON.parse refuses', (_name, text) => {
    const err = jsonSyntaxError(text);
    if (parses(text)) expect(err).toBeNull();
    else {
      expect(err).not.toBeNull();
      expect(REASONS).toContain(err!.reason);
      expect(err!.line).toBeGreaterThanOrEqual(1);
      expect(err!.column).toBeGreaterThanOrEqual(1);
    }
  });

  test('property: valid JSON of any shape gives null', () => {
    fc.assert(
      fc.property(fc.json({ maxDepth: 8 }), fc.constantFrom('', ' ', '\n', '\t', '\r\n'), (json, ws) => {
        expect(jsonSyntaxError(ws + json + ws)).toBeNull();
      }),
      { numRuns: 1000 },
    );
  });

  test('property: a valid text with characters inserted, removed or replaced is judged like JSON.parse', () => {
    const piece = fc.oneof(
      fc.constantFrom(
        '{',
        '}',
        '[',
        ']',
        '"',
        ',',
        ':',
        '\\',
        '0',
        '1',
        '-',
        '+',
        '.',
        'e',
        'E',
        ' ',
        '\n',
        't',
        'n',
        'u',
        '\u0000',
        '\u001f',
        '\ufeff',
        'é',
      ),
      fc.string({ maxLength: 2 }),
    );
    const edit = fc.record({ op: fc.nat(2), pos: fc.nat(), s: piece });
    fc.assert(
      fc.property(fc.json({ maxDepth: 5 }), fc.array(edit, { minLength: 1, maxLength: 3 }), (json, edits) => {
        let t = json;
        for (const e of edits) {
          const pos = e.pos % (t.length + 1);
          if (e.op === 0) t = t.slice(0, pos) + e.s + t.slice(pos);
          else if (e.op === 1) t = t.slice(0, pos) + t.slice(pos + 1);
          else t = t.slice(0, pos) + e.s + t.slice(pos + 1);
        }
        const err = jsonSyntaxError(t);
        expect(err === null, JSON.stringify(t)).toBe(parses(t));
        if (err) {
          expect(REASONS).toContain(err.reason);
          // The position lies within the text (or just past its end).
          const lines = t.split('\n');
          expect(err.line).toBeLessThanOrEqual(lines.length);
          expect(err.column).toBeLessThanOrEqual(lines[err.line - 1]!.length + 1);
        }
      }),
      { numRuns: 3000 },
    );
  });

  test('property: arbitrary text is judged like JSON.parse', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 30 }), fc.string({ maxLength: 30, unit: 'binary' })), (t) => {
        expect(jsonSyntaxError(t) === null, JSON.stringify(t)).toBe(parses(t));
      }),
      { numRuns: 3000 },
    );
  });
});

describe('where and why', () => {
  test.each([
    ['{"a":1,}', 1, 8, 'expected a field name in double quotes'],
    ['[1,]', 1, 4, 'expected a value (an object, list, string, number, true, false or null)'],
    ['"abc', 1, 1, 'a string that never ends'],
    ['"\u0001"', 1, 2, 'a control character inside a string (write it as \\u00XX)'],
    ['"\\x"', 1, 2, 'an invalid escape in a string'],
    ['"\\u12"', 1, 2, 'an invalid \\u escape'],
    ['01', 1, 2, 'more text after the JSON document'],
    ['-', 1, 1, 'an invalid number'],
    ['1e', 1, 2, 'more text after the JSON document'],
    ['tru', 1, 1, 'expected a value (an object, list, string, number, true, false or null)'],
    ['{"a" 1}', 1, 6, "expected ':' after a field name"],
    ['1 2', 1, 3, 'more text after the JSON document'],
    ['\ufeff{}', 1, 1, 'expected a value (an object, list, string, number, true, false or null)'],
    ['', 1, 1, 'the text ends where a value should be'],
    [' ', 1, 2, 'the text ends where a value should be'],
    ['{"a":1', 1, 7, 'the text ends inside an object'],
    ['[1', 1, 3, 'the text ends inside a list'],
    ['[1}', 1, 3, "expected ',' or ']' after a value"],
    ['{"a":1]', 1, 7, "expected ',' or '}' after a value"],
    ['{\n  "a": 1,\n  "b": 2,\n    @\n}', 4, 5, 'expected a field name in double quotes'],
    ['{\r\n  "a": 1,\r\n  "b": 2,\r\n    @\r\n}', 4, 5, 'expected a field name in double quotes'],
    ['[\n1,\n2\n', 4, 1, 'the text ends inside a list'],
    ['{"a": "x\ny"}', 1, 9, 'a control character inside a string (write it as \\u00XX)'],
  ])('%j: line %i column %i, %s', (text, line, column, reason) => {
    expect(parses(text)).toBe(false);
    expect(jsonSyntaxError(text)).toEqual({ line, column, reason });
    expect(describeJsonError(text)).toBe(`invalid JSON at line ${line} column ${column}: ${reason}`);
  });

  test('property: the message never quotes the text', () => {
    const ALNUM = [...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'];
    const planted = fc.string({ unit: fc.constantFrom(...ALNUM), minLength: 4, maxLength: 10 }).map((t) => `zq${t}`);
    const shapes = [
      (s: string) => `{"a": 1} ${s}`,
      (s: string) => `{"${s}" 1}`,
      (s: string) => `{"a": ${s}}`,
      (s: string) => `["${s}`,
      (s: string) => `["\\q${s}"]`,
      (s: string) => `{${s}: 1}`,
      (s: string) => `[1, 2\n  ${s}]`,
    ];
    fc.assert(
      fc.property(planted, fc.nat(shapes.length - 1), (s, k) => {
        const text = shapes[k]!(s);
        expect(parses(text)).toBe(false);
        const message = describeJsonError(text);
        expect(message).toMatch(/^invalid JSON at line \d+ column \d+: /);
        expect(message).not.toContain(s);
        expect(message).not.toMatch(/zq/);
      }),
      { numRuns: 500 },
    );
  });

  test('describeJsonError of a valid text says only "invalid JSON"', () => {
    expect(describeJsonError('{}')).toBe('invalid JSON');
  });
});

describe('lineColumn', () => {
  test('1-based lines and columns; the newline belongs to the line it ends', () => {
    expect(lineColumn('', 0)).toEqual({ line: 1, column: 1 });
    expect(lineColumn('abc', 0)).toEqual({ line: 1, column: 1 });
    expect(lineColumn('abc', 2)).toEqual({ line: 1, column: 3 });
    expect(lineColumn('abc', 3)).toEqual({ line: 1, column: 4 });
    expect(lineColumn('a\nb', 1)).toEqual({ line: 1, column: 2 });
    expect(lineColumn('a\nb', 2)).toEqual({ line: 2, column: 1 });
    expect(lineColumn('a\n\n\nbcd', 6)).toEqual({ line: 4, column: 3 });
    expect(lineColumn('\n', 1)).toEqual({ line: 2, column: 1 });
  });

  test('CRLF: the carriage return is the last column of its line', () => {
    expect(lineColumn('ab\r\ncd', 2)).toEqual({ line: 1, column: 3 });
    expect(lineColumn('ab\r\ncd', 4)).toEqual({ line: 2, column: 1 });
    expect(lineColumn('ab\r\ncd', 5)).toEqual({ line: 2, column: 2 });
  });

  test('property: agrees with counting the newlines before the offset', () => {
    const text = fc.string({ unit: fc.constantFrom('a', 'b', ' ', '\n', '\r', '\t', 'é', '😀'), maxLength: 60 });
    fc.assert(
      fc.property(text, fc.nat(), (t, k) => {
        const offset = k % (t.length + 1);
        const before = t.slice(0, offset);
        const line = before.split('\n').length;
        const column = offset - (before.lastIndexOf('\n') + 1) + 1;
        expect(lineColumn(t, offset)).toEqual({ line, column });
      }),
      { numRuns: 2000 },
    );
  });
});
