import { readFile } from 'node:fs/promises';
import { expect, test } from 'vitest';
// @ts-expect-error: a build script without type declarations
import { generateValidator, VALIDATOR } from '../../../packaging/validator.mjs';

test('the committed schema validator is what the schema compiles to now (else: npm run generate)', async () => {
  expect(await readFile(VALIDATOR, 'utf8')).toBe(await generateValidator());
});
