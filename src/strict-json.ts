// JSON.parse keeps the last of duplicate keys silently, so {"from": A, "from": B}
// would mean B to us and maybe A to whoever reviewed the file. This scan runs
// before JSON.parse and refuses duplicates and absurd nesting. It is iterative,
// so hostile input cannot exhaust the stack.

export const MAX_DEPTH = 32;

/** A description of the first problem, or null. Syntax errors are left to JSON.parse. */
export function strictJsonProblem(text: string): string | null {
  const stack: { keys: Set<string> | null; expectKey: boolean }[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const start = i;
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
      const top = stack.at(-1);
      if (top?.keys && top.expectKey) {
        let key: string;
        try {
          key = JSON.parse(text.slice(start, i + 1)) as string;
        } catch {
          return null; // malformed: JSON.parse will say where
        }
        if (top.keys.has(key)) return `duplicate key ${JSON.stringify(key)} at position ${start}`;
        top.keys.add(key);
        top.expectKey = false;
      }
    } else if (c === '{' || c === '[') {
      if (stack.length >= MAX_DEPTH) return `nested more than ${MAX_DEPTH} levels deep`;
      stack.push({ keys: c === '{' ? new Set() : null, expectKey: c === '{' });
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',') {
      const top = stack.at(-1);
      if (top?.keys) top.expectKey = true;
    }
  }
  return null;
}
