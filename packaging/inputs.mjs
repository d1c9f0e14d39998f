// What `npm run package` is built from, and a content hash over it, so that a
// caller (the guest tests) can tell whether out/ is current.
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';

export const INPUTS = ['src', 'init', 'packaging', 'package.json', 'package-lock.json', 'README.md', 'docs'];

export async function inputsHash(root) {
  const files = [];
  for (const entry of INPUTS) {
    const path = join(root, entry);
    try {
      for (const e of await readdir(path, { withFileTypes: true, recursive: true })) {
        if (e.isFile()) files.push(join(e.parentPath, e.name));
      }
    } catch (e) {
      if (e.code !== 'ENOTDIR') throw e;
      files.push(path);
    }
  }
  const h = createHash('sha256');
  for (const f of files.sort()) {
    h.update(relative(root, f) + '\0');
    h.update(await readFile(f));
    h.update('\0');
  }
  return h.digest('hex');
}
