// Where a JSON text breaks, and why, in words that never quote it: V8's
// JSON.parse messages include pieces of the text ("Unexpected token 'x',
// "...secret..." is not valid JSON"), and a refusal is shown in status to
// anyone on the guest. Used only after JSON.parse has failed, to explain it.

export interface JsonSyntaxError {
  /** 1-based, as editors count. */
  line: number;
  column: number;
  reason: string;
}

/** Beyond this the explanation stops (the pre-scan refuses past 32 levels, long before). */
const DEPTH = 1000;
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

class Stop extends Error {
  constructor(
    readonly offset: number,
    readonly reason: string,
  ) {
    super(reason);
  }
}

/** The first syntax error of `text`, or null if it is valid JSON. */
export function jsonSyntaxError(text: string): JsonSyntaxError | null {
  let i = 0;
  const n = text.length;
  const ws = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      i++;
    }
  };
  const fail = (reason: string, at = i): never => {
    throw new Stop(at, reason);
  };
  const string = () => {
    const start = i++;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return;
      }
      if (c < 0x20) fail('a control character inside a string (write it as \\u00XX)');
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) fail('an invalid \\u escape');
          i += 6;
          continue;
        }
        if (e === undefined || !'"\\/bfnrt'.includes(e)) fail('an invalid escape in a string');
        i += 2;
        continue;
      }
      i++;
    }
    fail('a string that never ends', start);
  };
  const number = () => {
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) fail('an invalid number');
    i += m![0].length;
  };
  const value = (depth: number): void => {
    if (depth > DEPTH) fail('nested too deep');
    ws();
    if (i >= n) fail('the text ends where a value should be');
    const c = text[i]!;
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail(i >= n ? 'the text ends inside an object' : 'expected a field name in double quotes');
        string();
        ws();
        if (text[i] !== ':') fail("expected ':' after a field name");
        i++;
        value(depth + 1);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return;
        }
        fail(i >= n ? 'the text ends inside an object' : "expected ',' or '}' after a value");
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        value(depth + 1);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return;
        }
        fail(i >= n ? 'the text ends inside a list' : "expected ',' or ']' after a value");
      }
    }
    if (c === '"') return string();
    if (c === '-' || (c >= '0' && c <= '9')) return number();
    for (const word of ['true', 'false', 'null']) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return;
      }
    }
    fail('expected a value (an object, list, string, number, true, false or null)');
  };
  try {
    value(0);
    ws();
    if (i < n) fail('more text after the JSON document');
    return null;
  } catch (e) {
    if (!(e instanceof Stop)) throw e;
    return { ...lineColumn(text, e.offset), reason: e.reason };
  }
}

/** Line and column (1-based) of an offset into text. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let k = text.indexOf('\n'); k !== -1 && k < offset; k = text.indexOf('\n', k + 1)) {
    line++;
    lineStart = k + 1;
  }
  return { line, column: offset - lineStart + 1 };
}

/** "invalid JSON at line 3 column 7: expected ..." for a text JSON.parse refused. */
export function describeJsonError(text: string): string {
  const e = jsonSyntaxError(text);
  return e ? `invalid JSON at line ${e.line} column ${e.column}: ${e.reason}` : 'invalid JSON';
}
