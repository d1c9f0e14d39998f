// Builds dist/addrmap.mjs: one file with every dependency inside, runnable as
// `node dist/addrmap.mjs <command>`.
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';

const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));

await build({
  entryPoints: [new URL('../src/main.ts', import.meta.url).pathname],
  outfile: new URL('../dist/addrmap.mjs', import.meta.url).pathname,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node22',
  minify: false,
  legalComments: 'none',
  define: { ADDRMAP_VERSION: JSON.stringify(pkg.version) },
  // CommonJS dependencies (pino, ajv) call require() for Node built-ins.
  banner: {
    js: "#!/usr/bin/env node\nimport { createRequire as __addrmapCreateRequire } from 'node:module';\nconst require = __addrmapCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
