#!/usr/bin/env bash
# Installs what the benchmark suite needs, when missing, from the machine's
# apt sources (Debian or Ubuntu, as root): what addrmap itself needs (via
# test/host-setup.sh), plus iperf3 (throughput), inotify-tools and jq (the
# hand-rolled baseline script), socat (the userspace-proxy baseline) and a C
# compiler (netload.c, the connection and request-rate load generator).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/../host-setup.sh"

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have iperf3 || need+=(iperf3)
have inotifywait || need+=(inotify-tools)
have jq || need+=(jq)
have socat || need+=(socat)
have cc || need+=(gcc libc6-dev)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "bench setup: missing ${need[*]}; run as root (or install them) first" >&2
  exit 1
fi
echo "bench setup: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# iperf3's package offers a daemon; nothing may start on the host.
policy=/usr/sbin/policy-rc.d
[ -e "$policy" ] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; trap 'rm -f "$policy"' EXIT; }
apt-get update -q >&2
apt-get install -y -q --no-install-recommends "${need[@]}" >&2
