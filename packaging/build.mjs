// Builds dist/addrmap.mjs: one file with every dependency inside, runnable as
// `node dist/addrmap.mjs <command>`. Also dist/addrmap.cjs, the same program
// as CommonJS: the entry script of the standalone executable (a Node single
// executable application runs its embedded script as CommonJS).
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';

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
    outfile: new URL('../dist/addrmap.mjs', import.meta.url).pathname,
    format: 'esm',
    target: 'node22',
    // CommonJS dependencies (pino, ajv) call require() for Node built-ins.
    banner: {
      js: "#!/usr/bin/env node\nimport { createRequire as __addrmapCreateRequire } from 'node:module';\nconst require = __addrmapCreateRequire(import.meta.url);",
    },
  }),
  build({
    ...common,
    outfile: new URL('../dist/addrmap.cjs', import.meta.url).pathname,
    format: 'cjs',
    target: 'node24',
  }),
]);
