// Builds dist/addrmap.mjs: one file with every dependency inside, runnable as
// `node dist/addrmap.mjs <command>`. Also dist/addrmap.cjs, the same program
// as CommonJS: the entry script of the standalone executable (a Node single
// executable application runs its embedded script as CommonJS).
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';

// ADDRMAP_BUILD_DIR: another output directory (one per worker when several
// build and test the same checkout at once; the kernel tests then take the
// bundle from ADDRMAP_TEST_BUNDLE).
const outDir = process.env.ADDRMAP_BUILD_DIR
  ? `${process.env.ADDRMAP_BUILD_DIR.replace(/\/$/, '')}/`
  : new URL('../dist/', import.meta.url).pathname;
const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));

const common = {
  entryPoints: [new URL('../src/cli/main.ts', import.meta.url).pathname],
  bundle: true,
  platform: 'node',
  minify: false,
  legalComments: 'none',
  define: { ADDRMAP_VERSION: JSON.stringify(pkg.version) },
  logLevel: 'warning',
};

await Promise.all([
  build({
    ...common,
    outfile: `${outDir}addrmap.mjs`,
    format: 'esm',
    target: 'node22',
    // CommonJS dependencies (pino, ajv) call require() for Node built-ins.
    banner: {
      js: "#!/usr/bin/env node\nimport { createRequire as __addrmapCreateRequire } from 'node:module';\nconst require = __addrmapCreateRequire(import.meta.url);",
    },
  }),
  build({
    ...common,
    outfile: `${outDir}addrmap.cjs`,
    format: 'cjs',
    target: 'node24',
  }),
]);
