// Type-checked linting of the agent and its tests (typescript-eslint).
// Exceptions are few and each says why, here or at the line.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const NODE_GLOBALS = [
  'process',
  'console',
  'Buffer',
  'setTimeout',
  'clearTimeout',
  'setInterval',
  'clearInterval',
  'setImmediate',
  'URL',
  'performance',
  'fetch',
];

export default tseslint.config(
  { ignores: ['dist/', 'out/', 'node_modules/', 'src/input/mapping-file.validate.ts', 'test/bench/results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // Unused bindings are errors, except a deliberately ignored `_name`.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Interface methods are async by contract; an implementation that needs no await (the fake) still returns a promise.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // Tests read the JSON the agent printed (logs, status, listings): its
    // shape is what they assert, so it is not typed first.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      // Terminal escapes are what the escaping tests plant and look for.
      'no-control-regex': 'off',
    },
  },
  {
    // Plain ESM scripts (benchmarks, packaging, test helpers): not in the TypeScript project.
    files: ['**/*.mjs', '**/*.cjs', '**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      globals: Object.fromEntries(NODE_GLOBALS.map((g) => [g, 'readonly'])),
    },
  },
  {
    // CommonJS preloads (node --require) for tests: require is how they load.
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', module: 'writable' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
