#!/usr/bin/env bash
# test/vm/kernel.sh SUITE
# Fetches the newest stock Debian amd64 kernel of SUITE (bullseye, bookworm,
# trixie, sid) and prepares what test/vm/run.sh boots: vmlinuz, its module
# tree and a tiny busybox initramfs that mounts the host's root over virtio-9p.
# Prints the cache directory /var/cache/addrmap-vm/<suite>-<kernelversion>.
# ADDRMAP_VM_REFRESH=1 looks for a newer kernel even when one is cached.
# ADDRMAP_VM_ARCH=arm64 prepares Debian's arm64 kernel instead (booted by
# qemu-system-aarch64; its initramfs gets Debian's arm64 busybox-static), for
# a root of arm64 programs that run.sh shares in place of the host's.
set -euo pipefail

suite=${1:?usage: kernel.sh bullseye|bookworm|trixie|sid}
case $suite in bullseye | bookworm | trixie | sid) ;; *) echo "kernel.sh: unknown suite $suite" >&2; exit 2 ;; esac
cache=/var/cache/addrmap-vm
arch=${ADDRMAP_VM_ARCH:-amd64}
case $arch in amd64) qemu=qemu-system-x86_64:qemu-system-x86 link=$suite ;; arm64) qemu=qemu-system-aarch64:qemu-system-arm link=$suite-arm64 ;; *) echo "kernel.sh: unknown ADDRMAP_VM_ARCH $arch" >&2; exit 2 ;; esac
say() { echo "kernel.sh: $*" >&2; }

# A finished build is renamed into place and only then gets the <suite>
# link, so the link alone proves completeness: CI re-runs need no network.
complete() { [ -f "$1/version" ] && [ -f "$1/initramfs.cpio.gz" ] && [ -f "$1/modules/modules.dep" ]; }
if [ -z "${ADDRMAP_VM_REFRESH:-}" ] && [ -L "$cache/$link" ] && complete "$cache/$link"; then
  readlink -f "$cache/$link"
  exit 0
fi

mkdir -p "$cache"
# Parallel test jobs may ask for the same suite at once.
exec 9>"$cache/.$link.lock"
flock 9

missing=()
for tool in $qemu curl:curl cpio:cpio xz:xz-utils zstd:zstd depmod:kmod; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
# The dynamic busybox would need the host's libc inside the initramfs.
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # One apt at a time: these scripts run side by side (test files in parallel).
  flock /run/addrmap-apt.lock apt-get -o DPkg::Lock::Timeout=600 update -q >&2
  flock /run/addrmap-apt.lock apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# The mirror is whatever this machine's apt uses (deb822 first, then one-line).
mirror=${ADDRMAP_VM_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk -v RS= '!/Suites:[^\n]*-security/ && match($0, /URIs:[ \t]*[^ \t\n]+/) {
      split(substr($0, RSTART, RLENGTH), f, /[ \t]+/); print f[2]; exit }')
fi
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    sed -E 's/\[[^]]*\]//' | awk '$1 == "deb" && $0 !~ /security/ { print $2; exit }')
fi
[ -n "$mirror" ] || { say "no Debian mirror found in the apt sources"; exit 1; }
mirror=${mirror%/}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL -o "$tmp/Packages.xz" "$mirror/dists/$suite/main/binary-$arch/Packages.xz"
xz -d "$tmp/Packages.xz"

# One "name version filename size depends" line per stanza we may need.
index=$(awk -v RS= -F '\n' '{
    p = v = f = s = d = ""
    for (i = 1; i <= NF; i++) {
      if ($i ~ /^Package: /) p = substr($i, 10)
      else if ($i ~ /^Version: /) v = substr($i, 10)
      else if ($i ~ /^Filename: /) f = substr($i, 11)
      else if ($i ~ /^Size: /) s = substr($i, 7)
      else if ($i ~ /^Depends: /) d = substr($i, 10)
    }
    if (p ~ /^linux-(image|binary|modules|base)-[0-9]/ || p == "busybox-static") { gsub(/ /, "", d); print p, v, f, s, d }
  }' "$tmp/Packages")
# The signed generic flavour: not -cloud/-rt, not the -unsigned twin.
image=$(awk -v a="$arch" '$1 ~ ("^linux-image-[0-9][^ ]*-" a "$") && $1 !~ ("-(cloud|rt)-" a "$") { print $2, $1 }' <<<"$index" |
  sort -V | tail -n 1 | cut -d' ' -f2)
[ -n "$image" ] || { say "no linux-image-*-$arch in $suite"; exit 1; }
abi=${image#linux-image-}
dir=$cache/$suite-$abi
if complete "$dir"; then
  ln -sfn "$suite-$abi" "$cache/$link"
  echo "$dir"
  exit 0
fi

# Since Debian split the kernel (sid 7.x) linux-image is a metapackage that
# depends on linux-binary/linux-modules/linux-base of the same ABI.
debs=("$image")
deps=$(awk -v p="$image" '$1 == p { print $5 }' <<<"$index" | tr ',|' '\n\n' | sed 's/(.*//')
for dep in $deps; do
  case $dep in *-"$abi") debs+=("$dep") ;; esac
done
# Another architecture's initramfs needs that architecture's busybox.
[ "$arch" = amd64 ] || debs+=(busybox-static)
stage=$tmp/stage
mkdir "$stage"
total=0
for pkg in "${debs[@]}"; do
  read -r _ _ file size _ < <(awk -v p="$pkg" '$1 == p' <<<"$index" | sort -V -k2 | tail -n 1)
  say "downloading $pkg ($((size / 1048576)) MiB)"
  total=$((total + size))
  curl -fsSL -o "$tmp/pkg.deb" "$mirror/$file"
  dpkg-deb -x "$tmp/pkg.deb" "$stage"
  rm "$tmp/pkg.deb"
done
say "downloaded $((total / 1048576)) MiB for $abi"

build=$cache/.build-$suite-$abi
rm -rf "$build"
mkdir -p "$build/lib/modules"
shopt -s nullglob
# Newer packages ship /usr/lib/modules (merged /usr), older ones /lib/modules.
# The split packages (sid 7.x) keep vmlinuz and config in the module dir.
moddirs=("$stage"/usr/lib/modules/*/ "$stage"/lib/modules/*/)
[ ${#moddirs[@]} -gt 0 ] || { say "no modules in ${debs[*]}"; exit 1; }
kernels=("$stage"/boot/vmlinuz-* "${moddirs[0]}vmlinuz")
configs=("$stage"/boot/config-* "${moddirs[0]}config")
[ ${#kernels[@]} -gt 0 ] || { say "no vmlinuz in ${debs[*]}"; exit 1; }
ver=$(basename "${moddirs[0]}")
cp "${kernels[0]}" "$build/vmlinuz"
config=${configs[0]:-/dev/null}
grep -q '^CONFIG_PVH=y' "$config" && pvh=1 || pvh=
mv "${moddirs[0]}" "$build/lib/modules/$ver"
ln -s "lib/modules/$ver" "$build/modules"
# Decompressing bzImage takes ~4 s under TCG; QEMU boots the bare ELF through
# its PVH entry instead, so keep an uncompressed vmlinux when the kernel has one.
if [ -n "$pvh" ]; then
  for magic in '\xfd7zXZ\x00:xz' '\x28\xb5\x2f\xfd:zstd' '\x1f\x8b\x08:gzip'; do
    off=$(LC_ALL=C grep -obUaP -m 1 "${magic%:*}" "$build/vmlinuz" | head -n 1 | cut -d: -f1) || true
    [ -n "$off" ] || continue
    tail -c +$((off + 1)) "$build/vmlinuz" | "${magic#*:}" -dc 2>/dev/null >"$tmp/vmlinux" || true
    if [ "$(head -c 4 "$tmp/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ]; then
      mv "$tmp/vmlinux" "$build/vmlinux"
      break
    fi
  done
fi

# busybox insmod and older kmod cannot read .ko.xz/.ko.zst: store them plain.
find "$build/modules/" -name '*.ko.xz' -print0 | xargs -0 -r -n 64 -P "$(nproc)" xz -d
find "$build/modules/" -name '*.ko.zst' -print0 | xargs -0 -r -n 64 -P "$(nproc)" zstd -d -q --rm
find "$build/modules/" -name '*.ko.gz' -print0 | xargs -0 -r -n 64 -P "$(nproc)" gzip -d
depmod -b "$build" "$ver"

# The initramfs holds only what mounting the host root needs; which of these
# are modules differs per kernel (virtio is built in on 5.10, 9p never is).
init=$tmp/initramfs
mkdir -p "$init"/{bin,dev,proc,sys,modules}
if [ "$arch" = amd64 ]; then cp /bin/busybox "$init/bin/busybox"; else cp "$stage/bin/busybox" "$init/bin/busybox"; fi
mknod -m 600 "$init/dev/console" c 5 1
for mod in virtio virtio_ring virtio_pci 9pnet 9pnet_virtio 9p overlay; do
  modprobe -d "$build" -S "$ver" --show-depends "$mod"
done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | while read -r ko; do
  cp "$ko" "$init/modules/"
  basename "$ko" >>"$init/modules/order"
done
cat >"$init/init" <<'EOF'
#!/bin/busybox sh
# Stage 1 of the test VM (from test/vm/kernel.sh): mount the host root over
# 9p read-only, stack a tmpfs overlay on it so it is writable, put the guest
# kernel's modules at /lib/modules, then hand pid 1 to run.sh's job script.
/bin/busybox --install -s /bin
export PATH=/bin
die() { echo "addrmap-vm init: $*"; poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for ko in $(cat /modules/order); do insmod "/modules/$ko" || die "insmod $ko failed"; done
for arg in $(cat /proc/cmdline); do
  case $arg in addrmap.job=*) job=${arg#*=} ;; addrmap.modules=*) modules=${arg#*=} ;; addrmap.9p=*) opts=${arg#*=} ;; addrmap.shell=*) shell=${arg#*=} ;; esac
done
[ -n "$job" ] && [ -n "$modules" ] || die "addrmap.job= and addrmap.modules= are required"
mkdir -p /host /rw /root
mount -t 9p -o "ro,trans=virtio,version=9p2000.L,${opts:-msize=524288,cache=loose}" hostroot /host ||
  die "cannot mount the host root over 9p"
# The upper layer must not live in the initramfs: switch_root empties it.
mount -t tmpfs -o mode=755 rw /rw
mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work root /root || die "overlay mount failed"
mkdir -p /root/lib/modules
mount -o bind "/host$modules" /root/lib/modules || die "no module tree at $modules"
mount --move /proc /root/proc
mount --move /sys /root/sys
mount --move /dev /root/dev
mkdir -p /root/dev/pts /root/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /root/dev/pts
mount -t tmpfs -o mode=1777 shm /root/dev/shm
mount -t tmpfs -o mode=755 run /root/run
mount -t tmpfs -o mode=1777 tmp /root/tmp
mount -t cgroup2 cgroup2 /root/sys/fs/cgroup 2>/dev/null || true
# The job lives in the host's temp dir, which the guest /tmp now hides.
cp "/host$job" /root/run/addrmap-vm-job || die "no job script at $job"
# switch_root moves the new root onto / so the kernel's own helpers
# (request_module -> /sbin/modprobe) see the host userland too.
exec switch_root /root "${shell:-/bin/bash}" /run/addrmap-vm-job
EOF
chmod 755 "$init/init"
(cd "$init" && find . | cpio -o -H newc --quiet | gzip -1) >"$build/initramfs.cpio.gz"
echo "$ver" >"$build/version"
# The busybox of another architecture, for the root run.sh shares in place of the host's.
[ "$arch" = amd64 ] || cp "$init/bin/busybox" "$build/busybox"

rm -rf "$dir"
mv "$build" "$dir"
ln -sfn "$suite-$abi" "$cache/$link"
say "$suite: kernel $ver in $dir"
echo "$dir"
