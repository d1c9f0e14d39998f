// Builds every artifact for baking addrmap into guest images, into out/:
//
//   out/addrmap                               standalone executable (Node single
//                                             executable application; no Node needed)
//   out/addrmap_<version>_<arch>.deb          Debian package
//   out/addrmap-<version>-linux-<arch>.tar.gz the same files for other images, laid
//                                             out relative to / (Dockerfile: ADD ... /)
//   out/SHA256SUMS
//   out/BUILD-INFO.json                       versions, sizes, and a hash of the inputs
//
// Run as `npm run package` (on Debian or Ubuntu: it needs dpkg-deb, and strip
// from binutils to make the executable smaller). Every program is run with an
// argument vector, never through a shell.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { constants as zlibConstants, createGzip, gzipSync } from 'node:zlib';
import { inputsHash } from './inputs.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OUT = join(ROOT, 'out');
const WORK = join(OUT, '.build');
const require = createRequire(import.meta.url);
const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8'));
const VERSION = pkg.version;
const ARCH = { x64: { deb: 'amd64', node: 'x64' }, arm64: { deb: 'arm64', node: 'arm64' } }[process.arch];
if (!ARCH) throw new Error(`unsupported architecture ${process.arch}`);
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
    child.on('error', (e) => reject(e.code === 'ENOENT' ? new Error(`${cmd}: not found`) : e));
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

// ---- 2. the standalone executable ------------------------------------------
// The project's pinned Node (the `node` devDependency) both prepares the blob
// and is the executable's runtime: the two must be the same version.
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
    // no gain), so none is embedded.
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
const exe = join(WORK, 'addrmap');
await copyFile(nodeBin, exe);
await chmod(exe, 0o755);
let stripped = false;
if (await have('strip')) {
  // Node's release binary carries symbols and debug information (17 MB); the
  // blob is injected afterwards, so stripping cannot touch it.
  await run('strip', ['--strip-all', exe]);
  stripped = true;
} else {
  process.stdout.write('package: strip (binutils) not found: the executable keeps its symbols (about 17 MB more)\n');
}
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
const selfVersion = (await run(exe, ['version'], { env: { PATH: process.env.PATH ?? '' } })).stdout.trim();
if (selfVersion !== VERSION) throw new Error(`the built executable says version ${JSON.stringify(selfVersion)}, expected ${VERSION}`);
step(`standalone executable out/addrmap (Node ${nodeVersion}${stripped ? ', stripped' : ''})`);

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
`;

const DOCS = ['architecture.md', 'benchmarks.md', 'guarantees.md', 'images.md', 'operations.md', 'testing.md'];

/** [path in the package, source file or content, mode] */
function tree(systemdDir) {
  const src = (p) => ({ file: join(ROOT, p) });
  return [
    ['usr/bin/addrmap', { file: exe }, 0o755],
    ['usr/bin/addrmap-entrypoint', src('init/entrypoint/addrmap-entrypoint'), 0o755],
    // The FFI addon for in-process kernel access (ctnetlink); the executable
    // looks for it in ../lib/addrmap beside itself.
    ['usr/lib/addrmap/koffi.node', { file: require.resolve(`@koromix/koffi-linux-${ARCH.node}/linux_${ARCH.node}/koffi.node`) }, 0o644],
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

// ---- 4. the Debian package -----------------------------------------------------
const debRoot = join(WORK, 'deb');
// Debian bookworm and older look for packaged units in /lib/systemd/system.
const debFiles = tree('lib/systemd/system');
await stage(debRoot, debFiles);
let installedKiB = 0;
const sums = [];
for (const [path] of debFiles) {
  installedKiB += Math.ceil((await stat(join(debRoot, path))).size / 1024);
  sums.push(`${await md5(join(debRoot, path))}  ${path}`);
}
await mkdir(join(debRoot, 'DEBIAN'));
await writeFile(
  join(debRoot, 'DEBIAN/control'),
  `Package: addrmap
Version: ${VERSION}
Architecture: ${ARCH.deb}
Maintainer: addrmap maintainers <addrmap@localhost>
Installed-Size: ${installedKiB}
Depends: libc6 (>= 2.28), libstdc++6 (>= 5.2), libgcc-s1 | libgcc1, libnftables1 (>= 0.9.7), iproute2, conntrack
Section: net
Priority: optional
Description: keep stale literal IP addresses reachable after a VM migrates
 addrmap is an agent for guest VM images. The control plane pushes a mapping
 file (stale address -> new address) into the guest; addrmap installs nftables
 DNAT in the guest's kernel so that traffic to a stale literal address reaches
 the new one. Off by default: the platform enables it per VM with
 addrmap.enabled=1 on the kernel command line (or in /etc/addrmap/config.json).
 .
 Standalone executable (Node.js embedded). Includes a systemd unit, and an
 OpenRC service and a runit/s6 run script in /usr/share/addrmap/init.
`,
);
await writeFile(join(debRoot, 'DEBIAN/conffiles'), '/etc/addrmap/config.json\n/etc/default/addrmap\n');
await writeFile(join(debRoot, 'DEBIAN/md5sums'), sums.join('\n') + '\n');
for (const s of ['postinst', 'prerm', 'postrm']) {
  await copyFile(join(ROOT, 'packaging/deb', s), join(debRoot, 'DEBIAN', s));
  await chmod(join(debRoot, 'DEBIAN', s), 0o755);
}
await touchAll(debRoot);
const deb = join(WORK, `addrmap_${VERSION}_${ARCH.deb}.deb`);
// xz: every dpkg can read it. Threads where this dpkg-deb can use them.
const threads = (await run('dpkg-deb', ['--help'])).stdout.includes('--threads-max') ? [`--threads-max=${availableParallelism()}`] : [];
await run('dpkg-deb', ['--root-owner-group', '-Zxz', ...threads, '--build', debRoot, deb], {
  env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) },
});
step(`Debian package ${basename(deb)}`);

// ---- 5. the tarball ----------------------------------------------------------------
// Files only (no directory entries), relative to /, so that extracting it at
// / (or Dockerfile ADD ... /) never changes an existing directory. Units go to
// /usr/lib/systemd/system, where every systemd distribution looks.
const tarRoot = join(WORK, 'tar');
const tarFiles = tree('usr/lib/systemd/system');
await stage(tarRoot, tarFiles);
const tarball = join(WORK, `addrmap-${VERSION}-linux-${ARCH.node}.tar.gz`);
const plainTar = join(WORK, 'addrmap.tar');
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
step(`tarball ${basename(tarball)}`);

// ---- 6. checksums and sizes; into out/ --------------------------------------------------
// Each file is renamed into place, so out/ never holds a half-written artifact.
const built = [exe, deb, tarball];
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
    { version: VERSION, node: nodeVersion, arch: ARCH, stripped, inputs, sizes, installedBytes: installedKiB * 1024 },
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
process.stdout.write(
  `  installed size ${mb(installedKiB * 1024)}; needs glibc >= 2.28, libstdc++6, libgcc-s1; libnftables1, ip, conntrack at run time\n`,
);
