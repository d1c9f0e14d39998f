#!/usr/bin/env bash
# Installs the host tools addrmap needs, when missing, from the machine's
# configured apt sources (Debian or Ubuntu, as root).
#   test/host-setup.sh        what the agent and the demo need: nftables (nft),
#                             iproute2 (ip, network namespaces), conntrack
#   test/host-setup.sh test   also what the kernel tests run inside their guest
#                             namespaces to check coexistence: iptables,
#                             firewalld with its D-Bus, Docker's engine, and
#                             patch (scan --diff is applied with it), a C compiler
#                             with libc's headers (the libnftables fault shim,
#                             test/support/nft-fault-shim.c)
#   test/host-setup.sh bench  also what the benchmark suite needs: iperf3,
#                             inotify-tools and jq (the baseline script),
#                             socat (the proxy baseline), a C compiler (netload.c)
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
# cc alone is not enough: a compiler without libc6-dev has no stdio.h or dlfcn.h.
compiler() { have cc || need+=(gcc); [ -e /usr/include/dlfcn.h ] || need+=(libc6-dev); }
have nft || need+=(nftables)
have ip || need+=(iproute2)
have conntrack || need+=(conntrack)
if [ "${1:-}" = test ]; then
  have iptables || need+=(iptables)
  have firewalld || need+=(firewalld)
  have dbus-daemon || need+=(dbus)
  have dockerd || need+=(docker.io)
  have nsenter || need+=(util-linux)
  have patch || need+=(patch)
  compiler
fi
if [ "${1:-}" = bench ]; then
  have iperf3 || need+=(iperf3)
  have inotifywait || need+=(inotify-tools)
  have jq || need+=(jq)
  have socat || need+=(socat)
  compiler
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "host-setup: missing ${need[*]}; run as root (or install them) first" >&2
  exit 1
fi
echo "host-setup: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Installing a daemon package must not start it on the host.
policy=/usr/sbin/policy-rc.d
[ -e "$policy" ] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; trap 'rm -f "$policy"' EXIT; }
# One apt at a time: these scripts run side by side (test files in parallel).
flock /run/addrmap-apt.lock apt-get -o DPkg::Lock::Timeout=600 update -q >&2
flock /run/addrmap-apt.lock apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${need[@]}" >&2
