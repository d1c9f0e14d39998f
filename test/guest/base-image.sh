#!/usr/bin/env bash
# Builds the guest base images for the guest tests without any registry:
# debootstrap (minbase) from the apt mirror this machine is configured with,
# then `docker import`. Two images come out of one build:
#
#   addrmap-guest-base:<hash>  a Debian userland with what addrmap needs in a
#                              guest (nft, ip, conntrack) and socat for the test
#                              application and peer; no init system, no Node.
#   addrmap-guest-init:<hash>  the same plus systemd (as /sbin/init), OpenRC and
#                              runit, for the init-system guests.
#
# <hash> is a content hash of this recipe (this file, suite, architecture), so
# an image is rebuilt only when the recipe changes. Root filesystems are cached
# as tarballs in $ADDRMAP_GUEST_CACHE (default /var/cache/addrmap-guest), and an
# already-imported image with the same tag is reused as is.
#
# ADDRMAP_GUEST_SUITE picks the Debian release (default bookworm);
# ADDRMAP_GUEST_BASE_ONLY=1 builds the base image alone (a guest of another
# release than the build machine's needs no init image).
#
# Prints BASE=<image> and (unless base only) INIT=<image>. Root only.
set -euo pipefail

SUITE=${ADDRMAP_GUEST_SUITE:-bookworm}
CACHE=${ADDRMAP_GUEST_CACHE:-/var/cache/addrmap-guest}
BASE_ONLY=${ADDRMAP_GUEST_BASE_ONLY:-0}
BASE_PACKAGES=nftables,iproute2,conntrack,socat,procps
INIT_PACKAGES=(systemd systemd-sysv openrc runit)

log() { echo "guest-image: $*" >&2; }

[ "$(id -u)" -eq 0 ] || { log "must run as root (debootstrap, chroot)"; exit 1; }
command -v docker >/dev/null || { log "docker CLI not found"; exit 1; }

arch=$(dpkg --print-architecture)
hash=$( { cat "$0"; echo "$SUITE $arch"; } | sha256sum | cut -c1-16)
# Each release its own repository and cache directories: building one never
# removes another's.
tag=$([ "$SUITE" = bookworm ] && echo "" || echo "-$SUITE")
BASE=addrmap-guest-base$tag:$hash
INIT=addrmap-guest-init$tag:$hash
dir=$CACHE/$SUITE-$hash

have_image() { docker image inspect "$1" >/dev/null 2>&1; }
done_() { echo "BASE=$BASE"; [ "$BASE_ONLY" = 1 ] || echo "INIT=$INIT"; exit 0; }
ready() { have_image "$BASE" && { [ "$BASE_ONLY" = 1 ] || have_image "$INIT"; }; }

ready && done_

mkdir -p "$CACHE"
# One build at a time, also across test workers and concurrent CI jobs.
exec 9>"$CACHE/.lock"
flock 9
ready && done_

import() { # tarball image
  log "importing $2 from the cache"
  docker import --change 'CMD ["/bin/bash"]' --message "addrmap guest image, recipe $hash" "$1" "$2" >/dev/null
}

if [ -s "$dir/base.tar" ] && { [ "$BASE_ONLY" = 1 ] || [ -s "$dir/init.tar" ]; }; then
  have_image "$BASE" || import "$dir/base.tar" "$BASE"
  [ "$BASE_ONLY" = 1 ] || have_image "$INIT" || import "$dir/init.tar" "$INIT"
  done_
fi

# The mirror the machine already uses for $SUITE, read from its apt sources
# (deb822 .sources files first, then one-line .list files).
apt_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    awk -v suite="$SUITE" '
      BEGIN { RS = ""; FS = "\n" }
      {
        types = ""; uris = ""; suites = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          line = $i
          if (line ~ /^[ \t]*#/) continue
          if (match(line, /^Types:[ \t]*/)) types = substr(line, RLENGTH + 1)
          else if (match(line, /^URIs:[ \t]*/)) uris = substr(line, RLENGTH + 1)
          else if (match(line, /^Suites:[ \t]*/)) suites = substr(line, RLENGTH + 1)
          else if (match(line, /^Enabled:[ \t]*/)) enabled = substr(line, RLENGTH + 1)
        }
        if ((" " types " ") ~ / deb / && enabled != "no" && (" " suites " ") ~ (" " suite " ")) {
          split(uris, u, /[ \t]+/); print u[1]; exit
        }
      }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] && cat "$f"
  done | awk -v suite="$SUITE" '
    $1 == "deb" {
      i = 2
      if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) == suite) { print $i; exit }
    }'
}
mirror=$(apt_mirror || true)
mirror=${mirror%%$'\n'*}
# Another release than the machine's: the mirror the machine uses for its own
# release serves the others too.
if [ -z "$mirror" ]; then
  own=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -z "$own" ] || mirror=$(SUITE=$own apt_mirror || true)
  mirror=${mirror%%$'\n'*}
fi
[ -n "$mirror" ] || { log "no apt source for suite $SUITE found in /etc/apt/sources.list{,.d}"; exit 1; }

if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive flock /run/addrmap-apt.lock apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends debootstrap >&2
fi

work=$(mktemp -d "$CACHE/build.XXXXXX")
root=$work/rootfs
cleanup() {
  for m in proc sys dev/pts dev; do mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m"; done
  rm -rf "$work"
}
trap cleanup EXIT

start=$SECONDS
log "building $SUITE/$arch root filesystem (recipe $hash) with debootstrap from the configured apt mirror"
debootstrap --variant=minbase --arch="$arch" --include="$BASE_PACKAGES" "$SUITE" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}

# Nothing from the build machine stays in the image: no apt lists, no caches.
slim() {
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/apt/* "$root"/var/log/dpkg.log "$root"/tmp/*
}
pack() { # name
  tar --numeric-owner --xattrs -C "$root" -cf "$work/$1.tar" .
}

slim
# The base image keeps no apt source (the guests have no network to it anyway).
mv "$root/etc/apt/sources.list" "$work/sources.list"
: >"$root/etc/apt/sources.list"
pack base
log "base root filesystem done after $((SECONDS - start)) s"

finish() {
  mkdir -p "$dir"
  mv "$work"/*.tar "$dir/"
  # Older recipes of this release are of no further use (nor directories
  # named by a bare hash, from before releases had their own).
  for old in "$CACHE/$SUITE"-*/ "$CACHE"/????????????????/; do
    [ -d "$old" ] && [ "${old%/}" != "$dir" ] && rm -rf "$old"
  done
  for image in "$@"; do
    import "$dir/${image%%=*}.tar" "${image#*=}"
    # Images of older recipes too (those still in use by a container stay).
    repo=${image#*=}
    docker image ls "${repo%%:*}" --format '{{.Repository}}:{{.Tag}}' | while read -r old; do
      [ "$old" = "${image#*=}" ] || docker image rm "$old" >/dev/null 2>&1 || :
    done
  done
  log "images ready after $((SECONDS - start)) s"
  done_
}
[ "$BASE_ONLY" = 1 ] && finish "base=$BASE"

# The init image: the same plus systemd, OpenRC and runit, installed with the
# guest's own apt from the same mirror. Services must not start in the chroot.
cp "$work/sources.list" "$root/etc/apt/sources.list"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
mount --bind /sys "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
chroot "$root" apt-get update -q >"$work/apt.log" 2>&1 &&
  DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -q --no-install-recommends "${INIT_PACKAGES[@]}" >>"$work/apt.log" 2>&1 || {
  tail -n 30 "$work/apt.log" >&2
  exit 1
}
for m in dev/pts dev sys proc; do umount -l "$root/$m"; done
rm -f "$root/usr/sbin/policy-rc.d"
slim
: >"$root/etc/apt/sources.list"
pack init
log "init root filesystem done after $((SECONDS - start)) s"

finish "base=$BASE" "init=$INIT"
