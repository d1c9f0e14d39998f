#!/usr/bin/env bash
# Before the demo touches anything: can this machine run it? It needs root
# with the capabilities to create network namespaces and load nftables rules
# (CAP_NET_ADMIN, CAP_SYS_ADMIN), which a container has only when started with
# them. Says exactly what is missing, and changes nothing.
set -euo pipefail

fail() { printf 'demo: %s\n' "$@" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run it as root (sudo npm run demo): it creates network namespaces and nftables rules"

# CapEff is a hex mask; bit 12 is CAP_NET_ADMIN, bit 21 CAP_SYS_ADMIN.
caps=$((16#$(awk '/^CapEff:/ {print $2}' /proc/self/status)))
missing=()
(( caps >> 12 & 1 )) || missing+=(NET_ADMIN)
(( caps >> 21 & 1 )) || missing+=(SYS_ADMIN)
if [ ${#missing[@]} -gt 0 ]; then
  fail "root here lacks the capabilities ${missing[*]} (a container started without them?)" \
    "start the container with: docker run --cap-add NET_ADMIN --cap-add SYS_ADMIN --security-opt apparmor=unconfined ..."
fi

# Capabilities are not all: a container's mount and namespace policy can still refuse.
if command -v unshare >/dev/null 2>&1 && ! unshare --net true 2>/dev/null; then
  fail "cannot create a network namespace here (unshare --net failed)" \
    "in a container whose seccomp profile refuses it: docker run --cap-add NET_ADMIN --cap-add SYS_ADMIN --security-opt apparmor=unconfined --security-opt seccomp=unconfined ..."
fi
