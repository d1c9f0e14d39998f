import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The kernel matrix runs after this suite, on its own (test/vm/matrix.config.ts).
    exclude: ['test/vm/**', '**/node_modules/**'],
    reporters: ['default', './test/support/summary-reporter.ts'],
    // Kernel tests spawn processes in network namespaces and wait for real
    // traffic; they are slow compared with unit tests but bounded.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});
