// Checks that an install tree is self-contained: every ELF file in it names an
// interpreter inside the tree (or none) and finds every library it needs
// through its own search path, inside the tree. Nothing is taken from the
// machine it is checked on, so it checks either architecture's tree.
//
//   node packaging/check-tree.mjs ROOT     (prints one line per ELF; exit 1 on a miss)
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isElf, readElf } from './elf.mjs';

/**
 * @returns {Promise<{ files: { path: string, machine: string, interpreter: string | null, needed: string[] }[], problems: string[] }>}
 */
export async function checkTree(root) {
  const files = [];
  const problems = [];
  for (const e of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const abs = join(e.parentPath, e.name);
    const buf = await readFile(abs);
    if (!isElf(buf)) continue;
    const path = '/' + relative(root, abs);
    const elf = readElf(buf, path);
    files.push({ path, machine: elf.machine, interpreter: elf.interpreter, needed: elf.needed });
    if (elf.interpreter && !existsSync(join(root, elf.interpreter)))
      problems.push(`${path}: interpreter ${elf.interpreter} is not in the tree`);
    // DT_RUNPATH, when present, replaces DT_RPATH for the loader.
    const dirs = (elf.runpath.length ? elf.runpath : elf.rpath).map((d) => d.replaceAll('$ORIGIN', dirname(path)));
    for (const lib of elf.needed) {
      if (!dirs.some((d) => d.startsWith('/') && existsSync(join(root, d, lib))))
        problems.push(`${path}: ${lib} not found in the tree (search path: ${dirs.join(':') || 'none'})`);
    }
  }
  const machines = new Set(files.map((f) => f.machine));
  if (machines.size > 1) problems.push(`ELF files of more than one architecture: ${[...machines].join(', ')}`);
  return { files, problems };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const root = process.argv[2];
  if (!root) {
    process.stderr.write('usage: node packaging/check-tree.mjs ROOT\n');
    process.exit(2);
  }
  const { files, problems } = await checkTree(root);
  for (const f of files) process.stdout.write(`${f.path} (${f.machine}): ${f.needed.join(' ') || '-'}\n`);
  for (const p of problems) process.stderr.write(`check-tree: ${p}\n`);
  process.stdout.write(`${files.length} ELF files, ${problems.length} problems\n`);
  process.exit(problems.length ? 1 : 0);
}
