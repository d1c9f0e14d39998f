import { defineConfig } from 'vitest/config';

// The kernel matrix: each test boots a Debian kernel in QEMU (software
// emulation) and runs a scenario inside it. Run after the host suite, alone:
// the VMs take both cores, and the host's timing-sensitive tests must not
// share them.
export default defineConfig({
  test: {
    include: ['test/vm/matrix.test.ts'],
    reporters: ['default', './test/support/summary-reporter.ts'],
    testTimeout: 30 * 60_000,
    hookTimeout: 30 * 60_000,
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    sequence: { concurrent: false },
  },
});
