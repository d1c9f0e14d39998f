// Gets everything the guest tests need, reusing what is current:
//   1. the host: Docker engine running, debootstrap (docker-setup.sh);
//   2. the artifacts in out/ (`npm run package`), rebuilt when an input changed;
//   3. the guest base images (base-image.sh: debootstrap + docker import,
//      cached by a content hash of the recipe);
//   4. the guest images with addrmap baked in the way a user bakes it:
//        addrmap-guest-deb:<hash>     init image + the .deb (dpkg -i), systemd as init
//        addrmap-guest-noinit:<hash>  base image + the tarball (ADD ... /), no init,
//                                     `addrmap run` as the entrypoint
//        addrmap-guest-scratch:<hash> FROM scratch: the tarball and a static busybox
//                                     (in /opt/busybox, for the test application) only
//        addrmap-guest-other:<hash>   another Debian release's base image (bullseye)
//                                     + the tarball, `addrmap run` as the entrypoint
//        addrmap-guest-openrc:<hash>  the deb image with the OpenRC service, openrc-init as init
//        addrmap-guest-runit:<hash>   the deb image with the runit service, runsvdir as init
//        addrmap-guest-idle:<hash>    the deb image in the mode without a resident agent (path unit, timer)
//      tagged by a hash of the artifacts and fixtures.
// Nothing is pulled from a registry. Prints one JSON line with the image names
// and timings. Run it alone to warm the caches: node test/guest/prepare.mjs
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readElfFile } from '../../packaging/elf.mjs';
import { inputsHash } from '../../packaging/inputs.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const HERE = join(ROOT, 'test/guest');
const OUT = join(ROOT, 'out');
const t0 = Date.now();
const secs = (since) => Math.round((Date.now() - since) / 100) / 10;
const say = (m) => process.stderr.write(`prepare: ${m}\n`);

function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      if (opts.echo) process.stderr.write(d);
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0
        ? resolve(stdout)
        : reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}\n${stderr.slice(-4000)}${stdout.slice(-2000)}`)),
    );
  });
}

const imageExists = async (tag) =>
  run('docker', ['image', 'inspect', tag]).then(
    () => true,
    () => false,
  );

// 1. Host.
await run('bash', [join(HERE, 'docker-setup.sh')], { echo: true });

// 2. Artifacts.
let t = Date.now();
const inputs = await inputsHash(ROOT);
let info = await readFile(join(OUT, 'BUILD-INFO.json'), 'utf8').then(JSON.parse, () => null);
let packaged = 'reused';
if (info?.inputs !== inputs) {
  say('building the artifacts (npm run package)');
  await run(process.execPath, [join(ROOT, 'packaging/package.mjs')]);
  info = JSON.parse(await readFile(join(OUT, 'BUILD-INFO.json'), 'utf8'));
  packaged = 'built';
}
const packageSecs = secs(t);
const deb = `addrmap_${info.version}_${info.arch.deb}.deb`;
const tarball = `addrmap-${info.version}-linux-${info.arch.node}.tar.gz`;
// Every architecture's tarball (the tree checks and the arm64 run under qemu-user).
const tarballs = Object.fromEntries(Object.keys(info.architectures ?? {}).map((a) => [a, `addrmap-${info.version}-linux-${a}.tar.gz`]));

// The tests use a snapshot of the artifacts that never changes: out/ itself
// may be rebuilt while tests run (another test file preparing after a source
// change in the working tree).
const ART = join(OUT, 'guest-artifacts', info.inputs.slice(0, 16));
if (!existsSync(join(ART, 'BUILD-INFO.json'))) {
  const tmp = `${ART}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  for (const f of new Set(['addrmap', deb, tarball, ...Object.values(tarballs), 'SHA256SUMS', 'BUILD-INFO.json']))
    await copyFile(join(OUT, f), join(tmp, f));
  await rm(ART, { recursive: true, force: true });
  await rename(tmp, ART);
}
// Keep this snapshot and the one before (a test file may still use it).
const snapshots = await readdir(join(OUT, 'guest-artifacts'), { withFileTypes: true });
const dated = await Promise.all(
  snapshots
    .filter((d) => d.isDirectory())
    .map(async (d) => ({ dir: join(OUT, 'guest-artifacts', d.name), mtime: (await stat(join(OUT, 'guest-artifacts', d.name))).mtimeMs })),
);
for (const { dir } of dated.sort((a, b) => b.mtime - a.mtime).slice(2)) if (dir !== ART) await rm(dir, { recursive: true, force: true });

// 3. Base images.
t = Date.now();
const baseOut = await run('bash', [join(HERE, 'base-image.sh')], { echo: true });
const base = /^BASE=(.+)$/m.exec(baseOut)?.[1];
const init = /^INIT=(.+)$/m.exec(baseOut)?.[1];
if (!base || !init) throw new Error(`base-image.sh printed ${baseOut}`);
// Another release than the build machine's: its own glibc and libraries, none of which addrmap may use.
const OTHER_SUITE = 'bullseye';
const otherOut = await run('bash', [join(HERE, 'base-image.sh')], {
  echo: true,
  env: { ...process.env, ADDRMAP_GUEST_SUITE: OTHER_SUITE, ADDRMAP_GUEST_BASE_ONLY: '1' },
});
const otherBase = /^BASE=(.+)$/m.exec(otherOut)?.[1];
if (!otherBase) throw new Error(`base-image.sh (${OTHER_SUITE}) printed ${otherOut}`);
const baseSecs = secs(t);
// The scratch image's only program besides addrmap: a static busybox (Debian's busybox-static).
const BUSYBOX = '/bin/busybox';
if (!existsSync(BUSYBOX) || (await readElfFile(BUSYBOX)).interpreter)
  throw new Error(`${BUSYBOX} is not a static busybox (install busybox-static)`);

// 4. Guest images.
t = Date.now();
const sums = await readFile(join(ART, 'SHA256SUMS'), 'utf8');
const fixtures = ['app', 'app-busybox', 'app.service', 'app.openrc', 'app.runit', 'guest-boot', 'platform-cmdline.conf'];
const fixtureText = (await Promise.all(fixtures.map((f) => readFile(join(HERE, 'fixtures', f), 'utf8')))).join('\0');

const dockerfiles = {
  deb: `FROM ${init}
# Exactly what an image builder does with the package; systemd does not run
# during the build, so postinst only enables the unit.
COPY ${deb} /tmp/
RUN dpkg -i /tmp/${deb} && rm /tmp/${deb}
# The test application, started after network-online.target.
COPY app guest-boot /usr/local/bin/
COPY app.service /etc/systemd/system/app.service
COPY platform-cmdline.conf /etc/systemd/system/addrmap.service.d/platform-cmdline.conf
RUN mkdir -p /etc/app /etc/platform && systemctl enable app.service
ENV container=docker
STOPSIGNAL SIGRTMIN+3
CMD ["/usr/local/bin/guest-boot", "/sbin/init"]
`,
  noinit: `FROM ${base}
# An image with no init system: the tarball unpacked at /, addrmap run in
# front of the application.
ADD ${tarball} /
COPY app guest-boot /usr/local/bin/
RUN mkdir -p /etc/app
ENTRYPOINT ["/usr/bin/addrmap", "run", "--"]
CMD ["/usr/local/bin/app"]
`,
  // Nothing but addrmap's tree: no libc, no shell, no /bin. The busybox is
  // the test application's, out of the way in /opt/busybox.
  scratch: `FROM scratch
ADD ${tarball} /
COPY busybox /opt/busybox/bin/busybox
RUN ["/opt/busybox/bin/busybox", "--install", "-s", "/opt/busybox/bin"]
RUN ["/opt/busybox/bin/mkdir", "-p", "/etc/app", "/var/log", "/tmp"]
COPY app-busybox /usr/local/bin/app
COPY guest-boot /usr/local/bin/
ENV PATH=/usr/local/bin:/usr/bin:/opt/busybox/bin
ENTRYPOINT ["/usr/bin/addrmap", "run", "--"]
CMD ["/usr/local/bin/app"]
`,
  other: `FROM ${otherBase}
ADD ${tarball} /
COPY app guest-boot /usr/local/bin/
RUN mkdir -p /etc/app
ENTRYPOINT ["/usr/bin/addrmap", "run", "--"]
CMD ["/usr/local/bin/app"]
`,
};

// OpenRC and runit guests: the .deb image with its init files put in place as
// README.md tells, and that init as PID 1 (systemd stays unused).
const initFromDeb = (deb) => ({
  openrc: `FROM ${deb}
RUN mkdir -p /etc/conf.d \\
 && cp /usr/share/addrmap/init/openrc/addrmap /etc/init.d/addrmap \\
 && cp /usr/share/addrmap/init/openrc/addrmap.confd /etc/conf.d/addrmap \\
 && rc-update add addrmap default
COPY app.openrc /etc/init.d/app
RUN rc-update add app default
CMD ["/usr/local/bin/guest-boot", "/sbin/openrc-init"]
`,
  // The mode without a resident agent: chosen at bake time as images.md says.
  idle: `FROM ${deb}
RUN systemctl disable addrmap.service \\
 && systemctl enable addrmap-apply.service addrmap-apply.path addrmap-check.timer \\
 && mkdir -p /etc/systemd/system/addrmap-apply.service.d \\
 && cp /etc/systemd/system/addrmap.service.d/platform-cmdline.conf /etc/systemd/system/addrmap-apply.service.d/
`,
  runit: `FROM ${deb}
RUN cp -r /usr/share/addrmap/init/runit /etc/sv/addrmap \\
 && mkdir -p /etc/sv/app /etc/service \\
 && ln -s /etc/sv/addrmap /etc/service/addrmap
COPY app.runit /etc/sv/app/run
RUN ln -s /etc/sv/app /etc/service/app
CMD ["/usr/local/bin/guest-boot", "runsvdir", "-P", "/etc/service"]
`,
});

const images = {};
const build = async (kind, dockerfile) => {
  const hash = createHash('sha256').update(sums).update(fixtureText).update(dockerfile).digest('hex').slice(0, 16);
  const tag = `addrmap-guest-${kind}:${hash}`;
  images[kind] = tag;
  if (await imageExists(tag)) return;
  say(`building ${tag}`);
  const ctx = await mkdtemp(join(tmpdir(), `addrmap-${kind}-`));
  try {
    if (kind === 'deb') await copyFile(join(ART, deb), join(ctx, deb));
    if (kind === 'noinit' || kind === 'scratch' || kind === 'other') await copyFile(join(ART, tarball), join(ctx, tarball));
    if (kind === 'scratch') await copyFile(BUSYBOX, join(ctx, 'busybox'));
    for (const f of fixtures) await copyFile(join(HERE, 'fixtures', f), join(ctx, f));
    await writeFile(join(ctx, 'Dockerfile'), dockerfile);
    // The classic builder: FROM uses the local image and never pulls.
    await run('docker', ['build', '--label', 'addrmap-guest-test=image', '-t', tag, ctx], {
      env: { ...process.env, DOCKER_BUILDKIT: '0' },
    });
  } finally {
    await rm(ctx, { recursive: true, force: true });
  }
};
for (const [kind, dockerfile] of Object.entries(dockerfiles)) await build(kind, dockerfile);
for (const [kind, dockerfile] of Object.entries(initFromDeb(images.deb))) await build(kind, dockerfile);
// Older builds are of no further use (derived images first).
for (const kind of ['openrc', 'runit', 'idle', 'noinit', 'scratch', 'other', 'deb']) {
  const repo = `addrmap-guest-${kind}`;
  const old = (await run('docker', ['image', 'ls', repo, '--format', '{{.Repository}}:{{.Tag}}']))
    .split('\n')
    .filter((l) => l && l !== images[kind]);
  if (old.length) await run('docker', ['image', 'rm', ...old]).catch(() => {}); // housekeeping: one still in use stays
}
const imagesSecs = secs(t);

process.stdout.write(
  JSON.stringify({
    base,
    init,
    otherSuite: OTHER_SUITE,
    ...images,
    artifacts: { dir: ART, deb, tarball, tarballs, exe: 'addrmap', sizes: info.sizes, installedBytes: info.installedBytes },
    timings: { packaged, packageSecs, baseSecs, imagesSecs, totalSecs: secs(t0) },
  }) + '\n',
);
