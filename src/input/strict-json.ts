// JSON.parse keeps the last of duplicate keys silently, so {"from": A, "from": B}
// would mean B to us and maybe A to whoever reviewed the file. This scan runs
// before JSON.parse and refuses duplicates, absurd nesting, and more values
// than any valid file holds (32 MiB of "[]," would be millions of arrays for
// JSON.parse to build, hundreds of MiB, before the schema could refuse them).
// It is iterative, so hostile input cannot exhaust the stack.

import { lineColumn } from './json-syntax.js';

const MAX_DEPTH = 32;
/**
 * Objects and lists, and commas between values: a mapping file at its schema
 * limit (200,000 entries of four fields) counts 1,000,000; a config file a
 * few dozen. No more than a valid file's worth is ever built.
 */
export const MAX_VALUES = 1_200_000;

/** A description of the first problem, or null. Syntax errors are left to JSON.parse. */
export function strictJsonProblem(text: string): string | null {
  const stack: { keys: Set<string> | null; expectKey: boolean }[] = [];
  const n = text.length;
  let values = 0;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      const start = i;
      let escaped = false;
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 34) break;
        if (d === 92 /* \ */) {
          escaped = true;
          i++;
        }
      }
      const top = stack[stack.length - 1];
      if (top?.keys && top.expectKey) {
        let key: string;
        if (escaped) {
          try {
            key = JSON.parse(text.slice(start, i + 1)) as string;
          } catch {
            return null; // malformed: JSON.parse will say where
          }
        } else key = text.slice(start + 1, i);
        if (top.keys.has(key)) {
          const { line, column } = lineColumn(text, start);
          return `a field appears twice in one object (the second at line ${line} column ${column})`;
        }
        top.keys.add(key);
        top.expectKey = false;
      }
    } else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (stack.length >= MAX_DEPTH) return `nested more than ${MAX_DEPTH} levels deep`;
      if (++values > MAX_VALUES) return `more than ${MAX_VALUES} values`;
      stack.push({ keys: c === 123 ? new Set() : null, expectKey: c === 123 });
    } else if (c === 125 /* } */ || c === 93 /* ] */) {
      stack.pop();
    } else if (c === 44 /* , */) {
      if (++values > MAX_VALUES) return `more than ${MAX_VALUES} values`;
      const top = stack[stack.length - 1];
      if (top?.keys) top.expectKey = true;
    }
  }
  return null;
}
