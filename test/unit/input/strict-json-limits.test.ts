// A file near the size cap made of nothing but nesting or tiny values is
// refused by the pre-scan, before JSON.parse builds it.
import { describe, expect, test } from 'vitest';
import { MappingFileError, parseMappingFile } from '../../../src/input/mapping-file.js';
import { MAX_VALUES, strictJsonProblem } from '../../../src/input/strict-json.js';

const refusal = (text: string) => {
  try {
    parseMappingFile(text);
  } catch (e) {
    if (e instanceof MappingFileError) return e.message;
    throw e;
  }
  throw new Error('accepted');
};

describe('values and nesting near the size cap', () => {
  test('30 MiB of "[" is refused at the 33rd level', () => {
    expect(refusal('['.repeat(30 * 2 ** 20))).toBe('invalid JSON: nested more than 32 levels deep');
  });

  test('millions of empty lists (about 30 MiB) are refused without being built', () => {
    const text = `{"version":1,"generation":1,"mappings":[${'[],'.repeat(10_000_000)}[]]}`;
    const before = process.memoryUsage().heapUsed;
    expect(refusal(text)).toBe(`invalid JSON: more than ${MAX_VALUES} values`);
    // 10 million arrays would take several hundred MiB of heap.
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(64 * 2 ** 20);
  });

  test('millions of tiny values between commas are refused the same way', () => {
    expect(strictJsonProblem(`[${'1,'.repeat(2_000_000)}1]`)).toBe(`more than ${MAX_VALUES} values`);
  });

  test('a file at the schema limit (200,000 mappings with expiry and comment) is within it', () => {
    const entries = Array.from(
      { length: 200_000 },
      (_, i) => `{"from":"fd00::${(i + 1).toString(16)}","to":"fdaa::1","expires":"2030-01-01T00:00:00Z","comment":"c"}`,
    );
    expect(strictJsonProblem(`{"version":1,"generation":1,"mappings":[${entries.join(',')}]}`)).toBeNull();
  });
});
