// The shared libraries the standalone executable, its FFI addon and
// libnftables load, taken from Debian's own packages for the target
// architecture (any architecture, from this machine): apt-get download with a
// private apt state over the machine's apt sources, then dpkg-deb -x. The
// machine's own apt configuration and package lists are left as they are.
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, readlink, realpath, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { readElfFile } from './elf.mjs';

/** Every package a library of the closure comes from (checked: a soname found in none of them fails the build). */
export const PACKAGES = [
  'libc6',
  'libstdc++6',
  'libgcc-s1',
  'libnftables1',
  'libmnl0',
  'libnftnl11',
  'libxtables12',
  'libjansson4',
  'libgmp10',
];

const TRIPLET = { amd64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' };
export const LOADER = { amd64: 'ld-linux-x86-64.so.2', arm64: 'ld-linux-aarch64.so.1' };
/** Package lists older than this are fetched again. */
const LISTS_MAX_AGE_MS = 24 * 3600_000;

/**
 * Downloads (or reuses) PACKAGES for `arch` and unpacks them into `into`.
 * @returns {Promise<{ name: string, version: string, arch: string }[]>}
 */
export async function fetchPackages({ arch, cacheDir, into, run }) {
  const apt = join(cacheDir, `apt-${arch}`);
  for (const d of ['lists/partial', 'cache/archives/partial', 'parts', 'debs']) await mkdir(join(apt, d), { recursive: true });
  // The machine's sources, as they are at run time (the mirror is never written down here).
  const sourceList = join(apt, 'sources.list');
  await writeFile(sourceList, existsSync('/etc/apt/sources.list') ? await readFile('/etc/apt/sources.list') : '');
  const partsDir = '/etc/apt/sources.list.d';
  for (const f of existsSync(partsDir) ? await readdir(partsDir) : []) {
    if (/\.(list|sources)$/.test(f)) await copyFile(join(partsDir, f), join(apt, 'parts', f));
  }
  await writeFile(join(apt, 'status'), '');
  const opts = [
    ['Dir::State::Lists', join(apt, 'lists')],
    ['Dir::State::status', join(apt, 'status')],
    ['Dir::Cache', join(apt, 'cache')],
    ['Dir::Etc::SourceList', sourceList],
    ['Dir::Etc::SourceParts', join(apt, 'parts')],
    ['APT::Architecture', arch],
    ['APT::Architectures', arch],
    ['Acquire::Languages', 'none'],
    ['APT::Sandbox::User', 'root'],
    ['Debug::NoLocking', '1'],
  ].flatMap(([k, v]) => ['-o', `${k}=${v}`]);
  const stamp = join(apt, 'lists', '.updated');
  const age = await stat(stamp).then(
    (s) => Date.now() - s.mtimeMs,
    () => Infinity,
  );
  if (age > LISTS_MAX_AGE_MS) {
    await run('apt-get', [...opts, '-q', 'update']);
    await writeFile(stamp, '');
  }
  const packages = [];
  const fetch = async (name) => {
    const shown = (await run('apt-cache', [...opts, 'show', '--no-all-versions', `${name}:${arch}`])).stdout;
    const version = /^Version: (.+)$/m.exec(shown)?.[1];
    if (!version) throw new Error(`apt-cache shows no version of ${name}:${arch}`);
    const file = join(apt, 'debs', `${name}_${version.replace(':', '%3a')}_${arch}.deb`);
    if (!existsSync(file)) await run('apt-get', [...opts, '-q', 'download', `${name}:${arch}=${version}`], { cwd: join(apt, 'debs') });
    if (!existsSync(file)) throw new Error(`apt-get download left no ${basename(file)}`);
    await run('dpkg-deb', ['-x', file, into]);
    packages.push({ name, version, arch });
  };
  for (const name of PACKAGES) await fetch(name);
  // Some keep their copyright file in another package's directory (libstdc++6
  // and libgcc-s1 link to gcc-N-base's): that package comes too, for it.
  const docs = join(into, 'usr/share/doc');
  for (const d of await readdir(docs)) {
    const target = await readlink(join(docs, d)).catch(() => null);
    if (target && !target.includes('/') && !existsSync(join(docs, target))) await fetch(target);
  }
  return packages;
}

/**
 * Copies into `libDir` every library that `roots` (ELF files) need, and what
 * those need in turn, found in the unpacked packages; each under its soname.
 * @returns {Promise<string[]>} the sonames copied
 */
export async function copyClosure({ arch, unpacked, roots, libDir, extra = [] }) {
  const dirs = [`lib/${TRIPLET[arch]}`, `usr/lib/${TRIPLET[arch]}`, 'lib64', 'lib', 'usr/lib'].map((d) => join(unpacked, d));
  const copied = new Set();
  const queue = [...extra];
  for (const r of roots) queue.push(...(await readElfFile(r)).needed);
  await mkdir(libDir, { recursive: true });
  while (queue.length) {
    const soname = queue.shift();
    if (copied.has(soname)) continue;
    const from = dirs.map((d) => join(d, soname)).find((p) => existsSync(p));
    if (!from) throw new Error(`${soname} (${arch}) is in none of the packages ${PACKAGES.join(', ')}`);
    // The file itself, not the link the package ships under the soname.
    await copyFile(await realpath(from), join(libDir, soname));
    copied.add(soname);
    queue.push(...(await readElfFile(from)).needed);
  }
  return [...copied].sort();
}
