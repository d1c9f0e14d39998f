// Builds every artifact for baking addrmap into guest images, into out/, for
// x86-64 and arm64 (ADDRMAP_ARCHES=x64 or arm64 builds one):
//
//   out/addrmap_<version>_<deb arch>.deb         Debian package
//   out/addrmap-<version>-linux-<arch>.tar.gz    the same files for any image, laid
//                                                out relative to / (tar -C / -xzf)
//   out/addrmap                                  this machine's architecture: the
//                                                executable on the machine's own
//                                                glibc (benchmarks, quick checks)
//   out/SHA256SUMS
//   out/BUILD-INFO.json                          versions (the bundled Debian
//                                                packages' too), sizes, inputs hash
//
// Both packages install a self-contained tree: the executable (Node single
// executable application), the FFI addon, and every shared library they and
// libnftables load (glibc included) from Debian's packages for that
// architecture, in /usr/lib/addrmap/lib, the executable's interpreter and
// search paths pointed there (patchelf). It needs nothing from the image.
//
// Run as `npm run package` on Debian or Ubuntu: it needs dpkg-deb, apt-get,
// patchelf, strip for each architecture (binutils, binutils-aarch64-linux-gnu)
// and, to run the arm64 executable once, qemu-user-static
// (test/guest/docker-setup.sh installs them). Every program is run with an
// argument vector, never through a shell.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { constants as zlibConstants, createGzip, gzipSync } from 'node:zlib';
import { checkTree } from './check-tree.mjs';
import { copyClosure, fetchPackages, LOADER } from './debian-libraries.mjs';
import { readElfFile } from './elf.mjs';
import { inputsHash } from './inputs.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OUT = join(ROOT, 'out');
const WORK = join(OUT, '.build');
const require = createRequire(import.meta.url);
const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8'));
const VERSION = pkg.version;
const ARCHES = {
  x64: { deb: 'amd64', node: 'x64', triplet: 'x86_64-linux-gnu', qemu: null },
  arm64: { deb: 'arm64', node: 'arm64', triplet: 'aarch64-linux-gnu', qemu: 'qemu-aarch64-static' },
};
const HOST = ARCHES[process.arch];
if (!HOST) throw new Error(`unsupported architecture ${process.arch}`);
const wanted = (process.env.ADDRMAP_ARCHES ?? 'x64,arm64').split(',').filter(Boolean);
for (const a of wanted) if (!ARCHES[a]) throw new Error(`ADDRMAP_ARCHES: unknown architecture ${a} (x64, arm64)`);
// Downloads kept between builds: Node for other architectures, Debian's packages.
const CACHE = join(OUT, '.cache');
/** Where the tree's libraries are installed; the executable's interpreter is an absolute path into it. */
const LIB_DIR = 'usr/lib/addrmap/lib';
// The fuse Node looks for to tell a single executable application (Node's docs).
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

const started = Date.now();
const step = (what) => process.stdout.write(`package: ${what} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);

function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], shell: false, ...opts });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', (e) =>
      reject(e.code === 'ENOENT' ? new Error(`${cmd}: not found (test/guest/docker-setup.sh installs what packaging needs)`) : e),
    );
    child.on('close', (code) =>
      code === 0 ? resolve({ stdout, stderr }) : reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}:\n${stderr}${stdout}`)),
    );
  });
}

async function have(cmd) {
  try {
    await run(cmd, ['--version']);
    return true;
  } catch {
    return false;
  }
}

// Timestamps of everything packed: the last commit's, so rebuilding the same
// commit gives the same archives.
async function sourceDateEpoch() {
  if (process.env.SOURCE_DATE_EPOCH) return Number(process.env.SOURCE_DATE_EPOCH);
  try {
    return Number((await run('git', ['-C', ROOT, 'log', '-1', '--format=%ct'])).stdout.trim());
  } catch {
    return Math.floor(Date.now() / 1000);
  }
}

// ---- 1. the bundles --------------------------------------------------------
const inputs = await inputsHash(ROOT);
await rm(join(OUT, 'BUILD-INFO.json'), { force: true });
await rm(WORK, { recursive: true, force: true });
await mkdir(WORK, { recursive: true });
await run(process.execPath, [join(ROOT, 'packaging/build.mjs')]);
await chmod(join(ROOT, 'dist/addrmap.mjs'), 0o755);
step('bundled dist/addrmap.mjs and dist/addrmap.cjs');

// ---- 2. the SEA blob (the same for every architecture: no snapshot, no code cache) ----
// The project's pinned Node (the `node` devDependency) both prepares the blob
// and is the executables' runtime: the two must be the same version.
const nodeBin = join(dirname(require.resolve('node/package.json')), 'bin/node');
const nodeVersion = (await run(nodeBin, ['--version'])).stdout.trim();
if (nodeVersion !== `v${pkg.devDependencies.node}`) {
  throw new Error(`${nodeBin} is ${nodeVersion}, expected the pinned v${pkg.devDependencies.node}; run npm ci`);
}
const seaConfig = join(WORK, 'sea-config.json');
const blob = join(WORK, 'sea.blob');
await writeFile(
  seaConfig,
  JSON.stringify({
    main: join(ROOT, 'dist/addrmap.cjs'),
    output: blob,
    disableExperimentalSEAWarning: true,
    useSnapshot: false,
    // A code cache is made under the generating process's V8 flags; with the
    // execArgv below V8 rejects it at every start (a warning on stderr and
    // no gain), so none is embedded. (It would also tie the blob to this
    // machine's architecture.)
    useCodeCache: false,
    // Guests may have 256 MB: a small young generation keeps the bursts of
    // garbage from parsing a push or listing a large table from staying
    // resident (measured with 10k mappings: 158 MiB idle by default, 92 MiB
    // with these). NODE_OPTIONS cannot change them (execArgvExtension none).
    execArgv: ['--max-semi-space-size=1', '--optimize-for-size'],
    execArgvExtension: 'none',
  }),
);
await run(nodeBin, ['--experimental-sea-config', seaConfig], { cwd: WORK });
const koffiVersion = JSON.parse(await readFile(join(ROOT, 'node_modules/koffi/package.json'), 'utf8')).version;

/** A registry package's file, downloaded once into the cache (npm pack: the registry npm is configured with). */
async function fromRegistry(spec, inside) {
  const dir = join(CACHE, 'npm', spec.replace(/[@/]/g, '_'));
  const file = join(dir, inside);
  if (existsSync(file)) return file;
  await mkdir(dir, { recursive: true });
  const packed = (await run('npm', ['pack', '--silent', spec], { cwd: dir })).stdout.trim().split('\n').pop();
  await run('tar', ['-xzf', join(dir, packed), '-C', dir, inside]);
  await rm(join(dir, packed));
  return file;
}

/** Node's binary and koffi's addon for an architecture: this machine's from node_modules, another's from the registry. */
async function runtimeFor(a) {
  if (a === HOST) {
    return { node: nodeBin, koffi: require.resolve(`@koromix/koffi-linux-${a.node}/linux_${a.node}/koffi.node`) };
  }
  return {
    node: await fromRegistry(`node-linux-${a.node}@${pkg.devDependencies.node}`, 'package/bin/node'),
    koffi: await fromRegistry(`@koromix/koffi-linux-${a.node}@${koffiVersion}`, `package/linux_${a.node}/koffi.node`),
  };
}

async function stripFor(a) {
  for (const tool of [`${a.triplet}-strip`, ...(a === HOST ? ['strip'] : [])]) if (await have(tool)) return tool;
  return null;
}

/** Runs the tree's executable on this machine (directly, or under qemu-user for another architecture) with the tree as /. */
async function runInTree(a, root, args) {
  const exe = join(root, 'usr/bin/addrmap');
  if (a === HOST) {
    // The interpreter is an absolute path into the installed tree: here the tree is not installed, so the loader is named.
    return run(join(root, LIB_DIR, LOADER[a.deb]), ['--library-path', join(root, LIB_DIR), exe, ...args], { env: { PATH: '' } });
  }
  // qemu-user looks the interpreter up under -L. Found on this PATH; the executable gets none.
  const qemu = (process.env.PATH ?? '')
    .split(':')
    .map((d) => join(d, a.qemu))
    .find((p) => existsSync(p));
  if (!qemu) throw new Error(`${a.qemu}: not found (test/guest/docker-setup.sh installs what packaging needs)`);
  return run(qemu, ['-L', root, exe, ...args], { env: { PATH: '' } });
}

// ---- 3. the file tree both packages install ---------------------------------
const epoch = await sourceDateEpoch();
const manPage = gzipSync((await readFile(join(ROOT, 'packaging/addrmap.8'), 'utf8')).replaceAll('@VERSION@', VERSION), {
  level: zlibConstants.Z_BEST_COMPRESSION,
});
const copyright = `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: addrmap
License: Apache-2.0

Files: *
Copyright: the addrmap authors
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
 The executable contains Node.js (MIT License) and the JavaScript
 dependencies listed in package.json (MIT, ISC, BSD-2-Clause, Apache-2.0).
 The libraries in /usr/lib/addrmap/lib are Debian's (glibc, GCC's runtime,
 libnftables and what it links); each package's copyright file is in
 /usr/share/doc/addrmap/bundled/<package>/copyright.
`;

const DOCS = ['architecture.md', 'benchmarks.md', 'guarantees.md', 'images.md', 'operations.md', 'testing.md'];

/** [path in the package, source file or content, mode] */
function tree(systemdDir, built) {
  const src = (p) => ({ file: join(ROOT, p) });
  return [
    ['usr/bin/addrmap', { file: built.exe }, 0o755],
    ['usr/bin/addrmap-entrypoint', src('init/entrypoint/addrmap-entrypoint'), 0o755],
    // The FFI addon for in-process kernel access; the executable looks for it
    // in ../lib/addrmap beside itself.
    ['usr/lib/addrmap/koffi.node', { file: built.koffi }, 0o644],
    // The loader and libc can be run (libc prints its version): executable, as Debian ships them.
    ...built.libraries.map((l) => [`${LIB_DIR}/${l}`, { file: join(built.libDir, l) }, built.runnable.has(l) ? 0o755 : 0o644]),
    ...built.copyrights.map(([name, file]) => [`usr/share/doc/addrmap/bundled/${name}/copyright`, { file }, 0o644]),
    ['etc/addrmap/config.json', src('packaging/config.json'), 0o644],
    ['etc/default/addrmap', src('init/systemd/addrmap.default'), 0o644],
    [`${systemdDir}/addrmap.service`, src('init/systemd/addrmap.service'), 0o644],
    // The mode without a resident agent, chosen at image bake time (docs/images.md).
    [`${systemdDir}/addrmap-apply.service`, src('init/systemd/addrmap-apply.service'), 0o644],
    [`${systemdDir}/addrmap-apply.path`, src('init/systemd/addrmap-apply.path'), 0o644],
    [`${systemdDir}/addrmap-check.timer`, src('init/systemd/addrmap-check.timer'), 0o644],
    ['usr/share/addrmap/mapping-file.schema.json', src('src/input/mapping-file.schema.json'), 0o644],
    ['usr/share/addrmap/init/openrc/addrmap', src('init/openrc/addrmap'), 0o755],
    ['usr/share/addrmap/init/openrc/addrmap.confd', src('init/openrc/addrmap.confd'), 0o644],
    ['usr/share/addrmap/init/runit/run', src('init/runit/run'), 0o755],
    ['usr/share/addrmap/init/runit/check', src('init/runit/check'), 0o755],
    ['usr/share/man/man8/addrmap.8.gz', { content: manPage }, 0o644],
    ['usr/share/doc/addrmap/README.md', src('README.md'), 0o644],
    // The rest of the documentation, where README's links expect it.
    ...DOCS.map((d) => [`usr/share/doc/addrmap/docs/${d}`, src(`docs/${d}`), 0o644]),
    ['usr/share/doc/addrmap/copyright', { content: copyright }, 0o644],
  ];
}

async function stage(dir, entries) {
  for (const [path, from, mode] of entries) {
    const dest = join(dir, path);
    await mkdir(dirname(dest), { recursive: true });
    if (from.file) await copyFile(from.file, dest);
    else await writeFile(dest, from.content);
    await chmod(dest, mode);
  }
  await touchAll(dir);
}

async function touchAll(dir) {
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) await utimes(join(e.parentPath, e.name), epoch, epoch);
  await utimes(dir, epoch, epoch);
}

async function md5(file) {
  const h = createHash('md5');
  await pipeline(createReadStream(file), h);
  return h.digest('hex');
}

const installedKiBOf = async (root, files) => {
  let kib = 0;
  for (const [path] of files) kib += Math.ceil((await stat(join(root, path))).size / 1024);
  return kib;
};

/** The executable, the libraries and both packages for one architecture. */
async function buildArch(a) {
  const work = join(WORK, a.node);
  await mkdir(work, { recursive: true });
  const runtime = await runtimeFor(a);

  // The executable: Node with the blob injected.
  const exe = join(work, 'addrmap');
  await copyFile(runtime.node, exe);
  await chmod(exe, 0o755);
  const strip = await stripFor(a);
  // Node's release binary carries symbols and debug information (17 MB); the
  // blob is injected afterwards, so stripping cannot touch it.
  if (strip) await run(strip, ['--strip-all', exe]);
  else process.stdout.write(`package: no strip for ${a.node} found: the executable keeps its symbols (about 17 MB more)\n`);
  // postject's ELF parser warns about Node's many note sections; its output is
  // shown only when it fails.
  await run(process.execPath, [
    join(dirname(require.resolve('postject/package.json')), 'dist/cli.js'),
    exe,
    'NODE_SEA_BLOB',
    blob,
    '--sentinel-fuse',
    SEA_FUSE,
  ]);

  // The libraries: what the executable, the addon and libnftables load, from Debian's packages.
  const unpacked = join(work, 'debs');
  await mkdir(unpacked);
  const packages = await fetchPackages({ arch: a.deb, cacheDir: CACHE, into: unpacked, run });
  const libDir = join(work, 'lib');
  const libraries = await copyClosure({
    arch: a.deb,
    unpacked,
    roots: [exe, runtime.koffi],
    libDir,
    extra: ['libnftables.so.1', LOADER[a.deb]],
  });
  // Every package's copyright file, the one it links to where it has none of its own.
  const copyrights = packages.map((p) => [p.name, join(unpacked, 'usr/share/doc', p.name, 'copyright')]);
  for (const [name, file] of copyrights) if (!existsSync(file)) throw new Error(`no copyright file for the bundled package ${name}`);

  // Pointed into the tree: the interpreter (an absolute path: the kernel
  // takes no other) and each file's library path. DT_RPATH rather than
  // RUNPATH: it is searched before LD_LIBRARY_PATH, so the guest's
  // environment cannot swap a library in, and it covers what libnftables
  // loads in turn.
  const treeExe = join(work, 'addrmap.tree');
  await copyFile(exe, treeExe);
  const loader = `/${LIB_DIR}/${LOADER[a.deb]}`;
  await run('patchelf', ['--set-interpreter', loader, '--force-rpath', '--set-rpath', '$ORIGIN/../lib/addrmap/lib', treeExe]);
  const koffi = join(work, 'koffi.node');
  await copyFile(runtime.koffi, koffi);
  await run('patchelf', ['--force-rpath', '--set-rpath', '$ORIGIN/lib', koffi]);
  const runnable = new Set([LOADER[a.deb]]);
  for (const l of libraries) {
    if (l === LOADER[a.deb]) continue;
    const f = join(libDir, l);
    // libc.so.6 is executable too (it prints its version): its interpreter goes into the tree as well.
    if ((await readElfFile(f)).interpreter) {
      await run('patchelf', ['--set-interpreter', loader, f]);
      runnable.add(l);
    }
    await run('patchelf', ['--force-rpath', '--set-rpath', '$ORIGIN', f]);
  }
  const built = { exe: treeExe, koffi, libraries, libDir, copyrights, runnable };

  // ---- the Debian package
  const debRoot = join(work, 'deb');
  // Debian bookworm and older look for packaged units in /lib/systemd/system.
  const debFiles = tree('lib/systemd/system', built);
  await stage(debRoot, debFiles);
  const { problems } = await checkTree(debRoot);
  if (problems.length) throw new Error(`the ${a.node} tree is not self-contained:\n${problems.join('\n')}`);
  const selfVersion = (await runInTree(a, debRoot, ['version'])).stdout.trim();
  if (selfVersion !== VERSION) throw new Error(`the ${a.node} executable says version ${JSON.stringify(selfVersion)}, expected ${VERSION}`);
  const installedKiB = await installedKiBOf(debRoot, debFiles);
  const sums = [];
  for (const [path] of debFiles) sums.push(`${await md5(join(debRoot, path))}  ${path}`);
  await mkdir(join(debRoot, 'DEBIAN'));
  await writeFile(
    join(debRoot, 'DEBIAN/control'),
    `Package: addrmap
Version: ${VERSION}
Architecture: ${a.deb}
Maintainer: addrmap maintainers <addrmap@localhost>
Installed-Size: ${installedKiB}
Section: net
Priority: optional
Description: keep stale literal IP addresses reachable after a VM migrates
 addrmap is an agent for guest VM images. The control plane pushes a mapping
 file (stale address -> new address) into the guest; addrmap installs nftables
 DNAT in the guest's kernel so that traffic to a stale literal address reaches
 the new one. Off by default: the platform enables it per VM with
 addrmap.enabled=1 on the kernel command line (or in /etc/addrmap/config.json).
 .
 Self-contained: the executable embeds Node.js and brings every library it
 loads (glibc, libnftables) in /usr/lib/addrmap; it needs no other package.
 Includes a systemd unit, and an OpenRC service and a runit/s6 run script in
 /usr/share/addrmap/init.
`,
  );
  await writeFile(join(debRoot, 'DEBIAN/conffiles'), '/etc/addrmap/config.json\n/etc/default/addrmap\n');
  await writeFile(join(debRoot, 'DEBIAN/md5sums'), sums.join('\n') + '\n');
  for (const s of ['postinst', 'prerm', 'postrm']) {
    await copyFile(join(ROOT, 'packaging/deb', s), join(debRoot, 'DEBIAN', s));
    await chmod(join(debRoot, 'DEBIAN', s), 0o755);
  }
  await touchAll(debRoot);
  const deb = join(work, `addrmap_${VERSION}_${a.deb}.deb`);
  // xz: every dpkg can read it. Threads where this dpkg-deb can use them.
  const threads = (await run('dpkg-deb', ['--help'])).stdout.includes('--threads-max') ? [`--threads-max=${availableParallelism()}`] : [];
  // No shlibs check: the libraries it ships are what it links.
  await run('dpkg-deb', ['--root-owner-group', '-Zxz', ...threads, '--build', debRoot, deb], {
    env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) },
  });
  step(`${a.node}: Debian package ${basename(deb)} (${libraries.length} libraries from ${packages.length} Debian packages)`);

  // ---- the tarball
  // Files only (no directory entries), relative to /, so that extracting it at
  // / (or Dockerfile ADD ... /) never changes an existing directory. Units go to
  // /usr/lib/systemd/system, where every systemd distribution looks.
  const tarRoot = join(work, 'tar');
  const tarFiles = tree('usr/lib/systemd/system', built);
  await stage(tarRoot, tarFiles);
  const tarball = join(work, `addrmap-${VERSION}-linux-${a.node}.tar.gz`);
  const plainTar = join(work, 'addrmap.tar');
  await run('tar', [
    '--create',
    `--file=${plainTar}`,
    `--directory=${tarRoot}`,
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    `--mtime=@${epoch}`,
    '--format=gnu',
    '--no-recursion',
    ...tarFiles.map(([p]) => p).sort(),
  ]);
  await pipeline(createReadStream(plainTar), createGzip({ level: zlibConstants.Z_BEST_COMPRESSION }), createWriteStream(tarball));
  step(`${a.node}: tarball ${basename(tarball)}`);
  const bundledKiB = await installedKiBOf(
    debRoot,
    debFiles.filter(([p]) => p.startsWith(LIB_DIR) || p.startsWith('usr/share/doc/addrmap/bundled/')),
  );
  return {
    artifacts: [deb, tarball, ...(a === HOST ? [exe] : [])],
    info: {
      deb: a.deb,
      node: a.node,
      stripped: !!strip,
      installedBytes: installedKiB * 1024,
      bundled: { installedBytes: bundledKiB * 1024, libraries, packages },
    },
  };
}

const built = [];
const architectures = {};
for (const name of wanted) {
  const r = await buildArch(ARCHES[name]);
  built.push(...r.artifacts);
  architectures[name] = r.info;
}
step(`executables for ${wanted.join(', ')} (Node ${nodeVersion})`);

// ---- 4. checksums and sizes; into out/ --------------------------------------------------
// Each file is renamed into place, so out/ never holds a half-written artifact.
const lines = [];
for (const a of built) {
  const h = createHash('sha256');
  await pipeline(createReadStream(a), h);
  lines.push(`${h.digest('hex')}  ${basename(a)}`);
}
await writeFile(join(WORK, 'SHA256SUMS'), lines.join('\n') + '\n');
const sizes = Object.fromEntries(await Promise.all(built.map(async (a) => [basename(a), (await stat(a)).size])));
for (const a of [...built, join(WORK, 'SHA256SUMS')]) await rename(a, join(OUT, basename(a)));
const artifacts = built.map((a) => join(OUT, basename(a)));
await writeFile(
  join(WORK, 'BUILD-INFO.json'),
  JSON.stringify(
    {
      version: VERSION,
      node: nodeVersion,
      // This machine's architecture, whose executable is out/addrmap.
      arch: { deb: HOST.deb, node: HOST.node },
      inputs,
      sizes,
      installedBytes: architectures[HOST.node]?.installedBytes ?? null,
      architectures,
    },
    null,
    2,
  ) + '\n',
);
await rename(join(WORK, 'BUILD-INFO.json'), join(OUT, 'BUILD-INFO.json'));
await rm(WORK, { recursive: true, force: true });

const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
process.stdout.write(
  `\npackage: done in ${((Date.now() - started) / 1000).toFixed(1)} s; artifacts in ${relative(process.cwd(), OUT) || '.'}/\n`,
);
for (const a of artifacts) process.stdout.write(`  ${relative(OUT, a).padEnd(34)} ${mb((await stat(a)).size).padStart(9)}\n`);
for (const [name, a] of Object.entries(architectures)) {
  process.stdout.write(
    `  ${name}: installed ${mb(a.installedBytes)}, of which the bundled libraries ${mb(a.bundled.installedBytes)}; needs only a Linux kernel\n`,
  );
}
