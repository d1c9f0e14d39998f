#!/usr/bin/env bash
# Host setup for the guest tests and `npm run package`: the Docker engine
# (Debian's docker.io), debootstrap (to build the guest base image without any
# registry), binutils for both architectures (strip, for the standalone
# executables), patchelf (their interpreter and library path into the bundled
# tree), qemu-user-static (the arm64 tree run on this machine) and
# busybox-static (the only program in the scratch guest image), installed from the
# machine's apt sources when missing; then dockerd is started when it is not
# running. Idempotent and quick when everything is in place. Debian or
# Ubuntu, as root.
set -euo pipefail

log() { echo "docker-setup: $*" >&2; }

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v strip >/dev/null 2>&1 || need+=(binutils)
command -v aarch64-linux-gnu-strip >/dev/null 2>&1 || need+=(binutils-aarch64-linux-gnu)
command -v patchelf >/dev/null 2>&1 || need+=(patchelf)
command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -x nc >/dev/null || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing ${need[*]}; run as root (or install them) first"
    exit 1
  fi
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # One apt at a time: these scripts run side by side (test files in parallel).
  flock /run/addrmap-apt.lock apt-get -o DPkg::Lock::Timeout=600 update -q >&2
  # shellcheck disable=SC2046 # unique package names, no spaces
  flock /run/addrmap-apt.lock apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >&2
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  log "the Docker daemon is not reachable and only root can start it"
  exit 1
fi
if [ -d /run/systemd/system ] && systemctl start docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  exit 0
fi
# No systemd (CI containers, minimal VMs): start dockerd directly, detached
# from this process so it outlives the test run.
log "starting dockerd (log: /var/log/dockerd.log)"
setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "dockerd is up"
    exit 0
  fi
  sleep 1
done
log "dockerd did not come up within 60 s; last lines of /var/log/dockerd.log:"
tail -n 20 /var/log/dockerd.log >&2
exit 1
