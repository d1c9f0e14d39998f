import { defineConfig } from 'vitest/config';

// The scenario that runs inside each VM of the kernel matrix. Software
// emulation is several times slower than the host: generous timeouts, one
// file, no parallelism.
export default defineConfig({
  test: {
    include: ['test/vm/scenario.vm.ts'],
    // A serial console is a terminal: the default reporter would redraw its progress there.
    reporters: ['verbose', './test/support/summary-reporter.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
  },
});
